"""Wide residual networks, WRN-depth-k (Zagoruyko & Komodakis 2016, "Wide residual networks").

A 3×3 stem of 16 channels, three stages of n = (depth − 4) / 6 pre-activation blocks with
16k, 32k, 64k channels and strides 1, 2, 2, a final norm-act, global average pooling and a
linear classifier. The paper's dropout sits between the two convs of each block (they used
0.3 on CIFAR). WRN-16-4, the default, has 2,748,890 parameters with norm=batch on CIFAR-10
(the paper: 2.7M); WRN-28-10 has 36.5M. Global pooling lets it take any image size.
"""

from __future__ import annotations

from regbench.errors import ConfigError, check_int
from regbench.models.common import check_options
from regbench.models.residual import ResidualNet


class WideResNet(ResidualNet):
    """Input dropout → stem → 3 stages × n pre-activation blocks → norm-act → global mean pool → Linear.

    The paper trains with batch norm; the default here is none so the baseline is unnormalized.
    """

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, *, depth: int = 16, widen_factor: int = 4,
                 activation: str = "relu", norm: str = "none", dropout: float = 0.0, input_dropout: float = 0.0,
                 noise_std: float = 0.0, drop_path: float = 0.0, init: str = "default", init_gain: float | None = None):
        options = dict(activation=activation, norm=norm, dropout=dropout, input_dropout=input_dropout,
                       noise_std=noise_std, drop_path=drop_path, init=init, init_gain=init_gain)
        c_in, _, _ = check_options("wide_resnet", in_shape, num_classes, input_rank=2, residual=True, **options)
        check_int("depth", depth, 10)
        check_int("widen_factor", widen_factor, 1)
        if (depth - 4) % 6:
            raise ConfigError(f"depth={depth} must be 6n+4 (10, 16, 22, 28, 40, ...): two convs per block, "
                              f"three stages, plus stem and classifier")
        k = widen_factor
        super().__init__(c_in, num_classes, 16, [16 * k, 32 * k, 64 * k], [1, 2, 2], (depth - 4) // 6,
                         preact=True, **options)
