"""The small AlexNet of Zhang et al. (2017, "Understanding deep learning requires rethinking
generalization", appendix A), itself the CIFAR-10 model of the TensorFlow tutorial.

Two [conv 5×5 → max-pool 3×3 → local response norm] modules, then fully connected layers of
384 and 192 units and the classifier. Zhang et al. center-crop CIFAR to 28×28, which leaves
7×7 maps after the two stride-2 pools; larger inputs are max-pooled to 7×7 before the head, so
the model has the paper's size on any image of 28×28 or more: 1,387,786 parameters for
3×32×32 inputs and 10 classes, exactly the count in Zhang et al.'s Table 1. Smaller images
(8×8 digits) keep their 2×2 maps and a smaller first FC layer.
"""

from __future__ import annotations

import torch
from torch import nn

from regbench.errors import ConfigError, check_int
from regbench.models import layers
from regbench.models.common import check_options, conv_bias, conv_out, conv_unit, fc_norm

# The paper's feature-map side after two pools (28×28 crops); larger maps are pooled down to it.
PAPER_MAP = 7


def local_response_norm() -> nn.LocalResponseNorm:
    """The TF tutorial's ``tf.nn.lrn(depth_radius=4, bias=1, alpha=0.001/9, beta=0.75)`` (Krizhevsky et al. 2012).

    TF sums over 2·4+1 = 9 channels with alpha per term; PyTorch divides alpha by the window
    size, so the same normalization is alpha = 0.001.
    """
    return nn.LocalResponseNorm(size=9, alpha=0.001, beta=0.75, k=1.0)


class AlexNetSmall(nn.Module):
    """Input dropout → 2 × [Conv5×5 → norm → act → noise → dropout → MaxPool3×3/2 → LRN]
    → FC 384 → FC 192 → Linear.

    ``norm`` adds a norm layer after each conv and FC layer (instance norm: convs only); ``lrn``
    keeps the paper's local response normalization, part of the architecture rather than a
    regularizer, so it is on by default.
    """

    rows_independent = True  # forward treats each example alone: stacked training folds members into the batch

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, *, channels: int = 64, lrn: bool = True,
                 activation: str = "relu", norm: str = "none", dropout: float = 0.0, input_dropout: float = 0.0,
                 noise_std: float = 0.0, drop_path: float = 0.0, init: str = "default", init_gain: float | None = None):
        super().__init__()
        c_in, height, width = check_options("alexnet_small", in_shape, num_classes, activation=activation, norm=norm,
                                          dropout=dropout, input_dropout=input_dropout, noise_std=noise_std,
                                          drop_path=drop_path, init=init, init_gain=init_gain, input_rank=2)
        check_int("channels", channels, 1)
        if not isinstance(lrn, bool):
            raise ConfigError(f"lrn={lrn!r} must be true or false")
        blocks = []
        for _ in range(2):
            conv = nn.Conv2d(c_in, channels, 5, padding=2, bias=conv_bias(norm))
            blocks += [conv_unit(conv, norm=norm, act=activation, noise_std=noise_std, dropout_p=dropout),
                       nn.MaxPool2d(3, stride=2, padding=1),
                       local_response_norm() if lrn else nn.Identity()]
            c_in, height, width = channels, conv_out(height, 3, 2, 1), conv_out(width, 3, 2, 1)
        map_size = (min(height, PAPER_MAP), min(width, PAPER_MAP))
        self.input_dropout = layers.dropout(input_dropout)
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveMaxPool2d(map_size)
        fc = dict(norm=fc_norm(norm), act=activation, dropout_p=dropout, noise_std=noise_std)
        self.hidden = nn.Sequential(layers.hidden_block(channels * map_size[0] * map_size[1], 384, **fc),
                                    layers.hidden_block(384, 192, **fc))
        self.classifier = nn.Linear(192, num_classes)
        layers.finish(self, norm=norm, init=init, init_gain=init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden(self.pool(self.features(self.input_dropout(x))).flatten(1)))
