"""mixup and CutMix: inputs mixed with a partner, targets convex combinations summing to 1."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from regbench.errors import ConfigError
from regbench.regularizers.mixing import CutMix, Mixup

K = 64


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _ready(reg, input_shape, num_classes=K):
    reg.name = type(reg).__name__.lower()
    reg.check(input_shape, num_classes)
    reg.setup(nn.Identity(), input_shape=input_shape, num_classes=num_classes)
    return reg


def _partners(y_soft: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """With targets y = arange(n), read each sample's own weight λᵢ and its partner's class."""
    n = len(y_soft)
    own = y_soft[torch.arange(n), torch.arange(n)]
    rest = y_soft.clone()
    rest[torch.arange(n), torch.arange(n)] = 0
    return own, rest.argmax(1)


def _assert_convex(y_soft: torch.Tensor):
    assert y_soft.dtype.is_floating_point
    assert (y_soft >= 0).all() and (y_soft <= 1).all()
    assert torch.allclose(y_soft.sum(1), torch.ones(len(y_soft)))
    assert ((y_soft > 0).sum(1) <= 2).all(), "a mix of two targets"


def test_mixup_mixes_inputs_and_targets_with_one_lambda():
    x, y = torch.randn(32, 3, 4, 4), torch.arange(32)
    out, y_soft = _ready(Mixup(alpha=1.0), (3, 4, 4)).transform_batch(x, y)
    assert out.shape == x.shape and y_soft.shape == (32, K)
    _assert_convex(y_soft)
    own, partner = _partners(y_soft)
    moved = own < 1
    lam = own[moved][0]
    assert torch.allclose(own[moved], lam.expand(moved.sum())), "one λ for the batch"
    expected = lam * x + (1 - lam) * x[partner]
    assert torch.allclose(out[moved], expected[moved], atol=1e-6)


def test_mixup_mixes_already_soft_targets():
    y = torch.softmax(torch.randn(16, K), 1)  # e.g. after label smoothing
    _, y_soft = _ready(Mixup(alpha=1.0), (1, 40)).transform_batch(torch.randn(16, 1, 40), y)
    assert torch.allclose(y_soft.sum(1), torch.ones(16))


def _lambdas(reg, input_shape, draws=200):
    """Own-target weight λ of sample 0 over many batches (1 in the 1/64 where it pairs with itself)."""
    x, y = torch.randn(64, *input_shape), torch.arange(64)
    return torch.stack([reg.transform_batch(x, y)[1][0, 0] for _ in range(draws)])


@pytest.mark.parametrize("make,shape", [(lambda: Mixup(alpha=0.01), (3, 8, 8)),
                                        (lambda: CutMix(alpha=0.01), (3, 8, 8)),
                                        (lambda: CutMix(alpha=0.01), (1, 40))])
def test_small_alpha_keeps_lambda_near_zero_or_one(make, shape):
    lam = _lambdas(_ready(make(), shape), shape)
    near_edge = torch.minimum(lam, 1 - lam) < 0.05
    assert near_edge.float().mean() > 0.9


def test_alpha_one_spreads_lambda():
    lam = _lambdas(_ready(Mixup(alpha=1.0), (1, 40)), (1, 40))
    assert 0.4 < lam.mean() < 0.6 and ((lam > 0.2) & (lam < 0.8)).float().mean() > 0.4


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("shape", [(2, 16, 12), (1, 40)])
def test_cutmix_lambda_is_exactly_the_unpasted_fraction(per_sample, shape):
    """Samples are constant images of their own index, so each pixel tells whose it is."""
    n = 64
    x = torch.arange(n, dtype=torch.float32).view(n, *[1] * len(shape)).expand(n, *shape).contiguous()
    out, y_soft = _ready(CutMix(alpha=1.0, per_sample=per_sample), shape).transform_batch(x, torch.arange(n))
    _assert_convex(y_soft)
    own, partner = _partners(y_soft)
    size = out[0].numel()
    mine = (out == x).flatten(1).sum(1) / size
    pasted = (out == x[partner]).flatten(1).sum(1) / size
    moved = own < 1  # paired with another sample (a sample paired with itself is left as it is)
    assert torch.equal(own[moved], mine[moved]), "λ is the exact fraction of own pixels"
    assert torch.allclose(mine + pasted, torch.ones(n))
    # The pasted region is one box (a segment for signals) spanning every channel.
    region = (out != x)[moved]
    assert (region.all(1) == region.any(1)).all()
    region = region[:, 0]
    if len(shape) == 3:
        box = region.any(2).sum(1) * region.any(1).sum(1)
    else:
        idx = torch.arange(shape[-1])
        box = torch.where(region, idx, -1).max(1).values - torch.where(region, idx, shape[-1]).min(1).values + 1
        box = torch.where(region.any(1), box, 0)
    assert torch.equal(box, region.flatten(1).sum(1))
    if not per_sample:
        assert torch.equal(region, region[:1].expand_as(region)), "one box for the batch"
    else:
        assert len(torch.unique(region.flatten(1), dim=0)) > 5, "boxes are drawn per sample"


def test_cutmix_lambda_keeps_its_beta_law():
    """Boxes lie inside the image, so λ stays ~ Beta(1, 1) = U(0, 1) up to whole-pixel sides."""
    lam = _lambdas(_ready(CutMix(alpha=1.0, per_sample=True), (1, 32, 32)), (1, 32, 32), draws=400)
    assert 0.44 < lam.mean() < 0.56
    assert 0.2 < (lam < 0.25).float().mean() < 0.3


def test_mixing_is_off_at_alpha_zero():
    x, y = torch.randn(8, 1, 40), torch.arange(8)
    for reg in (Mixup(alpha=0), CutMix(alpha=0)):
        out, y_out = _ready(reg, (1, 40)).transform_batch(x, y)
        assert out is x and y_out is y


def test_class_indices_need_setup_first():
    with pytest.raises(RuntimeError, match="setup"):
        Mixup(alpha=1.0).transform_batch(torch.randn(4, 1, 40), torch.arange(4))


def test_cutmix_needs_a_signal_or_an_image():
    reg = CutMix()
    for shape in [(784,), (1, 3, 8, 8)]:
        with pytest.raises(ConfigError, match=r"\(C, L\) or \(C, H, W\)"):
            reg.check(shape, 10)
    Mixup().check((784,), 10)  # mixup mixes any input


@pytest.mark.parametrize("make", [lambda: Mixup(alpha=-0.1), lambda: CutMix(alpha=-1), lambda: Mixup(alpha="big")])
def test_constructors_reject_bad_alpha(make):
    with pytest.raises(ConfigError, match="^alpha"):
        make()
