"""The layers of a stack's template that differ from the members' own.

Dropout and noise layers become :class:`MaskLayer` slots that take the masks each member drew. On a CPU a
Conv1d becomes :class:`UnfoldConv1d` (unfold + matmul). For a model whose forward treats each row alone
(an MLP, a 1-D CNN, a 2-D image CNN, with or without BatchNorm after its convolutions) the members' rows are
folded into one batch ``[K*B, ...]`` and Linear, Conv1d, Conv2d and BatchNorm become their folded forms: one
batched matmul (a Conv2d: one grouped convolution) per layer with each member's weights, and each member's own
batch statistics, without vmap. A 2-D convolution's output is kept channels last in memory (``[K, B, H, W, C]``),
the layout in which pooling, BatchNorm's rows and the next grouped convolution are cheapest.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskLayer(nn.Module):
    """A dropout or noise slot of the stacked template: multiplies by (dropout) or adds (noise) a mask each
    member drew from its own generator before the step; the identity in eval mode."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode
        self.register_buffer("mask", torch.empty(0), persistent=False)

    def forward(self, x):
        if not self.training:
            return x
        return x * self.mask if self.mode == "mul" else x + self.mask


def conv_rows(x: torch.Tensor, k: int, s: int, p: int) -> torch.Tensor:
    """The receptive fields of a 1-D convolution as matmul rows: ``x [B, C, L]`` → ``[B * L_out, k * C]``
    (zero padding ``p``, stride ``s``), tap-major: a row is its window's k positions, each with its C channels.
    In the layout a convolution's output has here (channels inner: ``[B, L, C]`` in memory) a row is then one
    contiguous stretch of memory, and gathering the rows is a copy of those stretches."""
    windows = F.pad(x.transpose(1, 2), (0, 0, p, p)).unfold(1, k, s)  # [B, L_out, C, k]
    b, length, c, _ = windows.shape
    return windows.transpose(2, 3).reshape(b * length, k * c)


def _conv_weight(weight: torch.Tensor) -> torch.Tensor:
    """A Conv1d weight ``[..., out, C, k]`` as the matrix that :func:`conv_rows`' rows multiply: ``[..., k*C, out]``."""
    return weight.transpose(-1, -2).flatten(-2).transpose(-1, -2)


class ConvRows(torch.autograd.Function):
    """:func:`conv_rows` with a cheaper backward, for the folded template (outside vmap).

    Autograd's backward of pad → unfold → reshape (a generic ``unfold_backward`` and zero-filled copies) made a
    folded 18-member cnn1d epoch about 10% longer on CPU. Here the k kernel taps' gradients are added into the
    input's positions with k strided slices, from the last tap to the first: the order in which
    ``unfold_backward`` sums a position's windows, so the gradient is bitwise the same (a test checks). It is
    returned channels inner, the layout of the activation it flows into. Under vmap the chain itself is faster
    (vmap would run this function op by op).
    """

    @staticmethod
    def forward(ctx, x, k, s, p):
        ctx.in_shape, ctx.k, ctx.s, ctx.p = x.shape, k, s, p
        ctx.channels_inner = x.stride(1) == 1 or x.shape[1] == 1  # a conv's output: [B, L, C] in memory
        return conv_rows(x, k, s, p)

    @staticmethod
    def backward(ctx, grad):
        (b, c, length), k, s, p = ctx.in_shape, ctx.k, ctx.s, ctx.p
        taps = grad.view(b, -1, k, c)  # [B, L_out, k, C]
        out = grad.new_zeros(b, length + 2 * p, c)
        span = s * (taps.shape[1] - 1) + 1
        for j in reversed(range(k)):
            out[:, j:j + span:s] += taps[:, :, j]
        out = out[:, p:p + length].transpose(1, 2)
        # in the input's own memory layout, so that the activation's backward before this layer reads its two
        # operands in one order (mixed layouts made it 3x slower)
        return (out if ctx.channels_inner else out.contiguous()), None, None, None


class UnfoldConv1d(nn.Module):
    """Conv1d as unfold + matmul, with the parameters of the Conv1d it replaces (same names).

    Under vmap, ``F.conv1d`` with stacked weights becomes one grouped convolution, which oneDNN runs slowly
    on CPU; unfold + batched matmul is about 1.5× faster there. Same arithmetic up to summation order.
    """

    def __init__(self, conv: nn.Conv1d | UnfoldConv1d):
        super().__init__()
        self.kernel_size, self.stride, self.padding = conv.kernel_size, conv.stride, conv.padding  # Conv1d's names
        self.weight, self.bias = conv.weight, conv.bias

    def forward(self, x):  # x [B, C, L]
        (k,), (s,), (p,) = self.kernel_size, self.stride, self.padding
        y = conv_rows(x, k, s, p) @ _conv_weight(self.weight)
        if self.bias is not None:
            y = y + self.bias
        return y.view(len(x), -1, y.shape[-1]).transpose(1, 2)


class FoldedConv1d(UnfoldConv1d):
    """:class:`UnfoldConv1d` for the members' rows folded into one batch, ``[K*B, C, L]``: one batched matmul of
    each member's receptive-field rows with its weights, the ops vmap runs for UnfoldConv1d (bit for bit)."""

    def forward(self, x):  # x [K*B, C, L]
        K, (k,), (s,), (p,) = len(self.weight), self.kernel_size, self.stride, self.padding
        rows = ConvRows.apply(x, k, s, p)  # [K*B*L_out, k*C]
        y = torch.bmm(rows.view(K, -1, rows.shape[-1]), _conv_weight(self.weight))
        if self.bias is not None:
            y = y + self.bias[:, None]
        return y.view(len(x), -1, y.shape[-1]).transpose(1, 2)


def convertible_conv(m: nn.Module) -> bool:
    return (type(m) is nn.Conv1d and m.groups == 1 and m.dilation == (1,) and m.padding_mode == "zeros"
            and isinstance(m.padding, tuple))


def conv2d_reason(m: nn.Conv2d) -> str | None:
    """Why a Conv2d has no folded form (:class:`FoldedConv2d`), or None."""
    if m.groups != 1 or m.padding_mode != "zeros" or not isinstance(m.padding, tuple):
        return f"groups={m.groups}, padding={m.padding!r}, padding_mode={m.padding_mode}"
    return None


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``[..., C, H, W]`` → the same values with channels innermost in memory (a view when they are already)."""
    return x.movedim(-3, -1).contiguous().movedim(-1, -3)


def _side_by_side(x: torch.Tensor, K: int) -> torch.Tensor:
    """Folded maps ``[K*B, C, H, W]`` → the members' channels side by side, ``[B, K*C, H, W]``; channels last."""
    _, C, H, W = x.shape
    return x.unflatten(0, (K, -1)).permute(1, 3, 4, 0, 2).reshape(-1, H, W, K * C).permute(0, 3, 1, 2)


def _folded(y: torch.Tensor, K: int) -> torch.Tensor:
    """:func:`_side_by_side`'s inverse: ``[B, K*C, H, W]`` → ``[K*B, C, H, W]``, channels last."""
    B, _, H, W = y.shape
    y = y.permute(0, 2, 3, 1).unflatten(3, (K, -1)).permute(3, 0, 1, 2, 4)  # [K, B, H, W, C]
    return y.reshape(K * B, H, W, -1).permute(0, 3, 1, 2)


class SideBySide(torch.autograd.Function):
    """:func:`_side_by_side` whose gradient is :func:`_folded` of the output's: both directions one copy into
    channels last, so that the layers around a grouped convolution (pool, activation) run their backward on the
    layout of their forward (autograd's own backward of the permutes returns NCHW, and a max-pool's backward
    then converts it, 3-4× slower)."""

    @staticmethod
    def forward(ctx, x, K):
        ctx.K = K
        return _side_by_side(x, K)

    @staticmethod
    def backward(ctx, grad):
        return _folded(grad, ctx.K), None


class Folded(torch.autograd.Function):
    """:func:`_folded`, its gradient :func:`_side_by_side`'s (see :class:`SideBySide`)."""

    @staticmethod
    def forward(ctx, y, K):
        ctx.K = K
        return _folded(y, K)

    @staticmethod
    def backward(ctx, grad):
        return _side_by_side(grad, ctx.K), None


ROWS_MAX = 32  # a Conv2d with at most this many inputs per output (C_in·kh·kw) runs as rows × weights


class FoldedConv2d(nn.Module):
    """nn.Conv2d for the members' rows folded into one batch, ``[K*B, C, H, W]`` (same parameter names: ``weight``
    ``[K, C_out, C, kh, kw]``, ``bias`` ``[K, C_out]`` once bound). Input and output are channels last in memory
    (``[K, B, H, W, C]``), where a pool after it, BatchNorm's rows and the next layer's copies are cheapest.

    - The K members' convolutions as one grouped convolution (HFTA's fused conv, Wang et al. 2021) over the
      members' channels side by side, ``[B, K*C, H, W]`` with ``groups=K`` (one copy each way), each group one
      member's weights. For 8 digits cnn members (conv 32→64 on 4×4 maps) it takes 13-17 ms forward and backward
      on one core of this project's CPU, as long as K solo convolutions (compute-bound), in one call.
    - A layer with few inputs per output (at most :data:`ROWS_MAX`: an image's first convolution) as one
      batched matmul of each member's receptive-field rows with its weights instead: oneDNN's grouped
      convolution of one-channel groups took 8 ms forward and 9 ms backward there, the rows 1-2 ms.
    """

    def __init__(self, conv: nn.Conv2d, members: int):
        super().__init__()
        self.K, self.stride, self.padding, self.dilation = members, conv.stride, conv.padding, conv.dilation
        self.kernel_size = conv.kernel_size
        self.as_rows = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1] <= ROWS_MAX
        self.weight, self.bias = conv.weight, conv.bias

    def forward(self, x):  # x [K*B, C, H, W]
        if self.as_rows:
            return self._rows(x)
        K = self.K
        bias = None if self.bias is None else self.bias.flatten()
        y = F.conv2d(SideBySide.apply(x, K), self.weight.flatten(0, 1), bias, self.stride, self.padding,
                     self.dilation, K)
        return Folded.apply(y, K)

    def _rows(self, x):
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        K, C = self.K, x.shape[1]
        windows = F.pad(x.movedim(1, -1), (0, 0, pw, pw, ph, ph))  # [K*B, H+2ph, W+2pw, C]
        windows = windows.unfold(1, dh * (kh - 1) + 1, sh).unfold(2, dw * (kw - 1) + 1, sw)[..., ::dh, ::dw]
        n, h, w = windows.shape[:3]  # windows [K*B, h, w, C, kh, kw]
        weight = self.weight.permute(0, 3, 4, 2, 1).reshape(K, kh * kw * C, -1)  # [K, kh*kw*C, C_out]
        if self.bias is None:
            rows = windows.permute(0, 1, 2, 4, 5, 3).reshape(K, -1, kh * kw * C)
        else:  # the bias as the weight of a column of ones: one pass over the output instead of two
            rows = x.new_empty(K, n // K * h * w, kh * kw * C + 1)
            rows[..., -1] = 1
            rows[..., :-1].unflatten(1, (-1, h, w)).unflatten(-1, (kh, kw, C)).copy_(
                windows.permute(0, 1, 2, 4, 5, 3).unflatten(0, (K, -1)))
            weight = torch.cat([weight, self.bias[:, None]], 1)
        return torch.bmm(rows, weight).view(n, h, w, -1).permute(0, 3, 1, 2)  # [K*B, C_out, h, w], channels last


def pool_before_relu(template: nn.Module) -> None:
    """Move every ReLU that a MaxPool2d directly follows (only Identity between them) to after the pool.

    ``max(relu(a), relu(b)) == relu(max(a, b))``, and the gradients are the same too: both send a window's gradient
    to its first maximum, and a window whose maximum is ≤ 0 gets none. But the ReLU and its backward then run on a
    quarter of the values, and a 2-D CNN's largest maps (its first convolution's) are passed over twice less each
    step. A dropout or noise slot between them (a :class:`MaskLayer`) does not commute with the pool: those stay."""
    for seq in [m for m in template.modules() if type(m) is nn.Sequential]:
        for i in range(1, len(seq)):
            if type(seq[i]) is nn.MaxPool2d and (at := _trailing_relu(seq, i - 1)) is not None:
                owner, j = at
                owner[j] = nn.Identity()
                seq[i] = nn.Sequential(seq[i], nn.ReLU())


def _trailing_relu(seq: nn.Sequential, i: int) -> tuple[nn.Sequential, int] | None:
    """(Sequential, index) of the ReLU that module ``seq[i]`` ends with (nested Sequentials, trailing Identity
    skipped), or None."""
    m = seq[i]
    if type(m) is nn.ReLU:
        return seq, i
    if type(m) is nn.Sequential:
        for j in reversed(range(len(m))):
            if type(m[j]) is not nn.Identity:
                return _trailing_relu(m, j)
    return None


class FoldedLinear(nn.Module):
    """nn.Linear for the members' rows folded into one batch, ``[K*B, ..., in]``: one batched matmul with each
    member's weights (same parameter names). Without vmap's batching of every op, the forward and backward
    of a 16-member MNIST-1D MLP step take about 1.9 ms instead of 2.4-2.8 ms on this project's CPU (a whole
    stacked epoch, optimizer and data included, about 8% less). The bias is added after the matmul, as vmap's
    lowering of F.linear does, so the results are vmap's bit for bit (a test checks)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias

    def forward(self, x):
        K = len(self.weight)
        rows = x.reshape(K, -1, x.shape[-1])
        y = torch.bmm(rows, self.weight.transpose(1, 2))
        if self.bias is not None:
            y = y + self.bias[:, None]
        return y.view(*x.shape[:-1], y.shape[-1])


def _per_channel(rows: torch.Tensor, length: int) -> torch.Tensor:
    """``[K, B, L*C]`` (channels inner) → the sum over B and L, ``[K, C]``."""
    return rows.sum(1).view(len(rows), length, -1).sum(1)


def _along(v: torch.Tensor, length: int) -> torch.Tensor:
    """Per-channel values ``[..., K, C]`` repeated along L: ``[..., K, 1, L*C]``, to broadcast over ``[K, B, L*C]``."""
    return v.unsqueeze(-2).expand(*v.shape[:-1], length, v.shape[-1]).flatten(-2).unsqueeze(-2)


class _BatchNormRows(torch.autograd.Function):
    """Training-mode batch normalization of each member's rows, ``x [K, B, L*C]`` (a convolution's output, channels
    inner) with per-member ``weight``, ``bias`` ``[K, C]``: statistics over B and L, per member and channel.

    Written out (two-pass variance, the backward from the centred input) instead of ``F.batch_norm`` over the
    members' channels side by side: that needs the member axis moved into the channels and back (four copies
    a layer, forward and backward), and its CPU kernel is slow for these shapes. A per-channel vector is
    repeated along L, so every elementwise op runs over rows of L*C contiguous values. Returns the output and
    the batch's mean and (biased) variance ``[K, C]`` for the running statistics."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, length):
        n = x.shape[1] * length

        mean = _per_channel(x, length).div_(n)
        centred = x - _along(mean, length)
        var = _per_channel(centred.square(), length).div_(n)
        rstd = (var + eps).rsqrt_()
        scale = weight * rstd
        ctx.save_for_backward(centred, rstd, scale)
        ctx.length = length
        return torch.addcmul(_along(bias, length), centred, _along(scale, length)), mean, var

    @staticmethod
    def backward(ctx, grad, _mean, _var):
        centred, rstd, scale = ctx.saved_tensors
        length = ctx.length
        n = centred.shape[1] * length

        grad_bias = _per_channel(grad, length)
        grad_weight = _per_channel(grad * centred, length).mul_(rstd)  # the sum of grad · x̂
        # dx = scale · (grad − mean(grad) − x̂ · mean(grad · x̂)), with x̂ = centred · rstd
        shift, slope = _along(torch.stack([grad_bias, grad_weight * rstd]) * (scale / -n), length)
        return torch.addcmul(shift, centred, slope).addcmul_(grad, _along(scale, length)), grad_weight, grad_bias, None, None


class FoldedBatchNorm(nn.Module):
    """BatchNorm1d or BatchNorm2d for the members' rows folded into one batch, ``[K*B, C, L]`` or ``[K*B, C, H, W]``
    (channels inner, a folded convolution's output), or ``[K*B, C]`` (a Linear's, in a 2-D image CNN's head):
    each member's statistics over its own rows, with its own affine parameters and running statistics
    (:class:`_BatchNormRows`, with L the positions of a map). The sums run in another order than vmap's, so the
    results agree with it to float rounding, not bit for bit. An 8-member BatchNorm cnn1d layer
    (zhang2017_table1's first) takes about 0.9 ms forward and backward against 1.2-1.5 ms through
    ``F.batch_norm`` over ``[B*L, K*C]`` (and 136-145 ms an epoch under vmap against 92-97 ms folded that way).
    (The models' BatchNorm: affine, running statistics with a momentum; :func:`conv_norms` folds no other.)"""

    def __init__(self, bn: nn.BatchNorm1d, members: int):
        super().__init__()
        self.K, self.eps, self.momentum = members, bn.eps, bn.momentum
        # [K, C] each ([K] for the count) once bound to the members' stacked tensors
        self.weight, self.bias = bn.weight, bn.bias
        self.running_mean, self.running_var, self.num_batches_tracked = bn.running_mean, bn.running_var, bn.num_batches_tracked

    def forward(self, x):  # x [K*B, C, *positions]
        x = x.float()  # under bf16 autocast, in float32 as autocast runs nn.BatchNorm (a no-op in float32)
        K, C, positions = self.K, x.shape[1], x.shape[2:]
        L = positions.numel()
        rows = x.movedim(1, -1).reshape(K, -1, L * C)  # no copy for a convolution's output
        if not self.training:
            scale = self.weight * (self.running_var + self.eps).rsqrt()
            y = torch.addcmul(_along(self.bias - self.running_mean * scale, L), rows, _along(scale, L))
        else:
            y, mean, var = _BatchNormRows.apply(rows, self.weight, self.bias, self.eps, L)
            with torch.no_grad():  # as nn.BatchNorm1d: the momentum's update, the unbiased variance
                n = rows.shape[1] * L
                self.num_batches_tracked.add_(1)
                self.running_mean.mul_(1 - self.momentum).add_(mean, alpha=self.momentum)
                self.running_var.mul_(1 - self.momentum).add_(var * (n / (n - 1)), alpha=self.momentum)
        return y.view(-1, *positions, C).movedim(-1, 1)  # [K*B, C, *positions], channels inner


# Modules that leave the rows of a batch independent and hold no parameters: they run unchanged on the
# members' rows folded into one batch (the dropout and noise slots are MaskLayers by then; a 2-D pool runs on
# the channels-last maps of a FoldedConv2d).
_ROWWISE = (nn.Sequential, nn.ModuleList, nn.Identity, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, MaskLayer, nn.MaxPool2d,
            nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.LocalResponseNorm)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def fold_reason(template: nn.Module, buffer_names: list[str], conv_norms: set[str]) -> str | None:
    """Why a template cannot train without vmap, its members' rows folded into one batch; None if it can: the
    model says its own forward treats each row alone (``rows_independent``) but for its BatchNorm layers, every
    BatchNorm is one of ``conv_norms`` (whose statistics :class:`FoldedBatchNorm` keeps per member) and holds
    the only buffers, and every other layer is a plain Linear, a Conv1d made UnfoldConv1d (on a CPU), a Conv2d
    that :class:`FoldedConv2d` runs, a Flatten that keeps dim 0, one of _ROWWISE, or a block that declares
    ``rows_independent`` itself and holds no tensor of its own (a residual block: :func:`_rowwise_container`)."""
    if not getattr(type(template), "rows_independent", False):
        return f"{type(template).__name__} does not declare rows_independent (its forward may mix a batch's rows)"
    modules = list(template.named_modules())[1:]
    for path, m in modules:
        if type(m) in _NORMS and path not in conv_norms:
            return (f"layer {path} ({type(m).__name__}) has no folded form (folded: affine BatchNorm with running "
                    "statistics after a convolution, or after a Linear in a model with 2-D convolutions)")
    norms = {path for path, m in modules if type(m) in _NORMS}
    for name in buffer_names:
        if name.rpartition(".")[0] not in norms:
            return f"buffer {name} is not a BatchNorm's"
    for path, m in modules:
        if type(m) is nn.Conv2d and (why := conv2d_reason(m)):
            return f"layer {path} (Conv2d, {why}) has no folded form"
        plain = type(m) in (*_ROWWISE, *_NORMS, nn.Linear, UnfoldConv1d, nn.Conv2d) or (
            type(m) is nn.Flatten and m.start_dim >= 1) or _rowwise_container(m)
        if not plain:
            return f"layer {path} ({type(m).__name__}) has no folded form"
    return None


def _rowwise_container(m: nn.Module) -> bool:
    """A block of a model's own (a residual block, an inception module's concatenation) whose class declares that its
    forward treats each row alone and that holds no tensor of its own: its children are checked one by one."""
    return (getattr(type(m), "rows_independent", False) and not list(m.parameters(recurse=False))
            and not list(m.buffers(recurse=False)))


def conv_norms(model: nn.Module, input_shape: tuple[int, ...]) -> set[str]:
    """The BatchNorm layers of ``model`` (on the meta device) that fold, of the kind the models build (affine, with
    running statistics and a momentum): a BatchNorm1d whose input is ``[N, C, L]`` (after a convolution), and in
    a model with 2-D convolutions every BatchNorm2d and also a BatchNorm1d after a Linear, ``[N, C]``.

    In an MLP, a BatchNorm after a Linear stays under vmap: folded, an MLP's step gains about 10% and its weight
    gradients change at float rounding, which would move the numbers measured for the MLP BatchNorm studies. A
    2-D CNN's fused convolutions already sum in another order than vmap's, so its head's BatchNorm folds too."""
    paths = [path for path, m in model.named_modules()
             if type(m) in _NORMS and m.affine and m.track_running_stats and m.momentum is not None]
    if not paths:
        return set()
    ranks = (2, 3, 4) if any(type(m) is nn.Conv2d for m in model.modules()) else (3,)
    return {path for path, shape in input_shapes(model, (2, *input_shape), paths) if len(shape) in ranks}


def input_shapes(model: nn.Module, batch: tuple[int, ...], paths) -> list[tuple[str, tuple]]:
    """(path, input shape) of each of the submodules ``paths`` of ``model`` (on the meta device), in the order a
    forward pass on a ``batch``-shaped input calls them."""
    calls, handles = [], []
    for path in paths:
        handles.append(model.get_submodule(path).register_forward_pre_hook(
            lambda mod, args, path=path: calls.append((path, tuple(args[0].shape)))))
    try:
        with torch.no_grad():
            model(torch.empty(batch, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return calls


def attribute_slots(template: nn.Module, names: list[str]) -> list[tuple[nn.Module, str, str]]:
    """(module, attribute, full name) of each named parameter or buffer of ``template``, unregistered there, so that
    a forward pass can set them as plain attributes (the members' stacked views and masks of the step)."""
    slots = []
    for name in names:
        path, _, attr = name.rpartition(".")
        module = template.get_submodule(path)
        delattr(module, attr)  # nn.Module's own unregistering (a mask buffer also leaves the non-persistent set)
        slots.append((module, attr, name))
    return slots


def set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, child = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)
