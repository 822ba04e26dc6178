"""Multinomial logistic regression: one linear layer on the flattened input.

The zero-hidden-layer baseline of Zhang et al. (2017, "Understanding deep learning requires
rethinking generalization"), and the floor every deeper model on MNIST-1D should beat
(Greydanus & Steinbach 2024 report ~32% test accuracy for a linear model).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from regbench.models import layers
from regbench.models.common import check_options


class Logistic(nn.Module):
    """Flatten → (input dropout) → Linear(prod(in_shape) → num_classes).

    With no hidden layer, ``norm`` may only be none or weight and ``dropout``/``noise_std`` must
    be 0 (they raise otherwise); ``input_dropout`` acts on the input. ``activation`` is accepted
    for the shared contract and unused.
    """

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, *, activation: str = "relu", norm: str = "none",
                 dropout: float = 0.0, input_dropout: float = 0.0, noise_std: float = 0.0, drop_path: float = 0.0,
                 init: str = "default", init_gain: float | None = None):
        super().__init__()
        in_shape = check_options("logistic", in_shape, num_classes, activation=activation, norm=norm, dropout=dropout,
                                 input_dropout=input_dropout, noise_std=noise_std, drop_path=drop_path, init=init,
                                 init_gain=init_gain, hidden=False)
        self.input_dropout = layers.dropout(input_dropout)
        self.classifier = nn.Linear(math.prod(in_shape), num_classes)
        layers.finish(self, norm=norm, init=init, init_gain=init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.input_dropout(x.flatten(1)))
