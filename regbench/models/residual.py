"""Residual blocks and the trunk that stacks them, shared by ``resnet18`` and ``wide_resnet``.

- :class:`BasicBlock`: He et al. (2016a, "Deep residual learning"), conv-norm-act twice with the
  second activation after the addition.
- :class:`PreActBlock`: He et al. (2016b, "Identity mappings in deep residual networks"), norm-act
  before each conv and nothing after the addition; the block of wide ResNets (Zagoruyko &
  Komodakis 2016) and of Nakkiran et al.'s (2020) double-descent ResNet18s.

In both, ``dropout`` sits between the two convs of the residual branch, where Zagoruyko &
Komodakis found it helps (dropout on the identity path hurts), Gaussian noise follows every
activation, and ``drop_path`` drops the whole branch per sample (Huang et al. 2016).
"""

from __future__ import annotations

import torch
from torch import nn

from regbench.models import layers
from regbench.models.common import conv_bias


def _conv3x3(c_in: int, c_out: int, stride: int, norm: str) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=conv_bias(norm))


class BasicBlock(nn.Module):
    """out = act(shortcut(x) + drop_path(norm(conv(dropout(act(norm(conv(x))))))))."""

    rows_independent = True  # its forward adds its children's outputs, each example alone (stacks fold it)

    def __init__(self, c_in: int, c_out: int, stride: int, *, norm: str, act: str, noise_std: float, dropout_p: float,
                 drop_path: float):
        super().__init__()
        self.branch = nn.Sequential(
            _conv3x3(c_in, c_out, stride, norm), layers.norm_layer(norm, c_out, 2),
            layers.post_activation(act, noise_std=noise_std, dropout_p=dropout_p),
            _conv3x3(c_out, c_out, 1, norm), layers.norm_layer(norm, c_out, 2),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            # Projection shortcut (He et al.'s option B) where the shape changes.
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=conv_bias(norm)),
                                          layers.norm_layer(norm, c_out, 2))
        self.drop_path = layers.drop_path(drop_path)
        self.out = layers.post_activation(act, noise_std=noise_std, dropout_p=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.shortcut(x) + self.drop_path(self.branch(x)))


class PreActBlock(nn.Module):
    """pre = act(norm(x)); out = shortcut + drop_path(conv(dropout(act(norm(conv(pre)))))).

    The shortcut is x itself, or a 1×1 conv of ``pre`` where the shape changes (as in the
    reference WRN code, so the projection sees normalized input).
    """

    rows_independent = True  # its forward adds its children's outputs, each example alone (stacks fold it)

    def __init__(self, c_in: int, c_out: int, stride: int, *, norm: str, act: str, noise_std: float, dropout_p: float,
                 drop_path: float):
        super().__init__()
        self.pre = nn.Sequential(layers.norm_layer(norm, c_in, 2), layers.post_activation(act, noise_std=noise_std, dropout_p=0.0))
        self.branch = nn.Sequential(
            _conv3x3(c_in, c_out, stride, norm), layers.norm_layer(norm, c_out, 2),
            layers.post_activation(act, noise_std=noise_std, dropout_p=dropout_p),
            _conv3x3(c_out, c_out, 1, norm),
        )
        self.projection = None
        if stride != 1 or c_in != c_out:
            self.projection = nn.Conv2d(c_in, c_out, 1, stride, bias=conv_bias(norm))
        self.drop_path = layers.drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre(x)
        shortcut = x if self.projection is None else self.projection(pre)
        return shortcut + self.drop_path(self.branch(pre))


def residual_trunk(c_in: int, stem_channels: int, widths: list[int], strides: list[int], blocks_per_stage: int, *,
                   preact: bool, norm: str, act: str, noise_std: float, dropout_p: float,
                   drop_path: float) -> tuple[nn.Sequential, int]:
    """Stem conv 3×3 → stages of blocks → (pre-act: final norm-act); returns it and its output channels.

    ``drop_path`` is the rate of the last block; block i of N drops with rate drop_path·i/N,
    Huang et al.'s linear decay rule (early blocks compute features every later block needs).
    """
    unit = dict(norm=norm, act=act, noise_std=noise_std)
    stem = [_conv3x3(c_in, stem_channels, 1, norm)]
    if not preact:  # a pre-activation network normalizes at the start of its first block instead
        stem += [layers.norm_layer(norm, stem_channels, 2), layers.post_activation(act, noise_std=noise_std, dropout_p=0.0)]
    block = PreActBlock if preact else BasicBlock
    total = len(widths) * blocks_per_stage
    stages, channels, index = [], stem_channels, 0
    for width, stride in zip(widths, strides):
        stage = []
        for j in range(blocks_per_stage):
            index += 1
            stage.append(block(channels, width, stride if j == 0 else 1, dropout_p=dropout_p,
                               drop_path=drop_path * index / total, **unit))
            channels = width
        stages.append(nn.Sequential(*stage))
    final = []
    if preact:  # the last block ends in a bare addition; normalize and activate before pooling
        final = [layers.norm_layer(norm, channels, 2), layers.post_activation(act, noise_std=noise_std, dropout_p=0.0)]
    return nn.Sequential(nn.Sequential(*stem), *stages, *final), channels


class ResidualNet(nn.Module):
    """Input dropout → :func:`residual_trunk` → global mean pool → Linear: the body of resnet18 and wide_resnet.

    Subclasses validate their own options, then pass the trunk's shape here. Global pooling
    lets the net take any image size.
    """

    rows_independent = True  # forward treats each example alone: stacked training folds members into the batch

    def __init__(self, c_in: int, num_classes: int, stem_channels: int, widths: list[int], strides: list[int],
                 blocks_per_stage: int, *, preact: bool, activation: str, norm: str, dropout: float, input_dropout: float,
                 noise_std: float, drop_path: float, init: str, init_gain: float | None):
        super().__init__()
        self.input_dropout = layers.dropout(input_dropout)
        self.features, channels = residual_trunk(
            c_in, stem_channels, widths, strides, blocks_per_stage=blocks_per_stage, preact=preact,
            norm=norm, act=activation, noise_std=noise_std, dropout_p=dropout, drop_path=drop_path)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        layers.finish(self, norm=norm, init=init, init_gain=init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(self.input_dropout(x))).flatten(1))
