"""The small Inception of Zhang et al. (2017, "Understanding deep learning requires rethinking
generalization", appendix A, Fig. 3), a scaled-down Inception (Szegedy et al. 2016) for CIFAR-10.

Modules, all built from a conv module (conv → norm → act):
- inception module (c1, c3): a 1×1 and a 3×3 branch, concatenated (c1 + c3 channels);
- downsample module (c): a stride-2 3×3 conv branch and a stride-2 3×3 max-pool, concatenated.

Network: conv 3×3 (96) → inc(32,32) → inc(32,48) → down(80) → inc(112,48) → inc(96,64) →
inc(80,80) → inc(48,96) → down(96) → inc(176,160) → inc(176,160) → global mean pool → linear.
The head is global pooling, so any image size ≥ 1 pixel works (28×28 crops in the paper,
32×32 CIFAR, 8×8 digits), and the size does not depend on it: 1,649,402 parameters for
3 input channels and 10 classes with the default norm=none (biased convs), exactly the count in
Zhang et al.'s Table 1; 1,651,114 with norm=batch, as they trained it.
"""

from __future__ import annotations

import torch
from torch import nn

from regbench.models import layers
from regbench.models.common import check_options, conv_bias, conv_unit

# (kind, channels) of the modules after the first conv, as in Zhang et al.'s Fig. 3.
ARCHITECTURE = (
    ("inception", (32, 32)), ("inception", (32, 48)), ("downsample", 80),
    ("inception", (112, 48)), ("inception", (96, 64)), ("inception", (80, 80)), ("inception", (48, 96)),
    ("downsample", 96),
    ("inception", (176, 160)), ("inception", (176, 160)),
)


class _Concat(nn.Module):
    """Runs branches on the same input and concatenates their outputs along channels."""

    rows_independent = True  # each example alone (stacks fold it)

    def __init__(self, *branches: nn.Module):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class InceptionSmall(nn.Module):
    """Input dropout → conv module → inception and downsample modules → global mean pool → Linear.

    Every conv module is conv → norm → act → noise → dropout. The paper trains with batch norm;
    here ``norm`` defaults to none like every model, so the baseline has no normalization.
    """

    rows_independent = True  # forward treats each example alone: stacked training folds members into the batch

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, *, activation: str = "relu", norm: str = "none",
                 dropout: float = 0.0, input_dropout: float = 0.0, noise_std: float = 0.0, drop_path: float = 0.0,
                 init: str = "default", init_gain: float | None = None):
        super().__init__()
        c_in, _, _ = check_options("inception_small", in_shape, num_classes, activation=activation, norm=norm,
                                   dropout=dropout, input_dropout=input_dropout, noise_std=noise_std,
                                   drop_path=drop_path, init=init, init_gain=init_gain, input_rank=2)
        unit = dict(norm=norm, act=activation, noise_std=noise_std, dropout_p=dropout)

        def conv_module(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
            conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=conv_bias(norm))
            return conv_unit(conv, **unit)

        modules = [conv_module(c_in, 96, 3)]
        channels = 96
        for kind, spec in ARCHITECTURE:
            if kind == "inception":
                c1, c3 = spec
                modules.append(_Concat(conv_module(channels, c1, 1), conv_module(channels, c3, 3)))
                channels = c1 + c3
            else:
                # Padding 1 on both branches keeps their sizes equal: ceil(H / 2), e.g. 28 → 14 → 7.
                modules.append(_Concat(conv_module(channels, spec, 3, stride=2), nn.MaxPool2d(3, 2, padding=1)))
                channels = channels + spec
        self.input_dropout = layers.dropout(input_dropout)
        self.features = nn.Sequential(*modules)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        layers.finish(self, norm=norm, init=init, init_gain=init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(self.input_dropout(x))).flatten(1))
