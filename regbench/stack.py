"""Stacked training: K runs of one network shape train together as one batched model (issue #10).

An ablation study is many small runs of the same network, and for small models a step costs mostly
per-step overhead (Python, dispatch), not arithmetic. Here K configurations that :func:`stack_key`
puts together train as one set of stacked parameters ``[K, N]`` (``torch.func.vmap`` over
``functional_call``, or for a plain MLP or a 1-D CNN, with or without BatchNorm, the members' rows folded into
one batch with one batched matmul per layer; one flat buffer per stack so the optimizer is a handful of ops per
step), while each member stays its own run:

- **Same start.** Each member is built by :func:`regbench.train.build_run` under its own seed, exactly as
  a solo run is, and then stacked: its initial weights are bitwise those of its solo run.
- **Its own random numbers.** Each member keeps its own copy of the generator state a solo run would
  use (saved as the ``rng`` of its checkpoint). Its data order (``randperm``), its augmentation and
  mixup draws (the regularizers' own ``transform_batch``, called on its slice of the batch) and the
  dropout masks and activation noise of its model are drawn from that state in the order a solo
  run draws them. So on CPU a member draws exactly the numbers its solo run draws, and a stacked
  member's checkpoint resumes solo (and the reverse) with the same random stream. (On CUDA,
  ``F.dropout`` uses a fused Philox kernel, so dropout masks differ from solo's there, but each
  member still draws from its own generator, independently of its siblings.)
- **Exact per-member rates.** Adam/AdamW and SGD (with momentum, nesterov, dampening) are
  re-implemented on the flat stacked buffer with the lr of each member (and its schedule) as a
  ``[K, 1]`` tensor, following torch's single-tensor formulas op for op; a member's optimizer state
  is written into its checkpoint in torch's own ``state_dict`` format.
- **Per-member control.** Metrics, early stopping, best checkpoint, divergence (a non-finite training
  loss ends that member as ``diverged``), ``result.json`` (with ``"stacked": K``) and the final test
  evaluation are per member (the final evaluation is :func:`regbench.train.finish` itself). A member
  that ends leaves the stack; the others go on, so it no longer changes.
- **Faults.** Every member writes ``checkpoints/last.pt`` in the solo format, all together when one is due
  (after the first epoch, at the end, every ``trainer.checkpoint_every_s``). After a
  kill, members resume from their own checkpoints; if the kill fell between two members' checkpoint
  writes, the members behind train alone in a smaller stack until all are at the same epoch.

Floating point: batched kernels (bmm, the unfolded 1-D convolution used on CPU) sum in another order
than the solo kernels, so stacked and solo runs agree to float tolerance, not bit for bit; a stacked
run killed and resumed is exact on CPU.

Trackers: the loggers (W&B) of a stack's members are opened one at a time, when the member ends: its
run receives the member's whole history and summary then (W&B allows one open run per process).

Memory: a stack holds K copies of the parameters, their gradients and optimizer state, and K batches
of activations. On CPU a stack has at most :data:`MAX_STACK_CPU` members; on a GPU as many as fit in
half of the free memory by a conservative estimate (:func:`max_stack_size`). Larger lists are split
into stacks trained one after the other.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from regbench import build, checkpoint, rundir
from regbench import train as solo
from regbench.config import CONFIG_DIR, run_id, to_container, to_yaml
from regbench.files import append_jsonl, write_atomic, write_json, write_jsonl
from regbench.models.layers import TrainingNoise
from regbench.regularizers.base import Regularizer, soft_targets

log = logging.getLogger("regbench")

MAX_STACK_CPU = 64  # beyond this the batched kernels gain nothing on a CPU and memory grows for nothing
SUPPORTED_OPTIMIZERS = ("torch.optim.Adam", "torch.optim.AdamW", "torch.optim.SGD")


# ----------------------------------------------------------------------------- which regularizers stack

def _penalty_l2(reg, views, strength):
    return 0.5 * strength * sum(v.pow(2).flatten(1).sum(1) for v in views)


def _penalty_l1(reg, views, strength):
    return strength * sum(v.abs().flatten(1).sum(1) for v in views)


def _regularizer_forms() -> tuple[dict, dict]:
    """(stacked forms keyed by class, reasons keyed by class for those that train solo).

    A form is (hook, penalty function, the attribute holding the member's number, the number that makes it
    do nothing, its config): a member without the regularizer trains with that number, exactly as without."""
    from regbench.regularizers import drop_path, ema, grad_clip, max_norm, noise, penalties

    forms = {
        penalties.L2: ("penalty", _penalty_l2, "strength", 0.0, "l2"),
        penalties.L1: ("penalty", _penalty_l1, "strength", 0.0, "l1"),
        penalties.WeightDecay: ("before_step", None, "strength", 0.0, "weight_decay"),
        grad_clip.GradClip: ("after_backward", None, "max_norm", math.inf, "grad_clip"),
        max_norm.MaxNorm: ("after_step", None, "c", math.inf, "max_norm"),
    }
    reasons = {
        ema.EMA: "evaluation swaps in a shadow model (eval_model) and its state is a second set of weights; "
                 "no stacked form yet",
        noise.WeightNoise: "its noise is a parametrization drawn inside the forward pass, which cannot draw "
                           "from each member's own generator under vmap",
        drop_path.DropPath: "torchvision's StochasticDepth draws inside the forward pass; no stacked form yet "
                            "(and only residual models use it)",
    }
    return forms, reasons


#: Hooks that need a stacked form; ``transform_batch`` never does (it is called per member).
_FORM_HOOKS = ("penalty", "after_backward", "before_step", "after_step", "eval_model")


def regularizer_reason(reg: Regularizer) -> str | None:
    """Why this regularizer cannot train stacked, or None if it can."""
    forms, reasons = _regularizer_forms()
    cls = type(reg)
    if cls in reasons:
        return f"regularizer {reg.name}: {reasons[cls]}"
    if cls in forms:
        return None
    needs = [h for h in _FORM_HOOKS if reg.overrides(h)]
    if needs:
        return f"regularizer {reg.name} ({cls.__name__}) overrides {', '.join(needs)}, which has no stacked form"
    if reg.overrides("state_dict"):
        return f"regularizer {reg.name} ({cls.__name__}) keeps state between steps; no stacked form"
    return None


# --------------------------------------------------------------------------------- which configs stack

_RANDOM_LAYERS = (nn.Dropout, TrainingNoise)  # drawn per member as masks (see _MaskLayer)
_DATA_VALUE_KEYS = ("corrupt_test", "label_noise", "input_corruption", "corruption_seed")  # change values, not shapes


def _is_random_slot(module: nn.Module) -> bool:
    return isinstance(module, (*_RANDOM_LAYERS, nn.Identity))


def _model_signature(model: nn.Module) -> list:
    """What must be equal for models to share one template: every module's type and settings, every tensor's
    shape. Dropout and noise layers (and the Identity a model builds when their rate is 0) only say 'slot'."""
    sig = []
    for name, module in model.named_modules():
        if _is_random_slot(module):
            sig.append((name, "random-or-identity"))
        else:
            sig.append((name, type(module).__name__, module.extra_repr()))
    sig += [(k, tuple(v.shape), str(v.dtype)) for k, v in model.state_dict().items()]
    return sig


def _unsupported_random_module(model: nn.Module) -> str | None:
    for name, module in model.named_modules():
        random = isinstance(module, nn.modules.dropout._DropoutNd) or type(module).__name__ == "StochasticDepth"
        if random and type(module) is not nn.Dropout:
            return f"model layer {name} ({type(module).__name__}) draws inside the forward pass; no stacked form"
        if type(module) is nn.Dropout and module.inplace:
            return f"model layer {name}: in-place dropout has no stacked form"
    return None


def _optimizer_reason(cfg_opt: DictConfig) -> str | None:
    target = cfg_opt.get("_target_")
    if target not in SUPPORTED_OPTIMIZERS:
        return f"optimizer {target} has no stacked form (stacked: {', '.join(SUPPORTED_OPTIMIZERS)})"
    for flag in ("amsgrad", "maximize", "foreach", "capturable", "differentiable", "fused"):
        if cfg_opt.get(flag):
            return f"optimizer.{flag}={cfg_opt.get(flag)} has no stacked form"
    return None


def _build_shapes(cfg: DictConfig):
    """The regularizers and a meta-device model of ``cfg``: shapes and settings, no weights, no random draws."""
    regs = build.build_regularizers(cfg.get("regularizer"))
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = build.build_model(cfg.model, tuple(cfg.dataset.input_shape), cfg.dataset.num_classes, regs)
    return regs, model


def why_not_stackable(cfg: DictConfig) -> str | None:
    """Why ``cfg`` must train alone (one line for the log), or None if it can train in a stack."""
    return _reason(cfg, *_build_shapes(cfg))


def _reason(cfg: DictConfig, regs, model) -> str | None:
    if cfg.resume == "best":
        return "resume=best restarts from best.pt without optimizer state: solo only"
    t = cfg.trainer
    if str(t.get("precision", 32)) != "32" or t.get("compile") or t.get("channels_last"):
        return (f"trainer.precision={t.get('precision')}, compile={t.get('compile')}, channels_last={t.get('channels_last')}: "
                "stacked training runs in float32, uncompiled, in the default memory format")
    reason = _optimizer_reason(cfg.optimizer)
    if reason:
        return reason
    for reg in regs:
        reason = regularizer_reason(reg)
        if reason:
            return reason
    return _unsupported_random_module(model)


def stack_key(cfg: DictConfig) -> str | None:
    """The key under which composed configs train together; None if ``cfg`` cannot stack (see :func:`why_not_stackable`).

    Equal keys mean: the same network shape and layer settings, data of the same shapes (same dataset,
    split and subsample; label noise and input corruption may differ), the same batch size, epoch budget,
    evaluation batch, early-stopping monitor, device and thread settings, the same optimizer apart from
    its lr, and the same non-number settings of penalties, decay, clipping and max-norm (see
    :func:`_form_settings`). Seeds, learning rates, schedules, regularizer strengths and rates, which
    regularizers a member has (as long as the network keeps its shape), patience, study name and logger
    may differ.
    """
    regs, model = _build_shapes(cfg)
    if _reason(cfg, regs, model):
        return None
    t = cfg.trainer
    data = {k: v for k, v in to_container(cfg.dataset).items() if k not in _DATA_VALUE_KEYS}
    optimizer = {k: v for k, v in to_container(cfg.optimizer).items() if k != "lr"}
    key = {
        "model": _model_signature(model), "data": data, "optimizer": optimizer, "regularizers": _form_settings(cfg, regs),
        "trainer": {"batch_size": t.batch_size, "max_epochs": t.max_epochs, "eval_batch_size": t.eval_batch_size,
                    "monitor": t.early_stopping.monitor, "device": t.device, "deterministic": t.deterministic,
                    "num_threads": t.num_threads, "train_eval_size": t.get("train_eval_size"),
                    "train_eval_every": t.get("train_eval_every")},
    }
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _settings(node) -> dict:
    """A regularizer config's settings that are not numbers (which members may differ in)."""
    return {k: v for k, v in (node or {}).items() if isinstance(v, bool) or not isinstance(v, (int, float))}


@functools.cache
def _default_settings(config: str) -> dict:
    return _settings(OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "regularizer" / f"{config}.yaml")[config]))


def _form_settings(cfg: DictConfig, regs) -> dict:
    """Per stacked form, the settings that are not numbers of each of ``cfg``'s regularizers of that kind, or
    its default config's when it has none (trained with the number that does nothing). Members may differ
    in which regularizers they have: augmentations and mixup run per member, dropout and noise are masks
    drawn per member, and what changes the network (normalization layers) is in the model's signature."""
    forms, _ = _regularizer_forms()
    reg_cfg = to_container(cfg.regularizer) if cfg.get("regularizer") else {}
    out = {}
    for cls, (*_, default) in forms.items():
        present = [_settings(reg_cfg.get(r.name)) for r in regs if type(r) is cls]
        if not present:
            present = [_default_settings(default)]
        out[cls.__name__] = present
    return out


def key_text(cfg: DictConfig) -> str:
    """Everything :func:`stack_key` reads except seed and numbers that do not change shapes: configurations
    equal here have equal keys, so a caller computes the key (which builds a meta model) once per text."""
    data = to_container(cfg)
    for key in ("seed", "name", "logger", "stack", "resume"):
        data.pop(key, None)
    data.get("optimizer", {}).pop("lr", None)
    data.get("dataset", {}).pop("label_noise", None)
    return to_yaml(data) + f"resume={cfg.get('resume')}"


def stack_keys(cfgs: list[DictConfig]) -> list[tuple[str | None, str | None]]:
    """(:func:`stack_key`, why not stackable when it is None) of each configuration, computed once per
    :func:`key_text` (each key builds a meta model)."""
    texts, by_text = [key_text(cfg) for cfg in cfgs], {}
    for cfg, text in zip(cfgs, texts):
        if text not in by_text:
            key = stack_key(cfg)
            by_text[text] = (key, why_not_stackable(cfg) if key is None else None)
    return [by_text[text] for text in texts]


def max_stack_size(num_params: int, activations_per_member: int, device: torch.device) -> int:
    """Members per stack: :data:`MAX_STACK_CPU` on CPU; on a GPU what fits in half its free memory.

    Per member: parameters, gradients and two optimizer buffers (16 bytes per parameter), plus its
    activations kept for backward (estimated as 4 floats per activation value: forward, gradient, masks).
    """
    if device.type != "cuda":
        return MAX_STACK_CPU
    free, _ = torch.cuda.mem_get_info(device)
    per_member = 16 * num_params + 16 * activations_per_member
    return max(1, min(1024, int(0.5 * free // max(per_member, 1))))


# ------------------------------------------------------------------------------------- the members

@dataclass
class Member:
    """One run in a stack: its solo objects (:class:`regbench.train.Run`), where it is, and its random state."""

    run: solo.Run
    state: solo.RunState
    rng: dict  # the generator states a solo run would hold now (checkpoint.rng_state() format)
    wall_start: float = 0.0
    result: dict | None = None

    @property
    def cfg(self) -> DictConfig:
        return self.run.cfg

    @property
    def done(self) -> bool:
        return self.state.status != "running" or self.state.epoch >= self.run.trainer.max_epochs


class _DeviceRng:
    """Swap a member's generator state in and out of torch's generator for the data's device."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"
        self.index = (device.index if device.index is not None else torch.cuda.current_device()) if self.cuda else None

    def enter(self, rng: dict) -> None:
        if self.cuda:
            torch.cuda.set_rng_state(rng["cuda"][self.index], self.device)
        else:
            torch.set_rng_state(rng["torch"])

    def leave(self, rng: dict) -> None:
        if self.cuda:
            rng["cuda"][self.index] = torch.cuda.get_rng_state(self.device)
        else:
            rng["torch"] = torch.get_rng_state()


# ---------------------------------------------------------------------------------- the template

class _MaskLayer(nn.Module):
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


def _conv_rows(x: torch.Tensor, k: int, s: int, p: int) -> torch.Tensor:
    """The receptive fields of a 1-D convolution as matmul rows: ``x [B, C, L]`` → ``[B * L_out, k * C]``
    (zero padding ``p``, stride ``s``), tap-major: a row is its window's k positions, each with its C channels.
    In the layout a convolution's output has here (channels inner: ``[B, L, C]`` in memory) a row is then one
    contiguous stretch of memory, and gathering the rows is a copy of those stretches."""
    windows = F.pad(x.transpose(1, 2), (0, 0, p, p)).unfold(1, k, s)  # [B, L_out, C, k]
    b, length, c, _ = windows.shape
    return windows.transpose(2, 3).reshape(b * length, k * c)


def _conv_weight(weight: torch.Tensor) -> torch.Tensor:
    """A Conv1d weight ``[..., out, C, k]`` as the matrix that :func:`_conv_rows`' rows multiply: ``[..., k*C, out]``."""
    return weight.transpose(-1, -2).flatten(-2).transpose(-1, -2)


class _ConvRows(torch.autograd.Function):
    """:func:`_conv_rows` with a cheaper backward, for the folded template (outside vmap).

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
        return _conv_rows(x, k, s, p)

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


class _UnfoldConv1d(nn.Module):
    """Conv1d as unfold + matmul, with the parameters of the Conv1d it replaces (same names).

    Under vmap, ``F.conv1d`` with stacked weights becomes one grouped convolution, which oneDNN runs slowly
    on CPU; unfold + batched matmul is about 1.5× faster there. Same arithmetic up to summation order.
    """

    def __init__(self, conv: nn.Conv1d | _UnfoldConv1d):
        super().__init__()
        self.kernel_size, self.stride, self.padding = conv.kernel_size, conv.stride, conv.padding  # Conv1d's names
        self.weight, self.bias = conv.weight, conv.bias

    def forward(self, x):  # x [B, C, L]
        (k,), (s,), (p,) = self.kernel_size, self.stride, self.padding
        y = _conv_rows(x, k, s, p) @ _conv_weight(self.weight)
        if self.bias is not None:
            y = y + self.bias
        return y.view(len(x), -1, y.shape[-1]).transpose(1, 2)


class _FoldedConv1d(_UnfoldConv1d):
    """:class:`_UnfoldConv1d` for the members' rows folded into one batch, ``[K*B, C, L]``: one batched matmul of
    each member's receptive-field rows with its weights, the ops vmap runs for _UnfoldConv1d (bit for bit)."""

    def forward(self, x):  # x [K*B, C, L]
        K, (k,), (s,), (p,) = len(self.weight), self.kernel_size, self.stride, self.padding
        rows = _ConvRows.apply(x, k, s, p)  # [K*B*L_out, k*C]
        y = torch.bmm(rows.view(K, -1, rows.shape[-1]), _conv_weight(self.weight))
        if self.bias is not None:
            y = y + self.bias[:, None]
        return y.view(len(x), -1, y.shape[-1]).transpose(1, 2)


def _convertible_conv(m: nn.Module) -> bool:
    return (type(m) is nn.Conv1d and m.groups == 1 and m.dilation == (1,) and m.padding_mode == "zeros"
            and isinstance(m.padding, tuple))


class _FoldedLinear(nn.Module):
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


class _FoldedBatchNorm(nn.Module):
    """BatchNorm1d for the members' rows folded into one batch, ``[K*B, C, L]`` (channels inner, a folded
    convolution's output): each member's statistics over its own rows, with its own affine parameters and running
    statistics (:class:`_BatchNormRows`). The sums run in another order than vmap's, so the results agree with it
    to float rounding, not bit for bit. An 8-member BatchNorm cnn1d layer (zhang2017_table1's first) takes about
    0.9 ms forward and backward against 1.2-1.5 ms through ``F.batch_norm`` over ``[B*L, K*C]`` (and 136-145 ms
    an epoch under vmap against 92-97 ms folded that way). (The models' BatchNorm: affine, running statistics
    with a momentum; :func:`_conv_norms` folds no other.)"""

    def __init__(self, bn: nn.BatchNorm1d, members: int):
        super().__init__()
        self.K, self.eps, self.momentum = members, bn.eps, bn.momentum
        # [K, C] each ([K] for the count) once bound to the members' stacked tensors
        self.weight, self.bias = bn.weight, bn.bias
        self.running_mean, self.running_var, self.num_batches_tracked = bn.running_mean, bn.running_var, bn.num_batches_tracked

    def forward(self, x):  # x [K*B, C, L]
        K, C, L = self.K, x.shape[1], x.shape[2]
        rows = x.transpose(1, 2).reshape(K, -1, L * C)  # no copy for a convolution's output
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
        return y.view(-1, L, C).transpose(1, 2)  # [K*B, C, L], channels inner


# Modules that leave the rows of a batch independent and hold no parameters: they run unchanged on the
# members' rows folded into one batch (the dropout and noise slots are _MaskLayers by then).
_ROWWISE = (nn.Sequential, nn.Identity, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, _MaskLayer)


def _foldable(template: nn.Module, buffer_names: list[str], conv_norms: set[str]) -> bool:
    """Whether a template can train without vmap, its members' rows folded into one batch: the model says its
    own forward treats each row alone (``rows_independent``) but for its BatchNorm layers, every BatchNorm is
    one of ``conv_norms`` (a BatchNorm1d after a convolution, whose statistics :class:`_FoldedBatchNorm`
    keeps per member) and holds the only buffers, and every other layer is a plain Linear, a Conv1d made
    _UnfoldConv1d (on a CPU), a Flatten that keeps dim 0, or one of _ROWWISE.

    A BatchNorm after a Linear stays under vmap: folded, an MLP's step gains about 10% and its weight
    gradients change at float rounding, which would move the numbers measured for the MLP BatchNorm studies."""
    if not getattr(type(template), "rows_independent", False):
        return False
    modules = list(template.named_modules())[1:]
    norms = {path for path, m in modules if type(m) is nn.BatchNorm1d}
    if not norms <= conv_norms or any(name.rpartition(".")[0] not in norms for name in buffer_names):
        return False
    return all(type(m) in _ROWWISE or type(m) in (nn.Linear, _UnfoldConv1d, nn.BatchNorm1d)
               or (type(m) is nn.Flatten and m.start_dim >= 1) for _, m in modules)


def _conv_norms(model: nn.Module, input_shape: tuple[int, ...]) -> set[str]:
    """The BatchNorm1d layers of ``model`` (on the meta device) whose input is ``[N, C, L]`` (after a convolution),
    of the kind the models build: affine, with running statistics and a momentum."""
    paths = [path for path, m in model.named_modules()
             if type(m) is nn.BatchNorm1d and m.affine and m.track_running_stats and m.momentum is not None]
    if not paths:
        return set()
    return {path for path, shape in _input_shapes(model, (2, *input_shape), paths) if len(shape) == 3}


def _input_shapes(model: nn.Module, batch: tuple[int, ...], paths) -> list[tuple[str, tuple]]:
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


def _attribute_slots(template: nn.Module, names: list[str]) -> list[tuple[nn.Module, str, str]]:
    """(module, attribute, full name) of each named parameter or buffer of ``template``, unregistered there, so that
    a forward pass can set them as plain attributes (the members' stacked views and masks of the step)."""
    slots = []
    for name in names:
        path, _, attr = name.rpartition(".")
        module = template.get_submodule(path)
        delattr(module, attr)  # nn.Module's own unregistering (a mask buffer also leaves the non-persistent set)
        slots.append((module, attr, name))
    return slots


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, child = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


# ------------------------------------------------------------------------------------------ the stack

class Stack:
    """K members' parameters as one flat leaf ``[K, N]``, their buffers stacked, one optimizer over them."""

    def __init__(self, members: list[Member], fold: bool = True):
        """``fold``: train a foldable template without vmap (see :func:`_foldable`); False keeps vmap."""
        self.members = members
        self.K = len(members)
        first = members[0].run
        self.device = first.data.x_train.device
        self.rng = _DeviceRng(self.device)
        models = [m.run.model for m in members]
        self.param_names = [n for n, _ in first.model.named_parameters()]
        self.shapes = [p.shape for p in first.model.parameters()]
        self.sizes = [p.numel() for p in first.model.parameters()]
        self.buffer_names = [n for n, _ in first.model.named_buffers()]
        with torch.no_grad():
            self.P = torch.stack([torch.cat([p.detach().reshape(-1) for p in m.parameters()]) for m in models])
        self.P.requires_grad_(True)
        self.buffers = {n: torch.stack([dict(m.named_buffers())[n].detach() for m in models]).clone()
                        for n in self.buffer_names}
        self._build_template(models, fold)
        self._init_optimizer()
        self._init_regularizers()
        self._batches = {}  # batch size → [(path, shape)] of the random slots in call order
        # data: one table of distinct tensors per split, and which one each member uses
        self.data = {}
        splits = {split: [getattr(m.run.data, split) for m in members] for split in ("x_train", "y_train", "x_val", "y_val")}
        # the train metrics' subset (trainer.train_eval_size)
        splits["x_train_eval"], splits["y_train_eval"] = zip(*(m.run.train_subset() for m in members))
        for split, tensors in splits.items():
            unique, index = [], []
            for t in tensors:
                for u, other in enumerate(unique):
                    if other is t or (other.shape == t.shape and torch.equal(other, t)):
                        index.append(u)
                        break
                else:
                    unique.append(t)
                    index.append(len(unique) - 1)
            self.data[split] = (torch.stack(unique) if len(unique) > 1 else unique[0][None],
                                torch.tensor(index, device=self.device), len(unique) == 1)

    # ----- construction
    def _build_template(self, models, fold: bool):
        template = copy.deepcopy(models[0])
        self.random_slots = {}  # path → (mode, [member module at that path])
        for path, _ in models[0].named_modules():
            if not path:
                continue
            at = [m.get_submodule(path) for m in models]
            if not all(_is_random_slot(a) for a in at) or all(isinstance(a, nn.Identity) for a in at):
                continue
            kinds = {type(a) for a in at if not isinstance(a, nn.Identity)}
            if len(kinds) > 1:
                raise ValueError(f"members differ in the kind of layer {path}: {sorted(k.__name__ for k in kinds)}")
            mode = "mul" if kinds == {nn.Dropout} else "add"
            self.random_slots[path] = (mode, at)
            _set_submodule(template, path, _MaskLayer(mode))
        if self.device.type == "cpu":
            for path, module in list(template.named_modules()):
                if path and _convertible_conv(module):
                    _set_submodule(template, path, _UnfoldConv1d(module))
        self.trace_model = copy.deepcopy(models[0]).to("meta").eval()
        conv_norms = _conv_norms(self.trace_model, tuple(self.members[0].run.data.input_shape))
        self.folded = fold and _foldable(template, self.buffer_names, conv_norms)
        if self.folded:
            for path, module in list(template.named_modules()):
                if type(module) is nn.Linear:
                    _set_submodule(template, path, _FoldedLinear(module))
                elif type(module) is _UnfoldConv1d:
                    _set_submodule(template, path, _FoldedConv1d(module))
                elif type(module) is nn.BatchNorm1d:
                    _set_submodule(template, path, _FoldedBatchNorm(module, self.K))
        self.folded_conv = self.folded and any(type(m) is _FoldedConv1d for m in template.modules())
        self.template = template.to("meta")
        self.eval_module = copy.deepcopy(models[0])  # its own layers, for evaluation one member at a time (_evaluate_each)

        if self.folded:
            bind = _attribute_slots(self.template, [*self.param_names, *self.buffer_names,
                                                    *(f"{p}.mask" for p in self.random_slots)])

            def folded(tensors, x):  # x [K, B, ...], a mask [K, B, ...]: the rows of all members as one batch
                for module, attr, name in bind:  # functional_call's job, without its bookkeeping (0.3 ms a step)
                    t = tensors.get(name)  # evaluation passes no masks: the mask layers are then the identity
                    setattr(module, attr, t.flatten(0, 1) if t is not None and attr == "mask" else t)
                out = self.template(x.flatten(0, 1))
                return out.view(*x.shape[:2], *out.shape[1:])

            self._forward_each = folded
            self._forward_shared = lambda tensors, x: folded(tensors, x.expand(self.K, *x.shape))
        else:
            def call(tensors, x):
                return torch.func.functional_call(self.template, tensors, (x,))

            self._forward_each = torch.func.vmap(call, in_dims=(0, 0), randomness="error")
            self._forward_shared = torch.func.vmap(call, in_dims=(0, None), randomness="error")

    def _init_optimizer(self):
        runs = [m.run for m in self.members]
        cfg_opt = runs[0].cfg.optimizer
        self.opt_kind = "sgd" if cfg_opt._target_ == "torch.optim.SGD" else "adam"
        group = runs[0].optimizer.param_groups[0]
        self.hyper = {k: group[k] for k in ("betas", "eps", "momentum", "dampening", "nesterov") if k in group}
        states = [r.optimizer.state for r in runs]
        params = [list(r.model.parameters()) for r in runs]

        def gather(key):
            return torch.stack([torch.cat([st[p][key].reshape(-1) for p in ps]) for st, ps in zip(states, params)])

        started = [bool(st) for st in states]
        if any(started) and not all(started):
            raise ValueError("members of one stack must all have optimizer state or none")
        self.opt_step = 0
        self._scratch = None
        if self.opt_kind == "adam":
            if all(started):
                steps = {float(states[k][params[k][0]]["step"]) for k in range(self.K)}
                if len(steps) != 1:
                    raise ValueError(f"members of one stack are at different optimizer steps: {sorted(steps)}")
                self.opt_step = int(steps.pop())
                self.exp_avg, self.exp_avg_sq = gather("exp_avg"), gather("exp_avg_sq")
            else:
                self.exp_avg, self.exp_avg_sq = torch.zeros_like(self.P), torch.zeros_like(self.P)
        else:
            self.momentum_buffer = None
            if self.hyper["momentum"] != 0 and all(started):
                bufs = [states[k][params[k][0]].get("momentum_buffer") for k in range(self.K)]
                if all(b is not None for b in bufs):
                    self.momentum_buffer = gather("momentum_buffer")

    def _init_regularizers(self):
        """One stacked form per regularizer slot (its kind, and which of that kind) any member has; a member
        without it gets the number that does nothing (strength 0, an infinite max norm)."""
        forms, _ = _regularizer_forms()
        self.forms = []  # (hook, fn, numbers [K], names of the covered params, a member's regularizer)
        slots: dict[tuple, list] = {}  # (class, i-th of that class) → each member's regularizer or None
        for k, m in enumerate(self.members):
            seen: dict[type, int] = {}
            for reg in m.run.regs:
                if type(reg) in forms:
                    slot = (type(reg), seen.get(type(reg), 0))
                    seen[type(reg)] = slot[1] + 1
                    slots.setdefault(slot, [None] * self.K)[k] = reg
        for (cls, _), regs in slots.items():
            hook, fn, attr, neutral, _ = forms[cls]
            values = torch.tensor([neutral if r is None else float(getattr(r, attr)) for r in regs], dtype=torch.float64)
            reg = next(r for r in regs if r is not None)
            self.forms.append((hook, fn, values, getattr(reg, "covered", None), reg))
        self.transforms = any(m.run.hooks["transform_batch"] for m in self.members)

    # ----- views
    def param_views(self, P=None):
        P = self.P if P is None else P
        return [v.view(self.K, *s) for v, s in zip(torch.split(P, self.sizes, 1), self.shapes)]

    def _named(self, views, names):
        d = dict(zip(self.param_names, views))
        return {n: d[n] for n in names}

    # ----- random slots
    def _slot_shapes(self, batch: torch.Size) -> list[tuple[str, tuple]]:
        """(path, shape) of each random slot in the order a forward pass calls it, for one member's batch."""
        if batch not in self._batches:
            calls = _input_shapes(self.trace_model, tuple(batch), self.random_slots)
            if len({p for p, _ in calls}) != len(calls):
                raise ValueError("a dropout or noise layer is called twice in one forward pass; no stacked form")
            self._batches[batch] = calls
        return self._batches[batch]

    # ----- one epoch
    def train_epoch(self) -> torch.Tensor:
        """One epoch for every member; the members' mean training losses [K] (like solo's running loss)."""
        members, K = self.members, self.K
        n = len(members[0].run.data.x_train)
        B, steps = members[0].run.batch_size, members[0].run.steps_per_epoch
        perms = []
        for m in members:
            self.rng.enter(m.rng)
            perms.append(torch.randperm(n, device=self.device))
            self.rng.leave(m.rng)
        perms = torch.stack(perms)
        batches = [(i * B, min(n, (i + 1) * B)) for i in range(steps)]
        batches = [(a, b) for i, (a, b) in enumerate(batches) if not (b - a < 2 and i > 0)]
        lrs = self._lr_table(len(batches))  # [steps, K] in float64, the lr each member's optimizer holds at each step
        x_table, x_index, x_shared = self.data["x_train"]
        y_table, y_index, y_shared = self.data["y_train"]
        loss_sum = torch.zeros(K, device=self.device)
        self.template.train()
        for s, (a, b) in enumerate(batches):
            idx = perms[:, a:b]
            xb = _rows(x_table[0], idx) if x_shared else x_table[x_index[:, None], idx]
            yb = _rows(y_table[0], idx) if y_shared else y_table[y_index[:, None], idx]
            xb, yb, masks = self._draws(xb, yb)
            views = self.param_views()
            tensors = {**dict(zip(self.param_names, views)), **self.buffers, **masks}
            logits = self._forward_each(tensors, xb)
            loss = self._loss(logits, yb)
            total = loss
            for hook, fn, values, covered, _ in self.forms:
                if hook == "penalty":
                    total = total + fn(None, self._covered(views, covered), values.to(self.device, loss.dtype))
            self.P.grad = None
            total.sum().backward()
            with torch.no_grad():
                lr = lrs[s]
                for hook, fn, values, covered, _ in self.forms:
                    if hook == "after_backward":
                        self._clip(values)
                for hook, fn, values, covered, _ in self.forms:
                    if hook == "before_step":
                        self._decay(lr, values, covered)
                self._optimizer_step(lr)
                for hook, fn, values, covered, _ in self.forms:
                    if hook == "after_step":
                        self._max_norm(values, covered)
                loss_sum += loss.detach()
        for m in members:
            m.state.step += len(batches)
            m.state.epoch += 1
        return loss_sum / steps

    def _lr_table(self, steps: int) -> torch.Tensor:
        """Each member's lr at each step of this epoch, read from its own optimizer as its own schedule sets it
        (so a schedule is exactly solo's); the member's scheduler ends the epoch where solo's would."""
        table = []
        for m in self.members:
            opt, sched = m.run.optimizer, m.run.scheduler
            col = []
            for _ in range(steps):
                col.append(opt.param_groups[0]["lr"])
                if sched is not None:
                    with warnings.catch_warnings():  # "step() before optimizer.step()": this optimizer never steps
                        warnings.simplefilter("ignore", UserWarning)
                        sched.step()
            table.append(col)
        return torch.tensor(table, dtype=torch.float64).t()

    def _draws(self, xb, yb):
        """Each member's augmentations and dropout/noise masks, from its own generator in solo's order."""
        slots = self._slot_shapes(xb.shape[1:]) if self.random_slots else []
        if not self.transforms and not slots:
            return xb, yb, {}
        xs, ys, masks = [], [], {path: [] for path, _ in slots}
        for k, m in enumerate(self.members):
            if not slots and not m.run.hooks["transform_batch"]:  # nothing to draw: its generator stays as it is
                xs.append(xb[k])
                ys.append(yb[k])
                continue
            self.rng.enter(m.rng)
            try:
                x, y = xb[k], yb[k]
                for reg in m.run.hooks["transform_batch"]:
                    x, y = reg.transform_batch(x, y)
                for path, shape in slots:
                    masks[path].append(self._mask(self.random_slots[path], k, shape))
            finally:
                self.rng.leave(m.rng)
            xs.append(x)
            ys.append(y)
        if self.transforms:
            if any(y.dtype.is_floating_point for y in ys):
                ys = [soft_targets(y, self.members[0].run.data.num_classes) for y in ys]
            xb, yb = torch.stack(xs), torch.stack(ys)
        return xb, yb, {f"{path}.mask": torch.stack(v) for path, v in masks.items()}

    def _mask(self, slot, k, shape):
        mode, modules = slot
        module = modules[k]
        if isinstance(module, nn.Dropout) and module.p > 0:
            p = module.p
            if p == 1:
                return torch.zeros(shape, device=self.device)
            return torch.empty(shape, device=self.device).bernoulli_(1 - p).div_(1 - p)  # F.dropout's own draw
        if isinstance(module, TrainingNoise) and module.std != 0:
            return torch.randn(shape, device=self.device) * module.std  # TrainingNoise's own draw
        return torch.ones(shape, device=self.device) if mode == "mul" else torch.zeros(shape, device=self.device)

    @staticmethod
    def _loss(logits, y):
        K, b = logits.shape[:2]
        target = y.reshape(K * b, *y.shape[2:])
        return F.cross_entropy(logits.reshape(K * b, -1), target, reduction="none").view(K, b).mean(1)

    def _covered(self, views, covered):
        by_name = dict(zip(self.param_names, views))
        return [by_name[n] for n in covered]

    def _per_member(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values.to(like.device, like.dtype).view(-1, *[1] * (like.ndim - 1))

    def _clip(self, max_norm):
        """Gradient clipping by each member's global norm (clip_grad_norm_'s formula)."""
        g = self.P.grad
        total = torch.linalg.vector_norm(g, 2, dim=1)
        coef = (max_norm.to(g.device, g.dtype) / (total + 1e-6)).clamp(max=1.0)
        coef = torch.where(torch.isinf(max_norm.to(g.device)), torch.ones_like(coef), coef)
        g.mul_(coef[:, None])

    def _decay(self, lr, strength, covered):
        """Decoupled weight decay: w ← (1 − lr·λ) w on the covered tensors, each member its own lr and λ."""
        factor = (1.0 - lr * strength).to(torch.float32)  # as solo: the product in double, then one cast
        for v in self._covered(self.param_views(self.P.detach()), covered):
            v.mul_(self._per_member(factor, v))

    def _max_norm(self, c, covered):
        """Max-norm: each unit's incoming weights scaled back to norm ≤ c (torch.renorm's formula)."""
        for v in self._covered(self.param_views(self.P.detach()), covered):
            norms = torch.linalg.vector_norm(v.flatten(2), 2, dim=2)  # [K, units]
            cc = c.to(v.device, v.dtype)[:, None]
            factor = torch.where(norms > cc, cc / (norms + 1e-7), torch.ones_like(norms))
            v.mul_(factor.view(*factor.shape, *[1] * (v.ndim - 2)))

    def _optimizer_step(self, lr: torch.Tensor):
        """One optimizer step on the flat stack, torch's single-tensor formulas with a per-member lr."""
        P, g = self.P.detach(), self.P.grad
        self.opt_step += 1
        if self.opt_kind == "adam":
            beta1, beta2 = self.hyper["betas"]
            self.exp_avg.lerp_(g, 1 - beta1)
            self.exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            step = float(self.opt_step)
            bias_correction1 = 1 - beta1 ** step
            bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
            step_size = (-(lr / bias_correction1)).to(P.device, P.dtype)  # solo's -(lr / bc1) in double, then cast
            if self._scratch is None:  # two [K, N] buffers kept across steps: fresh ones cost page faults every step
                self._scratch = (torch.empty_like(P), torch.empty_like(P))
            denom, update = self._scratch
            torch.sqrt(self.exp_avg_sq, out=denom).div_(bias_correction2_sqrt).add_(self.hyper["eps"])
            P.addcdiv_(torch.mul(self.exp_avg, step_size[:, None], out=update), denom)
        else:
            momentum, dampening, nesterov = self.hyper["momentum"], self.hyper["dampening"], self.hyper["nesterov"]
            d_p = g
            if momentum != 0:
                if self.momentum_buffer is None:
                    self.momentum_buffer = torch.clone(d_p).detach()
                else:
                    self.momentum_buffer.mul_(momentum).add_(d_p, alpha=1 - dampening)
                d_p = d_p.add(self.momentum_buffer, alpha=momentum) if nesterov else self.momentum_buffer
            P.add_(d_p * (-lr).to(P.dtype).to(P.device)[:, None])

    # ----- evaluation
    @torch.no_grad()
    def evaluate(self, *splits: str) -> list[tuple[list[float], list[float]]]:
        """Every member's mean cross-entropy and accuracy on each split, in eval mode (solo's ``evaluate``):
        batched, but on a CPU one member after another (see :meth:`_evaluate_each`) unless the stack is a folded
        convolutional one. Batched through the folded convolutions, an 8-member cnn1d stack's validation split
        takes 5.4-6.2 ms against 10.2-10.4 ms on this project's CPU, and agrees with the members' solo
        evaluation to float rounding (another convolution kernel); an MLP stack would gain little (1.4 against
        3.0 ms an epoch) and keeps solo's numbers bit for bit."""
        batch = self.members[0].run.trainer.eval_batch_size
        if self.device.type == "cpu" and not self.folded_conv:
            return self._evaluate_each(splits, batch)
        return [self._evaluate_batched(split, batch) for split in splits]

    @torch.no_grad()
    def _evaluate_batched(self, split: str, batch: int) -> tuple[list[float], list[float]]:
        x_table, x_index, x_shared = self.data[f"x_{split}"]
        y_table, y_index, y_shared = self.data[f"y_{split}"]
        n = x_table.shape[1]
        tensors = {**dict(zip(self.param_names, self.param_views(self.P.detach()))), **self.buffers}
        self.template.eval()
        loss_sum = torch.zeros(self.K, device=self.device)
        correct = torch.zeros(self.K, device=self.device, dtype=torch.long)
        for i in range(0, n, batch):
            if x_shared:
                logits = self._forward_shared(tensors, x_table[0, i:i + batch])
            else:
                logits = self._forward_each(tensors, x_table[x_index, i:i + batch])
            y = y_table[0, i:i + batch].expand(self.K, -1) if y_shared else y_table[y_index, i:i + batch]
            K, b = y.shape
            loss_sum += F.cross_entropy(logits.float().reshape(K * b, -1), y.reshape(-1), reduction="none").view(K, b).sum(1)
            correct += (logits.argmax(-1) == y).sum(1)
        self.template.train()
        return (loss_sum / n).tolist(), (correct.double() / n).tolist()

    @torch.no_grad()
    def _evaluate_each(self, splits: tuple[str, ...], batch: int) -> list[tuple[list[float], list[float]]]:
        """:meth:`evaluate` one member after another: each member's weights are copied into a model with the
        original layers and solo's ``evaluate_splits`` runs it, bitwise what the member's solo run computes. On
        a CPU, for a stack under vmap, faster than vmap's batched layers; copying the weights costs less than
        functional_call's swap."""
        views = self.param_views(self.P.detach())
        params, buffers = dict(self.eval_module.named_parameters()), dict(self.eval_module.named_buffers())
        tables = [(*self.data[f"x_{split}"][:2], *self.data[f"y_{split}"][:2]) for split in splits]
        results = [([], []) for _ in splits]
        for k in range(self.K):
            for name, view in zip(self.param_names, views):
                params[name].copy_(view[k])
            for name, b in self.buffers.items():
                buffers[name].copy_(b[k])
            inputs = [(x_table[x_index[k]], y_table[y_index[k]]) for x_table, x_index, y_table, y_index in tables]
            for (losses, accs), (loss, acc) in zip(results, solo.evaluate_splits(self.eval_module, inputs, batch)):
                losses.append(loss)
                accs.append(acc)
        return results

    # ----- back to the members' solo objects
    @torch.no_grad()
    def write_back(self, optimizer: bool = True) -> None:
        """Copy each member's weights, buffers and (unless ``optimizer=False``: a best snapshot needs the weights
        only) optimizer state into its own model and optimizer (solo format)."""
        views = self.param_views(self.P.detach())
        for k, m in enumerate(self.members):
            params = list(m.run.model.parameters())
            for p, v in zip(params, views):
                p.copy_(v[k])
            for name, b in m.run.model.named_buffers():
                b.copy_(self.buffers[name][k])
            opt = m.run.optimizer
            if self.opt_step == 0 or not optimizer:
                continue
            offsets = [0]
            for s in self.sizes:
                offsets.append(offsets[-1] + s)
            for j, p in enumerate(params):
                cols = slice(offsets[j], offsets[j + 1])
                if self.opt_kind == "adam":
                    opt.state[p] = {"step": torch.tensor(float(self.opt_step)),
                                    "exp_avg": self.exp_avg[k, cols].view(p.shape).clone(),
                                    "exp_avg_sq": self.exp_avg_sq[k, cols].view(p.shape).clone()}
                elif self.hyper["momentum"] != 0:  # torch's SGD keeps no state without momentum
                    opt.state[p] = {"momentum_buffer": self.momentum_buffer[k, cols].view(p.shape).clone()}


# ------------------------------------------------------------------------------------- the engine

def _rows(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``table[idx]`` for a [K, B] index: ``index_select`` on the flat index, about half the time of advanced
    indexing on a CPU (the same rows)."""
    return table.index_select(0, idx.reshape(-1)).view(*idx.shape, *table.shape[1:])


def _check_same_key(cfgs: list[DictConfig]) -> None:
    keys = set()
    for cfg, (key, why) in zip(cfgs, stack_keys(cfgs)):
        if key is None:
            raise ValueError(f"seed={cfg.seed}: cannot train stacked: {why}")
        keys.add(key)
    if len(keys) > 1:
        raise ValueError("configurations of one stack must share one stack_key (network shape, data shapes, "
                         f"batch size, epochs, optimizer apart from lr); got {len(keys)} keys")


def train_stacked(cfgs: list[DictConfig], run_dirs: list[str | Path]) -> list[dict]:
    """Train configurations that share a :func:`stack_key` together, each in its run dir; their results.

    Each member writes exactly what ``regbench.train.train(cfg, run_dir)`` writes (config.yaml,
    metrics.jsonl, result.json with ``"stacked": K``, checkpoints/last.pt and best.pt in the solo format),
    and resumes from its own last.pt; members already completed or diverged are skipped as solo skips
    them. More members than fit in one stack (:func:`max_stack_size`) are trained as several stacks.
    Locking the run dirs (``rundir.hold``) is the caller's job, as for ``train``.
    """
    if len(cfgs) != len(run_dirs):
        raise ValueError(f"{len(cfgs)} configs but {len(run_dirs)} run dirs")
    run_dirs = [Path(d) for d in run_dirs]
    if len(set(map(str, run_dirs))) != len(run_dirs):
        raise ValueError("two members of a stack share a run dir")
    if not cfgs:
        return []
    _check_same_key(cfgs)
    results: list[dict | None] = [None] * len(cfgs)
    todo = []
    for i, (cfg, run_dir) in enumerate(zip(cfgs, run_dirs)):
        rid = run_id(cfg)
        rundir.check_identity(run_dir, rid)
        previous = rundir.finished_result(run_dir, rid, cfg.resume)
        if previous:
            log.info("%s: already %s, not retrained", run_dir, previous["status"])
            results[i] = {**previous, "skipped": True}
        else:
            todo.append(i)
    if todo:
        first = _build_member(cfgs[todo[0]], run_dirs[todo[0]])
        size = max_stack_size(sum(p.numel() for p in first.run.model.parameters()),
                              _activations(first), first.run.data.x_train.device)
        built = {todo[0]: first}
        for start in range(0, len(todo), size):
            chunk = todo[start:start + size]
            members = []
            for i in chunk:
                members.append(built.pop(i, None) or _build_member(cfgs[i], run_dirs[i]))
                _share_data(members)
            for i, result in zip(chunk, _train_members(members)):
                results[i] = result
    return results


def _share_data(members: list[Member]) -> None:
    """The newest member uses an earlier member's data tensors where they are equal (one copy in memory)."""
    new = members[-1].run.data
    for split in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        mine = getattr(new, split)
        for other in members[:-1]:
            theirs = getattr(other.run.data, split)
            if theirs.shape == mine.shape and torch.equal(theirs, mine):
                setattr(new, split, theirs)
                break


def _activations(member: Member) -> int:
    """Activation values of one member's training batch (outputs of every leaf module), for the memory budget."""
    total = [0]
    model = copy.deepcopy(member.run.model).to("meta")
    hooks = [m.register_forward_hook(lambda mod, a, out: total.__setitem__(0, total[0] + out.numel()))
             for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(torch.empty(member.run.batch_size, *member.run.data.input_shape, device="meta"))
    for h in hooks:
        h.remove()
    return total[0]


def _build_member(cfg: DictConfig, run_dir: Path) -> Member:
    """A member exactly as solo ``train`` starts: build_run under its seed, then its checkpoint if any."""
    rid = run_id(cfg)
    run = solo.build_run(cfg, run_dir)
    rng = checkpoint.rng_state()  # what a solo run's generators hold when its first epoch starts
    if cfg.resume and run.last_path.exists():
        state = solo.resume(run)
        rng = checkpoint.rng_state()  # resume() restored the checkpoint's generators
    else:
        state = solo.RunState(rid)
    if state.run_id != rid:
        raise rundir.RunDirConflict(f"{run.last_path} is a checkpoint of another configuration (run id {state.run_id}; "
                                    f"this one is {rid}); choose another hydra.run.dir or remove that folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / solo.CONFIG_FILE, to_yaml(to_container(cfg)))
    write_jsonl(run_dir / solo.METRICS_FILE, state.history)
    for reg in run.regs:
        log.info("%s: regularizer %s", run_dir.name, reg.describe())
    state.logger_id = None  # trackers are opened when the member ends (one W&B run per process at a time)
    return Member(run, state, rng)


def _train_members(members: list[Member]) -> list[dict]:
    K = len(members)
    log.info("training %d runs stacked: %s", K, ", ".join(m.run.run_dir.name for m in members))
    now = time.perf_counter()
    for m in members:
        m.wall_start = now - m.state.wall_seconds
    stack: Stack | None = None
    try:
        while True:
            active = [m for m in members if not m.done and m.result is None]
            for m in members:
                if m.done and m.result is None:
                    _finish(m, K)
            if not active:
                break
            epoch = min(m.state.epoch for m in active)
            group = [m for m in active if m.state.epoch == epoch]
            if stack is None or [id(m) for m in stack.members] != [id(m) for m in group]:
                if stack is not None:
                    stack.write_back()
                stack = Stack(group)
            epoch_start = time.perf_counter()
            running = stack.train_epoch().tolist()
            seconds = time.perf_counter() - epoch_start
            rows = _evaluate_and_select(stack, running)
            for m, row in zip(group, rows):
                m.state.train_seconds += seconds
                row["seconds"] = round(time.perf_counter() - m.wall_start, 3)
                m.state.history.append(solo._finite(row))
                m.state.wall_seconds = time.perf_counter() - m.wall_start
            # All members checkpoint together when one is due (after epoch 1, at its end, every checkpoint_every_s),
            # so that after a kill they resume at one epoch and train on as one stack.
            save = any(solo.checkpoint_due(m.run, m.state) for m in group)
            if save:
                stack.write_back()
                _save_checkpoints(group)
            for m in group:
                append_jsonl(m.run.run_dir / solo.METRICS_FILE, m.state.history[-1])
                log.info("%s: %s", m.run.run_dir.name, solo._format_row(m.state.history[-1], m.run.trainer.max_epochs),
                         extra={"epoch_line": True})
    except BaseException as e:
        for m in members:
            if m.result is None:
                _open_logger(m, {"status": "failed", "run_id": m.state.run_id, "error": f"{type(e).__name__}: {e}"})
        raise
    return [m.result for m in members]


def _evaluate_and_select(stack: Stack, running: list[float]) -> list[dict]:
    """Solo's ``evaluate_and_select`` for every member of the stack, with one batched evaluation per split."""
    members = stack.members
    rows = [{"epoch": m.state.epoch, "step": m.state.step, "train_loss": None, "train_acc": None,
             "val_loss": None, "val_acc": None, "lr": m.run.optimizer.param_groups[0]["lr"]} for m in members]
    due = solo.train_eval_due(members[0].run.trainer, members[0].state.epoch)  # one epoch and cadence in a stack
    (val_loss, val_acc), *train = stack.evaluate("val", *(["train_eval"] if due else []))
    need_weights = False
    best, with_train = [], []
    for k, (m, row) in enumerate(zip(members, rows)):
        if not math.isfinite(running[k]):
            m.state.status = "diverged"
            log.warning("%s: epoch %d: training loss is not finite: diverged", m.run.run_dir.name, m.state.epoch)
            best.append(False)
            continue
        row["val_loss"], row["val_acc"] = val_loss[k], val_acc[k]
        stopper = m.run.stopper
        improved = stopper.update(row[stopper.monitor], m.state.epoch)
        best.append(improved)
        need_weights |= improved
        if stopper.should_stop:
            m.state.status = "stopped"
            log.info("%s: early stopping at epoch %d: best %s at epoch %d", m.run.run_dir.name, m.state.epoch,
                     stopper.monitor, stopper.best_epoch)
        if due or stopper.should_stop:  # as solo: the cadence's epochs and a member's last row
            with_train.append(k)
    if with_train:
        (train_loss, train_acc), = train if due else stack.evaluate("train_eval")
        for k in with_train:
            rows[k]["train_loss"], rows[k]["train_acc"] = train_loss[k], train_acc[k]
    if need_weights:  # kept in memory, as solo does; the next checkpoint writes it
        stack.write_back(optimizer=False)
        for m, improved in zip(members, best):
            if improved:
                m.run.best = solo.best_snapshot(m.run, m.state.epoch)
    return rows


def _save_checkpoints(members: list[Member]) -> None:
    """Solo's checkpoint files (best.pt if due, then last.pt) of every member, each with its own generators as
    ``rng``, written together: a kill leaves all members at the old epoch or all at the new one (but for the
    renames themselves), so they resume as one stack and end as an uninterrupted run would."""
    files = []
    for m in members:
        checkpoint.set_rng_state(m.rng)  # what solo's checkpoint records is the global state: make it the member's
        files += solo.checkpoint_files(m.run, m.state)
    checkpoint.save_all(files)


def _finish(m: Member, K: int) -> None:
    """Solo's ``finish`` (test evaluation of the selected checkpoint, result.json), plus ``"stacked": K``."""
    result = solo.finish(m.run, m.state)
    result["stacked"] = K
    m.result = _open_logger(m, result)
    write_json(m.run.run_dir / rundir.RESULT_FILE, m.result)


def _open_logger(m: Member, result: dict) -> dict:
    """The member's tracker run: opened now, given the member's history and its result, then finished."""
    cfg = m.cfg
    logger = build.build_logger(cfg.logger)
    try:
        logger.start(run_dir=m.run.run_dir, config=to_container(cfg), group=cfg.name, name=m.run.run_dir.name,
                     tags=[r.name for r in m.run.regs] or ["baseline"], resume_id=None)
        result = {**result, "logger_id": logger.run_id}
        for row in m.state.history:
            logger.log(row)
    finally:
        logger.finish(result)
    return result
