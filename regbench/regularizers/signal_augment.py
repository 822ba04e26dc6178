"""Augmentations for 1-D signals [N, C, L] such as MNIST-1D (Greydanus & Kobak 2024).

MNIST-1D's digits are built by padding, shifting, scaling and adding noise to ten templates
(the dataset's own generator); these regularizers apply the same kinds of transforms again to
training batches, so the network sees each example at other positions, lengths and noise.
Fills use 0, which on normalized inputs is the training mean.
"""

from __future__ import annotations

import torch

from regbench.errors import check_choice, check_int
from regbench.regularizers import augment as A
from regbench.regularizers.image_augment import GaussianNoise


class SignalShift(A.Augmentation):
    """Translate each signal by its own integer shift drawn uniformly from [−max_shift, max_shift].

    ``padding_mode``: ``zeros`` fills vacated positions with the mean; ``circular`` wraps around.
    """

    ranks = (2,)
    layout = "(C, L)"

    def __init__(self, max_shift: int = 4, padding_mode: str = "zeros"):
        check_int("max_shift", max_shift, 0)
        check_choice("padding_mode", padding_mode, ("zeros", "circular"))
        self.max_shift, self.padding_mode = max_shift, padding_mode

    def transform_batch(self, x, y):
        if self.max_shift == 0:
            return x, y
        shifts = torch.randint(-self.max_shift, self.max_shift + 1, (len(x),), device=x.device)
        return A.batch_shift(x, shifts, circular=self.padding_mode == "circular"), y

    def describe(self):
        return f"{self.name}: shift by up to ±{self.max_shift} ({self.padding_mode})"


class SignalScale(A.Augmentation):
    """Stretch or squash each signal about its centre by a factor drawn uniformly from ``scale``.

    Linear interpolation; a squashed signal is padded with the mean, a stretched one loses its ends.
    """

    ranks = (2,)
    layout = "(C, L)"

    def __init__(self, scale=(0.9, 1.1)):
        self.scale = A.check_interval("scale", scale, 0, low_inclusive=False)

    def transform_batch(self, x, y):
        if self.scale == (1.0, 1.0):
            return x, y
        return A.batch_stretch(x, A.uniform(len(x), *self.scale, x)), y

    def describe(self):
        return f"{self.name}: stretch by a factor in {list(self.scale)}"


class SignalNoise(GaussianNoise):
    """Additive Gaussian noise on 1-D signals: :class:`GaussianNoise` restricted to (C, L) inputs."""

    ranks = (2,)
    layout = "(C, L)"
