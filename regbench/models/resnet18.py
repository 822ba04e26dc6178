"""ResNet-18 for small images (He et al. 2016a), with the width multiplier of Nakkiran et al. (2020).

CIFAR variant: a 3×3 stride-1 stem and no max-pool, then four stages of two BasicBlocks with
k, 2k, 4k, 8k channels and strides 1, 2, 2, 2, global average pooling and a linear classifier.
k = ``width`` = 64 is the standard ResNet-18 (11,173,962 parameters with norm=batch on CIFAR-10);
Nakkiran et al.'s "Deep double descent" sweeps k from 1 to 64 with pre-activation blocks
(``preact: true``, He et al. 2016b). Global pooling lets it take any image size: 8×8 digits
reach the last stage as 1×1 maps, 28×28 MNIST as 4×4.
"""

from __future__ import annotations

from regbench.errors import ConfigError, check_int
from regbench.models.common import check_options
from regbench.models.residual import ResidualNet


class ResNet18(ResidualNet):
    """Input dropout → stem → 4 stages × 2 residual blocks → global mean pool → Linear.

    Standard ResNets use norm=batch; the default here is none so the baseline is unnormalized.
    """

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, *, width: int = 64, preact: bool = False,
                 activation: str = "relu", norm: str = "none", dropout: float = 0.0, input_dropout: float = 0.0,
                 noise_std: float = 0.0, drop_path: float = 0.0, init: str = "default", init_gain: float | None = None):
        options = dict(activation=activation, norm=norm, dropout=dropout, input_dropout=input_dropout,
                       noise_std=noise_std, drop_path=drop_path, init=init, init_gain=init_gain)
        c_in, _, _ = check_options("resnet18", in_shape, num_classes, input_rank=2, residual=True, **options)
        check_int("width", width, 1)
        if not isinstance(preact, bool):
            raise ConfigError(f"preact={preact!r} must be true or false")
        super().__init__(c_in, num_classes, width, [width, 2 * width, 4 * width, 8 * width], [1, 2, 2, 2], 2,
                         preact=preact, **options)
