"""Image augmentations for normalized batches [N, C, H, W], applied on the device.

Each class validates its settings, draws per-sample parameters and calls a pure function from
:mod:`regbench.regularizers.augment`. Every one has a no-op fast path (probability or magnitude
0) that returns its inputs untouched, so a sweep's zero point costs nothing and changes nothing.
Fills use 0, which on normalized inputs is the training mean.
"""

from __future__ import annotations

import math

import torch

from regbench.errors import ConfigError, check_choice, check_int, check_range
from regbench.models.layers import add_gaussian_noise
from regbench.regularizers import augment as A


class ImageAugmentation(A.Augmentation):
    ranks = (3,)
    layout = "(C, H, W)"


class RandomCrop(ImageAugmentation):
    """Random crop after padding (Krizhevsky et al. 2012; the "random cropping" of Zhang et al. 2017).

    Each image is padded by ``padding`` pixels per side and cropped back at its own uniformly
    drawn offset. ``padding_mode``: ``zeros`` (the mean) or ``reflect`` (as airbench).
    """

    def __init__(self, padding: int = 4, padding_mode: str = "zeros"):
        check_int("padding", padding, 0)
        check_choice("padding_mode", padding_mode, ("zeros", "reflect"))
        self.padding, self.padding_mode = padding, padding_mode

    def check(self, input_shape, num_classes):
        super().check(input_shape, num_classes)
        # Reflection can only mirror what is there.
        if self.padding_mode == "reflect" and self.padding >= min(input_shape[1:]):
            raise ConfigError(f"padding={self.padding} must be smaller than the image {tuple(input_shape[1:])} for reflect padding")

    def transform_batch(self, x, y):
        if self.padding == 0:
            return x, y
        return A.batch_crop(x, self.padding, self.padding_mode), y

    def describe(self):
        return f"{self.name}: random crop, {self.padding}px {self.padding_mode} padding"


class HorizontalFlip(ImageAugmentation):
    """Mirror each image left-right with probability ``p`` (Krizhevsky et al. 2012)."""

    def __init__(self, p: float = 0.5):
        check_range("p", p, 0, 1)
        self.p = p

    def transform_batch(self, x, y):
        if self.p == 0:
            return x, y
        return A.batch_flip_lr(x, self.p), y

    def describe(self):
        return f"{self.name}: horizontal flip with p={self.p}"


class RandomRotation(ImageAugmentation):
    """Rotate each image by its own angle drawn uniformly from [−degrees, degrees] (bilinear).

    A classic of the MNIST literature (e.g. Simard et al. 2003's affine distortions).
    """

    def __init__(self, degrees: float = 15.0):
        check_range("degrees", degrees, 0, 180)
        self.degrees = degrees

    def transform_batch(self, x, y):
        if self.degrees == 0:
            return x, y
        return A.batch_rotate(x, A.uniform(len(x), -self.degrees, self.degrees, x)), y

    def describe(self):
        return f"{self.name}: rotation by up to ±{self.degrees}°"


class ColorJitter(A.Augmentation):
    """Random brightness and contrast per sample (as torchvision's ColorJitter, on normalized inputs).

    Brightness adds a shift drawn from U(−brightness, brightness) (in std units); contrast scales
    each sample about its mean by a factor from U(1 − contrast, 1 + contrast). Neither depends on
    the channel count, so this also applies to grey images and signals.
    """

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2):
        check_range("brightness", brightness, 0)
        check_range("contrast", contrast, 0, 1)
        self.brightness, self.contrast = brightness, contrast

    def transform_batch(self, x, y):
        if self.brightness == 0 and self.contrast == 0:
            return x, y
        n = len(x)
        shift = A.uniform(n, -self.brightness, self.brightness, x)
        scale = A.uniform(n, 1 - self.contrast, 1 + self.contrast, x)
        return A.batch_brightness_contrast(x, shift, scale), y

    def describe(self):
        return f"{self.name}: brightness ±{self.brightness} std, contrast ×(1 ± {self.contrast})"


class GaussianNoise(A.Augmentation):
    """Add N(0, std²) noise to every input value (Bishop 1995: training with noise ≈ Tikhonov).

    Input noise; noise on hidden activations and weights is the model layer
    :class:`regbench.models.layers.TrainingNoise` (regularizers ``noise``, ``weight_noise``).
    """

    def __init__(self, std: float = 0.1):
        check_range("std", std, 0)
        self.std = std

    def transform_batch(self, x, y):
        if self.std == 0:
            return x, y
        return add_gaussian_noise(x, self.std), y

    def describe(self):
        return f"{self.name}: input noise with std {self.std}"


class RandomErasing(ImageAugmentation):
    """Erase one random box per image with probability ``p``.

    Random erasing (Zhong et al. 2020): the box covers a fraction of the image drawn from
    ``scale`` with a log-uniform aspect ratio (height/width) from ``ratio``, and is filled with
    noise (``fill: noise``) or the mean (``fill: zeros``). Cutout (DeVries & Taylor 2017) is the
    special case of a fixed square ``size`` in pixels, which then overrides ``scale`` and ``ratio``.
    Boxes always lie inside the image; one that would not fit is clipped to the image's sides
    (Zhong et al. redraw instead).
    """

    def __init__(self, p: float = 0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), size: int | None = None, fill: str = "zeros"):
        check_range("p", p, 0, 1)
        self.scale = A.check_interval("scale", scale, 0, 1)
        self.ratio = A.check_interval("ratio", ratio, 0, low_inclusive=False)
        if size is not None:
            check_int("size", size, 0)
        check_choice("fill", fill, ("zeros", "noise"))
        self.p, self.size, self.fill = p, size, fill

    def check(self, input_shape, num_classes):
        super().check(input_shape, num_classes)
        if self.size is not None and self.size > min(input_shape[1:]):
            raise ConfigError(f"size={self.size} exceeds the image {tuple(input_shape[1:])}")

    def transform_batch(self, x, y):
        if self.p == 0 or self.size == 0 or (self.size is None and self.scale[1] == 0):
            return x, y
        n, (h, w) = len(x), x.shape[2:]
        if self.size is not None:
            sizes = torch.full((n, 2), self.size, device=x.device)
        else:
            area = A.uniform(n, *self.scale, x) * (h * w)
            ratio = torch.exp(A.uniform(n, math.log(self.ratio[0]), math.log(self.ratio[1]), x))
            heights = torch.sqrt(area * ratio).round().clamp(1, h)
            widths = torch.sqrt(area / ratio).round().clamp(1, w)
            sizes = torch.stack([heights, widths], 1).long()
        apply = torch.rand(n, device=x.device) < self.p
        return A.batch_erase(x, sizes, apply, self.fill), y

    def describe(self):
        box = f"{self.size}px square" if self.size is not None else f"area {list(self.scale)}, aspect {list(self.ratio)}"
        return f"{self.name}: erase a {box} box ({self.fill}) with p={self.p}"


class RandAugment(ImageAugmentation):
    """RandAugment (Cubuk et al. 2020): ``num_ops`` random ops per image at one ``magnitude``.

    M is on the 0–10 scale of the paper's reference code; see
    :func:`regbench.regularizers.augment.batch_randaugment` for the ops and their ranges.
    """

    def __init__(self, num_ops: int = 2, magnitude: float = 9):
        check_int("num_ops", num_ops, 0)
        check_range("magnitude", magnitude, 0, 10)
        self.num_ops, self.magnitude = num_ops, magnitude

    def transform_batch(self, x, y):
        return A.batch_randaugment(x, self.num_ops, self.magnitude), y

    def describe(self):
        return f"{self.name}: RandAugment N={self.num_ops}, M={self.magnitude}"
