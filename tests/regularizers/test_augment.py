"""Properties every input augmentation shares: shape, dtype and device kept, per-sample
randomness, an exact no-op path, the input-rank check and constructor validation."""

from __future__ import annotations

import pytest
import torch

from regbench.errors import ConfigError
from regbench.regularizers.base import Regularizer
from regbench.regularizers.image_augment import (
    ColorJitter, GaussianNoise, HorizontalFlip, RandAugment, RandomCrop, RandomErasing, RandomRotation,
)
from regbench.regularizers.signal_augment import SignalNoise, SignalScale, SignalShift

IMAGE, SIGNAL = (3, 12, 12), (1, 40)

# (regularizer switched on, the same switched off, the sample shape it is for)
CASES = {
    "random_crop": (lambda: RandomCrop(padding=2), lambda: RandomCrop(padding=0), IMAGE),
    "random_crop_reflect": (lambda: RandomCrop(padding=2, padding_mode="reflect"), lambda: RandomCrop(0, "reflect"), IMAGE),
    "hflip": (lambda: HorizontalFlip(p=0.5), lambda: HorizontalFlip(p=0.0), IMAGE),
    "rotation": (lambda: RandomRotation(degrees=30), lambda: RandomRotation(degrees=0), IMAGE),
    "color_jitter": (lambda: ColorJitter(0.3, 0.3), lambda: ColorJitter(0, 0), IMAGE),
    "color_jitter_signal": (lambda: ColorJitter(0.3, 0.3), lambda: ColorJitter(0, 0), SIGNAL),
    "gaussian_noise": (lambda: GaussianNoise(std=0.1), lambda: GaussianNoise(std=0), IMAGE),
    "random_erasing": (lambda: RandomErasing(p=1.0), lambda: RandomErasing(p=0.0), IMAGE),
    "cutout": (lambda: RandomErasing(p=1.0, size=4, fill="zeros"), lambda: RandomErasing(p=1.0, size=0), IMAGE),
    "randaugment": (lambda: RandAugment(num_ops=2, magnitude=9), lambda: RandAugment(num_ops=2, magnitude=0), IMAGE),
    "randaugment_no_ops": (lambda: RandAugment(num_ops=2, magnitude=9), lambda: RandAugment(num_ops=0, magnitude=9), IMAGE),
    "signal_shift": (lambda: SignalShift(max_shift=3), lambda: SignalShift(max_shift=0), SIGNAL),
    "signal_shift_circular": (lambda: SignalShift(3, "circular"), lambda: SignalShift(0, "circular"), SIGNAL),
    "signal_scale": (lambda: SignalScale(scale=(0.7, 1.3)), lambda: SignalScale(scale=(1, 1)), SIGNAL),
    "signal_noise": (lambda: SignalNoise(std=0.1), lambda: SignalNoise(std=0), SIGNAL),
}


def _batch(shape, n=16, dtype=torch.float32):
    return torch.randn(n, *shape, dtype=dtype), torch.randint(0, 10, (n,))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_keeps_shape_dtype_device_and_targets(case, dtype):
    make, _, shape = CASES[case]
    reg = make()
    assert isinstance(reg, Regularizer)
    reg.check(shape, 10)
    x, y = _batch(shape, dtype=dtype)
    before = x.clone()
    out, y_out = reg.transform_batch(x, y)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert y_out is y  # input transforms leave class indices alone
    assert torch.equal(x, before), "the input batch must not be modified in place"
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("case", CASES)
def test_identical_inputs_come_out_different(case):
    """Randomness is per sample: copies of one input in a batch get different transforms."""
    make, _, shape = CASES[case]
    torch.manual_seed(0)
    x = torch.randn(1, *shape).expand(64, *shape).contiguous()
    out, _ = make().transform_batch(x, torch.zeros(64, dtype=torch.long))
    distinct = torch.unique(out.flatten(1), dim=0)
    assert len(distinct) > 1


@pytest.mark.parametrize("case", CASES)
def test_off_returns_inputs_unchanged(case):
    _, make_off, shape = CASES[case]
    x, y = _batch(shape)
    out, y_out = make_off().transform_batch(x, y)
    assert out is x and y_out is y


@pytest.mark.parametrize("case", CASES)
def test_runs_under_a_seed_reproducibly(case):
    """All draws come from torch's global generator, which the trainer seeds and checkpoints."""
    make, _, shape = CASES[case]
    x, y = _batch(shape)
    torch.manual_seed(7)
    first, _ = make().transform_batch(x, y)
    torch.manual_seed(7)
    second, _ = make().transform_batch(x, y)
    assert torch.equal(first, second)


IMAGE_ONLY = [RandomCrop, HorizontalFlip, RandomRotation, RandomErasing, RandAugment]
SIGNAL_ONLY = [SignalShift, SignalScale, SignalNoise]


@pytest.mark.parametrize("cls", IMAGE_ONLY)
def test_image_augmentations_reject_other_ranks(cls):
    reg = cls()
    reg.name = "aug"
    for shape in [(1, 40), (784,), (1, 3, 8, 8)]:
        with pytest.raises(ConfigError, match=r"input_shape=.*\(C, H, W\)"):
            reg.check(shape, 10)
    reg.check((1, 28, 28), 10)


@pytest.mark.parametrize("cls", SIGNAL_ONLY)
def test_signal_augmentations_reject_other_ranks(cls):
    reg = cls()
    for shape in [(3, 32, 32), (40,)]:
        with pytest.raises(ConfigError, match=r"\(C, L\)"):
            reg.check(shape, 10)
    reg.check((1, 40), 10)


def test_colour_jitter_and_noise_take_any_channel_count():
    for shape in [(1, 40), (3, 32, 32), (7, 5, 5)]:
        ColorJitter().check(shape, 10)
        GaussianNoise().check(shape, 10)


def test_size_checks_against_the_image():
    with pytest.raises(ConfigError, match="size=16"):
        RandomErasing(size=16).check((3, 8, 8), 10)
    with pytest.raises(ConfigError, match="padding=8"):
        RandomCrop(padding=8, padding_mode="reflect").check((3, 8, 8), 10)
    RandomCrop(padding=8).check((3, 8, 8), 10)  # zero padding has no such limit


@pytest.mark.parametrize("make,key", [
    (lambda: RandomCrop(padding=-1), "padding"),
    (lambda: RandomCrop(padding=2.5), "padding"),
    (lambda: RandomCrop(padding_mode="wrap"), "padding_mode"),
    (lambda: HorizontalFlip(p=1.5), "p"),
    (lambda: HorizontalFlip(p=-0.1), "p"),
    (lambda: RandomRotation(degrees=-5), "degrees"),
    (lambda: RandomRotation(degrees=181), "degrees"),
    (lambda: ColorJitter(brightness=-0.1), "brightness"),
    (lambda: ColorJitter(contrast=1.5), "contrast"),
    (lambda: GaussianNoise(std=-1), "std"),
    (lambda: RandomErasing(p=2), "p"),
    (lambda: RandomErasing(scale=(0.5, 0.1)), "scale"),
    (lambda: RandomErasing(scale=(0.1, 1.5)), "scale"),
    (lambda: RandomErasing(scale=0.3), "scale"),
    (lambda: RandomErasing(ratio=(0, 2)), "ratio"),
    (lambda: RandomErasing(size=-3), "size"),
    (lambda: RandomErasing(fill="mean"), "fill"),
    (lambda: RandAugment(num_ops=-1), "num_ops"),
    (lambda: RandAugment(num_ops=1.5), "num_ops"),
    (lambda: RandAugment(magnitude=11), "magnitude"),
    (lambda: SignalShift(max_shift=-2), "max_shift"),
    (lambda: SignalShift(padding_mode="reflect"), "padding_mode"),
    (lambda: SignalScale(scale=(0, 1.2)), "scale"),
    (lambda: SignalScale(scale=(1.2, 0.8)), "scale"),
    (lambda: SignalNoise(std=-0.5), "std"),
])
def test_constructors_reject_out_of_range_values(make, key):
    # Bare argument names: the builder prefixes ``regularizer.<name>.``.
    with pytest.raises(ConfigError, match=rf"^{key}"):
        make()
