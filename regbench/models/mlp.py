"""Multilayer perceptron: ``depth`` hidden layers of ``width`` units on the flattened input.

Defaults (2 × 100, ReLU) are the MLP of the MNIST-1D paper (Greydanus & Steinbach 2024,
40 → 100 → 100 → 10, ~68% test accuracy). ``mlp_1x512`` and ``mlp_3x512`` are the MLPs of
Zhang et al. (2017) used in their randomization tests.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from regbench.errors import check_int
from regbench.models import layers
from regbench.models.common import check_options


class MLP(nn.Module):
    """Flatten → input dropout → ``depth`` × [Linear → norm → act → noise → dropout] → Linear.

    ``norm`` may be none, batch, layer, group or weight; instance norm needs spatial dimensions
    and raises.
    """

    rows_independent = True  # forward treats each example alone: stacked training folds members into the batch

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, *, depth: int = 2, width: int = 100,
                 activation: str = "relu", norm: str = "none", dropout: float = 0.0, input_dropout: float = 0.0,
                 noise_std: float = 0.0, drop_path: float = 0.0, init: str = "default", init_gain: float | None = None):
        super().__init__()
        in_shape = check_options("mlp", in_shape, num_classes, activation=activation, norm=norm, dropout=dropout,
                                 input_dropout=input_dropout, noise_std=noise_std, drop_path=drop_path, init=init,
                                 init_gain=init_gain)
        check_int("depth", depth, 1)
        check_int("width", width, 1)
        sizes = [math.prod(in_shape)] + [width] * depth
        self.input_dropout = layers.dropout(input_dropout)
        self.hidden = nn.Sequential(*(
            layers.hidden_block(n_in, n_out, norm=norm, act=activation, dropout_p=dropout, noise_std=noise_std)
            for n_in, n_out in zip(sizes[:-1], sizes[1:])
        ))
        self.classifier = nn.Linear(width, num_classes)
        layers.finish(self, norm=norm, init=init, init_gain=init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden(self.input_dropout(x.flatten(1))))
