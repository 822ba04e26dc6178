"""A small 2-D CNN for images: two conv blocks and a hidden fully connected layer.

The usual LeNet-style baseline (LeCun et al. 1998) in its modern form, with the 32/64 3×3 filters
and 128-unit hidden layer of PyTorch's MNIST example: cheap enough for many-seed ablations on
digits, MNIST and CIFAR.
"""

from __future__ import annotations

import torch
from torch import nn

from regbench.errors import ConfigError, check_int
from regbench.models import layers
from regbench.models.common import check_options, conv_bias, conv_unit, fc_norm


class CNN(nn.Module):
    """Input dropout → 2 × [Conv3×3 → norm → act → noise → dropout → MaxPool2] → FC ``width`` → Linear.

    The blocks have ``channels`` and 2 × ``channels`` filters (32, 64 by default). Each max-pool
    halves the image (flooring), so 8×8 digits reach the head as 2×2 maps and 32×32 CIFAR as 8×8;
    images must be at least 4×4. ``norm`` follows the convs and the hidden FC layer (instance
    norm, which needs spatial dimensions, only the convs).
    """

    rows_independent = True  # forward treats each example alone: stacked training folds members into the batch

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, *, channels: int = 32, width: int = 128,
                 activation: str = "relu", norm: str = "none", dropout: float = 0.0, input_dropout: float = 0.0,
                 noise_std: float = 0.0, drop_path: float = 0.0, init: str = "default", init_gain: float | None = None):
        super().__init__()
        c_in, h, w = check_options("cnn", in_shape, num_classes, activation=activation, norm=norm,
                                 dropout=dropout, input_dropout=input_dropout, noise_std=noise_std,
                                 drop_path=drop_path, init=init, init_gain=init_gain, input_rank=2)
        check_int("channels", channels, 1)
        check_int("width", width, 1)
        if min(h, w) < 4:
            raise ConfigError(f"in_shape={list(in_shape)}: cnn needs images of at least 4×4")
        blocks = []
        for c_out in (channels, 2 * channels):
            conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=conv_bias(norm))
            blocks += [conv_unit(conv, norm=norm, act=activation, noise_std=noise_std, dropout_p=dropout),
                       nn.MaxPool2d(2)]
            c_in, h, w = c_out, h // 2, w // 2
        self.input_dropout = layers.dropout(input_dropout)
        self.features = nn.Sequential(*blocks)
        self.hidden = layers.hidden_block(c_in * h * w, width, norm=fc_norm(norm), act=activation,
                                          dropout_p=dropout, noise_std=noise_std)
        self.classifier = nn.Linear(width, num_classes)
        layers.finish(self, norm=norm, init=init, init_gain=init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden(self.features(self.input_dropout(x)).flatten(1)))
