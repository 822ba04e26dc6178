"""Building blocks shared by the models: activations, norm layers, noise, stochastic depth, init.

Every model takes the same regularization options (``norm``, ``dropout``, ``input_dropout``,
``noise_std``, ``drop_path``, ``activation``, ``init``, ``init_gain``) and builds them with the
helpers here, so a regularizer can switch a technique on for any model by one keyword.
"""

from __future__ import annotations

import math

import torch
from torch import nn

NORMS = ("none", "batch", "layer", "group", "instance", "weight")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu")
INITS = ("default", "kaiming", "xavier", "normal")


def activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}[name]()


def norm_layer(kind: str, channels: int, dim: int) -> nn.Module:
    """A normalization layer over ``channels`` for inputs of spatial rank ``dim`` (0: [N, C], 1: [N, C, L], 2: [N, C, H, W]).

    ``weight`` normalization reparametrizes the weights instead (see :func:`apply_weight_norm`),
    so here it is the identity, as is ``none``.
    """
    if kind in ("none", "weight"):
        return nn.Identity()
    if kind == "batch":
        return (nn.BatchNorm1d, nn.BatchNorm1d, nn.BatchNorm2d)[dim](channels)
    if kind == "layer":
        # Normalize over all features of one example: GroupNorm with one group does that for any rank.
        return nn.GroupNorm(1, channels) if dim else nn.LayerNorm(channels)
    if kind == "group":
        return nn.GroupNorm(_num_groups(channels), channels)
    if kind == "instance":
        if dim == 0:
            raise ValueError("instance norm needs spatial dimensions; use norm=layer for MLPs")
        return (None, nn.InstanceNorm1d, nn.InstanceNorm2d)[dim](channels, affine=True)
    raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")


def _num_groups(channels: int) -> int:
    # 32 groups as in Wu & He (2018) when the width allows, else the largest divisor up to 32.
    return next(g for g in range(min(32, channels), 0, -1) if channels % g == 0)


def apply_weight_norm(model: nn.Module) -> nn.Module:
    """Weight normalization (Salimans & Kingma 2016) on every linear and conv layer."""
    for module in list(model.modules()):
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            nn.utils.parametrizations.weight_norm(module)
    return model


def add_gaussian_noise(x: torch.Tensor, std: float) -> torch.Tensor:
    """``x`` + N(0, std²) noise, drawn from torch's global generator: every noise regularizer's arithmetic."""
    return x + torch.randn_like(x) * std


class TrainingNoise(nn.Module):
    """Adds N(0, std²) noise to what passes through in training; the identity at eval or when std == 0.

    The models place it after hidden activations (the model option ``noise_std``), and
    ``weight_noise`` registers it as a parametrization of each kernel. Noise on the inputs is an
    augmentation instead (``regbench.regularizers.image_augment.GaussianNoise``).
    """

    def __init__(self, std: float = 0.0):
        super().__init__()
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.std == 0:
            return x
        return add_gaussian_noise(x, self.std)

    def extra_repr(self) -> str:
        return f"std={self.std}"


def drop_path(p: float) -> nn.Module:
    """Stochastic depth (Huang et al. 2016) on a residual branch: torchvision's ``StochasticDepth(p, "row")``.

    In training each sample's branch is zeroed with probability p and survivors are scaled by
    1/(1 − p), so the expected output is unchanged; the identity at eval, and when p == 0.
    torchvision is imported only here: it takes seconds, and only residual nets with drop_path need it.
    """
    if p == 0:
        return nn.Identity()
    from torchvision.ops import StochasticDepth

    return StochasticDepth(p, mode="row")


def dropout(p: float) -> nn.Module:
    """Inverted dropout (PyTorch's), or the identity when p == 0 so the default costs nothing."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


def post_activation(act: str, *, noise_std: float, dropout_p: float) -> nn.Sequential:
    """Activation → Gaussian noise → dropout: what follows every hidden norm layer."""
    return nn.Sequential(
        activation(act),
        TrainingNoise(noise_std) if noise_std > 0 else nn.Identity(),
        dropout(dropout_p),
    )


def hidden_block(n_in: int, n_out: int, *, norm: str, act: str, dropout_p: float, noise_std: float) -> nn.Sequential:
    """Linear → norm → activation → noise → dropout: the fully connected layer every MLP head uses."""
    return nn.Sequential(nn.Linear(n_in, n_out), norm_layer(norm, n_out, 0),
                         *post_activation(act, noise_std=noise_std, dropout_p=dropout_p))


def init_weights(model: nn.Module, init: str = "default", gain: float | None = None) -> nn.Module:
    """Initialize linear and conv weights with variance c/fan_in (the lectures' σ² = c/n).

    - ``default``: PyTorch's own initialization, untouched.
    - ``kaiming``: N(0, c/fan_in) with c = 2 unless ``gain`` says otherwise (He et al. 2015).
    - ``normal``: N(0, c/fan_in) with c = ``gain`` (1 if unset): c=1 stalls a deep ReLU net, c=2 trains, c=3 blows up.
    - ``xavier``: N(0, c·2/(fan_in + fan_out)) with c = 1 unless set (Glorot & Bengio 2010).
    Biases start at zero for every non-default scheme.
    """
    if init == "default":
        return model
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    c = gain if gain is not None else {"kaiming": 2.0, "normal": 1.0, "xavier": 1.0}[init]
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            weight = module.weight
            fan_in = weight[0].numel()
            fan_out = weight.shape[0] * weight[0][0].numel()
            var = c * 2.0 / (fan_in + fan_out) if init == "xavier" else c / fan_in
            with torch.no_grad():
                weight.normal_(0.0, math.sqrt(var))
                if module.bias is not None:
                    module.bias.zero_()
    return model


def finish(model: nn.Module, *, norm: str, init: str, init_gain: float | None) -> nn.Module:
    """The last step of every model constructor: initialization, then weight norm if asked for."""
    init_weights(model, init, init_gain)
    if norm == "weight":
        apply_weight_norm(model)
    return model
