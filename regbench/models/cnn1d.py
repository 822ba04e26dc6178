"""The 1-D CNN of the MNIST-1D paper (Greydanus & Steinbach 2024, ``ConvBase``; ~94% test accuracy).

Three strided convolutions (k5/s2, k3/s2, k3/s2) with ReLU, then one linear layer on the
flattened features: 25 channels × 5 positions = 125 features for signals of length 40.
"""

from __future__ import annotations

import torch
from torch import nn

from regbench.errors import ConfigError, check_int
from regbench.models import layers
from regbench.models.common import check_options, conv_bias, conv_out, conv_unit

# (kernel, stride, padding) of the paper's three convolutions.
CONVS = ((5, 2, 1), (3, 2, 1), (3, 2, 1))


class CNN1d(nn.Module):
    """Input dropout → 3 × [Conv1d → norm → act → noise → dropout] → flatten → Linear.

    Takes (C, L) signals; the flattened size is computed from L, so other lengths work too.
    """

    rows_independent = True  # forward treats each example alone: stacked training folds members into the batch

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, *, channels: int = 25, activation: str = "relu",
                 norm: str = "none", dropout: float = 0.0, input_dropout: float = 0.0, noise_std: float = 0.0,
                 drop_path: float = 0.0, init: str = "default", init_gain: float | None = None):
        super().__init__()
        (c_in, length) = check_options("cnn1d", in_shape, num_classes, activation=activation, norm=norm,
                                       dropout=dropout, input_dropout=input_dropout, noise_std=noise_std,
                                       drop_path=drop_path, init=init, init_gain=init_gain, input_rank=1)
        check_int("channels", channels, 1)
        units = []
        for kernel, stride, padding in CONVS:
            conv = nn.Conv1d(c_in, channels, kernel, stride, padding, bias=conv_bias(norm))
            units.append(conv_unit(conv, norm=norm, act=activation, noise_std=noise_std, dropout_p=dropout))
            c_in, length = channels, conv_out(length, kernel, stride, padding)
        if length < 1:
            raise ConfigError(f"in_shape={list(in_shape)}: cnn1d needs signals of length ≥ 3")
        self.input_dropout = layers.dropout(input_dropout)
        self.features = nn.Sequential(*units)
        self.classifier = nn.Linear(channels * length, num_classes)
        layers.finish(self, norm=norm, init=init, init_gain=init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.input_dropout(x)).flatten(1))
