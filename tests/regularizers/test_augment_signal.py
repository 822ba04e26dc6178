"""The defining property of each 1-D signal augmentation (MNIST-1D shapes: C=1, L=40)."""

from __future__ import annotations

import pytest
import torch

from regbench.regularizers import augment as A
from regbench.regularizers.signal_augment import SignalNoise, SignalScale, SignalShift


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _shifted(signal: torch.Tensor, s: int, circular: bool) -> torch.Tensor:
    """Reference shift of one signal [C, L], written the obvious way."""
    if circular:
        return torch.roll(signal, s, -1)
    out = torch.zeros_like(signal)
    if s >= 0:
        out[:, s:] = signal[:, : signal.shape[-1] - s]
    else:
        out[:, :s] = signal[:, -s:]
    return out


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
def test_shift_is_a_translated_copy_within_max_shift(padding_mode):
    x = torch.randn(100, 2, 40)
    out, _ = SignalShift(max_shift=5, padding_mode=padding_mode).transform_batch(x, None)
    circular = padding_mode == "circular"
    shifts = []
    for i in range(len(x)):
        matches = [s for s in range(-5, 6) if torch.equal(out[i], _shifted(x[i], s, circular))]
        assert matches, f"signal {i} is not a shift of its original by at most 5"
        shifts.append(matches[0])
    assert set(shifts) == set(range(-5, 6)), "every shift in range is drawn"


def test_stretch_by_one_is_identity_and_scales_a_ramp_about_the_centre():
    length = 41
    ramp = torch.arange(length, dtype=torch.float32).view(1, 1, length).expand(3, 1, length)
    assert torch.allclose(A.batch_stretch(ramp, torch.ones(3)), ramp, atol=1e-5)
    factors = torch.tensor([0.8, 1.0, 1.25])
    out = A.batch_stretch(ramp, factors)
    centre = (length - 1) / 2
    inner = slice(12, 29)  # positions that read from inside the signal at every factor
    expected = centre + (ramp[:, 0, inner] - centre) / factors[:, None]
    assert torch.allclose(out[:, 0, inner], expected, atol=1e-4)


def test_scale_draws_factors_in_range_per_signal():
    length = 41
    ramp = torch.arange(length, dtype=torch.float32).view(1, 1, length).expand(200, 1, length)
    out, _ = SignalScale(scale=(0.8, 1.25)).transform_batch(ramp, None)
    slope = out[:, 0, 21] - out[:, 0, 19]  # = 2 / factor near the centre
    factor = 2 / slope
    assert factor.min() >= 0.8 - 1e-4 and factor.max() <= 1.25 + 1e-4
    assert factor.max() - factor.min() > 0.3


def test_squashed_signals_are_padded_with_the_mean():
    x = torch.ones(1, 1, 40)
    out = A.batch_stretch(x, torch.tensor([0.5]))
    assert (out[0, 0, :8] == 0).all() and (out[0, 0, 12:28] == 1).all()


def test_signal_noise_has_the_stated_std():
    x = torch.randn(256, 1, 40)
    out, _ = SignalNoise(std=0.2).transform_batch(x, None)
    assert abs((out - x).std().item() - 0.2) < 0.01
