"""The defining property of each image augmentation, checked on real batches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from regbench.regularizers import augment as A
from regbench.regularizers.image_augment import (
    ColorJitter, GaussianNoise, HorizontalFlip, RandAugment, RandomCrop, RandomErasing, RandomRotation,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_hflip_flips_about_p_of_the_batch_and_nothing_else():
    n = 4000
    x = torch.randn(n, 2, 5, 6)  # random content: no image equals its own mirror
    out, _ = HorizontalFlip(p=0.5).transform_batch(x, None)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert (flipped ^ kept).all(), "every image is either mirrored or untouched"
    assert abs(flipped.float().mean().item() - 0.5) < 0.04  # 5 standard errors at n = 4000
    # Mirroring the mirrored ones again restores the batch.
    restored = torch.where(flipped[:, None, None, None], out.flip(-1), out)
    assert torch.equal(restored, x)


def test_hflip_at_p_one_flips_all_and_twice_is_identity():
    x = torch.randn(8, 3, 4, 4)
    flip = HorizontalFlip(p=1.0)
    once, _ = flip.transform_batch(x, None)
    assert torch.equal(once, x.flip(-1))
    twice, _ = flip.transform_batch(once, None)
    assert torch.equal(twice, x)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_random_crop_is_a_window_of_the_padded_image(padding_mode):
    pad, (h, w) = 2, (6, 7)
    x = torch.randn(64, 2, h, w)
    out, _ = RandomCrop(padding=pad, padding_mode=padding_mode).transform_batch(x, None)
    padded = F.pad(x, (pad,) * 4, mode="constant" if padding_mode == "zeros" else "reflect")
    offsets = set()
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if torch.equal(out[i], padded[i, :, dy:dy + h, dx:dx + w])]
        assert matches, f"sample {i} is not a crop of its padded original"
        offsets.add(matches[0])
    assert len(offsets) > 10, "offsets are drawn per sample"


def test_rotation_by_zero_degrees_is_identity():
    x = torch.randn(4, 3, 9, 7)
    assert torch.allclose(A.batch_rotate(x, torch.zeros(4)), x, atol=1e-6)


def test_rotation_by_ninety_degrees_turns_the_grid():
    x = torch.randn(2, 1, 6, 6)
    out = A.batch_rotate(x, torch.tensor([90.0, -90.0]))
    assert torch.allclose(out[0], torch.rot90(x[0], 1, (-2, -1)), atol=1e-5)
    assert torch.allclose(out[1], torch.rot90(x[1], -1, (-2, -1)), atol=1e-5)


def test_rotation_stays_rigid_on_non_square_images():
    """A 180° turn of a 4×8 image is a double flip, which a naive normalized-grid rotation is not."""
    x = torch.randn(1, 1, 4, 8)
    assert torch.allclose(A.batch_rotate(x, torch.tensor([180.0])), x.flip(-1, -2), atol=1e-5)


def test_rotation_keeps_the_centre_of_a_smooth_image():
    x = torch.ones(32, 1, 9, 9)
    out, _ = RandomRotation(degrees=45).transform_batch(x, None)
    assert torch.allclose(out[:, :, 4, 4], torch.ones(32, 1), atol=1e-5)
    # Any turn moves a corner's source point outside the frame, where the fill is 0 (the mean).
    assert (out[:, :, 0, 0] < 1 - 1e-3).float().mean() > 0.9, "corners leave the frame and are filled with the mean"


def test_colour_jitter_shifts_brightness_within_range():
    x = torch.randn(200, 3, 4, 4)
    out, _ = ColorJitter(brightness=0.5, contrast=0).transform_batch(x, None)
    shift = (out - x).flatten(1)
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-6), "one shift per sample"
    assert shift.abs().max() <= 0.5 and shift[:, 0].std() > 0.2


def test_colour_jitter_scales_contrast_about_the_sample_mean():
    x = torch.randn(200, 3, 4, 4)
    out, _ = ColorJitter(brightness=0, contrast=0.5).transform_batch(x, None)
    mean = x.mean((1, 2, 3), keepdim=True)
    assert torch.allclose(out.mean((1, 2, 3), keepdim=True), mean, atol=1e-5)
    factor = ((out - mean) / (x - mean)).flatten(1)
    assert torch.allclose(factor, factor[:, :1].expand_as(factor), atol=1e-3)
    assert factor.min() >= 0.5 - 1e-4 and factor.max() <= 1.5 + 1e-4


def test_gaussian_noise_has_the_stated_std():
    x = torch.randn(64, 3, 16, 16)
    out, _ = GaussianNoise(std=0.3).transform_batch(x, None)
    assert abs((out - x).std().item() - 0.3) < 0.01


def test_cutout_erases_exactly_a_square_of_the_stated_size():
    x = torch.ones(50, 3, 16, 16)
    out, _ = RandomErasing(p=1.0, size=5, fill="zeros").transform_batch(x, None)
    erased = out == 0
    assert (erased.all(1) == erased.any(1)).all(), "a box spans every channel"
    erased = erased[:, 0]
    assert (erased.flatten(1).sum(1) == 25).all()
    rows, cols = erased.any(2), erased.any(1)
    assert (rows.sum(1) == 5).all() and (cols.sum(1) == 5).all(), "the erased pixels form one 5×5 box"
    corners = {(r.nonzero()[0].item(), c.nonzero()[0].item()) for r, c in zip(rows, cols)}
    assert len(corners) > 10, "boxes are placed per sample"


def test_random_erasing_area_follows_scale_and_p():
    n, side = 2000, 32
    x = torch.ones(n, 1, side, side)
    out, _ = RandomErasing(p=0.5, scale=(0.05, 0.2), ratio=(0.5, 2.0), fill="zeros").transform_batch(x, None)
    erased = (out == 0)[:, 0]
    count = erased.flatten(1).sum(1)
    hit = count > 0
    assert abs(hit.float().mean().item() - 0.5) < 0.04
    box = erased.any(2).sum(1) * erased.any(1).sum(1)
    assert torch.equal(box, count), "each erased region is one rectangle"
    fraction = count[hit] / side**2
    # Sides are rounded to whole pixels, so the area can stray a little outside scale.
    assert fraction.min() >= 0.04 and fraction.max() <= 0.22
    assert fraction.max() - fraction.min() > 0.1, "areas are drawn per sample"


def test_random_erasing_noise_fill_is_random():
    x = torch.zeros(20, 3, 16, 16)
    out, _ = RandomErasing(p=1.0, size=6, fill="noise").transform_batch(x, None)
    erased = out != 0
    assert (erased.flatten(1).sum(1) == 3 * 36).all()
    assert 0.7 < out[erased].std() < 1.3


@pytest.mark.parametrize("magnitude", [1, 5, 10])
def test_randaugment_picks_ops_per_sample(magnitude):
    """Copies of one image come out transformed in many of the ways the op list allows, all finite.

    With one op at a fixed magnitude, a sample's outcome is set by its op and direction: at most
    two per op (one for identity, solarize and posterize).
    """
    x = torch.randn(1, 3, 8, 8).expand(400, -1, -1, -1)
    out, _ = RandAugment(num_ops=1, magnitude=magnitude).transform_batch(x, None)
    assert torch.isfinite(out).all()
    unchanged = (out == x).flatten(1).all(1)
    assert 0 < unchanged.float().mean() < 0.3, "identity is one op of ten"
    outcomes = len(torch.unique(out.flatten(1), dim=0))
    assert 12 <= outcomes <= 2 * len(A.RANDAUGMENT_OPS) - 3


def test_randaugment_strength_grows_with_magnitude():
    x = torch.randn(400, 3, 8, 8)
    change = []
    for m in (1, 5, 10):
        torch.manual_seed(1)
        out, _ = RandAugment(num_ops=2, magnitude=m).transform_batch(x, None)
        change.append((out - x).abs().mean().item())
    assert change[0] < change[1] < change[2]


def test_solarize_and_posterize_on_normalized_values():
    x = torch.linspace(-2, 2, 9).view(1, 1, 1, 9).expand(2, 1, 1, 9)
    sol = A.batch_solarize(x, torch.tensor([0.5, 3.0]))
    assert torch.equal(sol[0], torch.where(x[0] >= 0.5, -x[0], x[0]))
    assert torch.equal(sol[1], x[1]), "nothing is above a 3 std threshold here"
    post = A.batch_posterize(x, torch.tensor([1.0, 0.5]))
    assert torch.equal(post[0], torch.round(x[0]))
    assert set(post[1].flatten().tolist()) <= {v / 2 for v in range(-4, 5)}
