"""Label smoothing: every class gets ε/K, the true one 1 − ε + ε/K, and the loss is torch's smoothed cross-entropy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import compose
from torch import nn

from regbench import build
from regbench.errors import ConfigError

K = 10


def smoothing(*overrides):
    (reg,) = build.build_regularizers(compose("regularizer=[label_smoothing]", *overrides).regularizer)
    reg.check((1, 40), K)
    reg.setup(nn.Identity(), input_shape=(1, 40), num_classes=K)
    return reg


def test_every_class_gets_eps_over_k():
    reg = smoothing("regularizer.label_smoothing.eps=0.2")
    x, y = torch.randn(50, 1, 40), torch.arange(50) % K
    x_out, soft = reg.transform_batch(x, y)
    assert x_out is x
    assert soft.shape == (50, K) and soft.dtype == torch.float32
    true = soft[torch.arange(50), y]
    assert torch.allclose(true, torch.full((50,), 1 - 0.2 + 0.2 / K))
    others = soft.clone()
    others[torch.arange(50), y] = float("nan")
    assert torch.allclose(others[~others.isnan()], torch.tensor(0.2 / K))
    assert torch.allclose(soft.sum(1), torch.ones(50))


def test_loss_is_torchs_label_smoothed_cross_entropy():
    reg = smoothing("regularizer.label_smoothing.eps=0.1")
    logits, y = torch.randn(32, K), torch.randint(0, K, (32,))
    _, soft = reg.transform_batch(torch.zeros(32, 1, 40), y)
    assert F.cross_entropy(logits, soft).item() == pytest.approx(F.cross_entropy(logits, y, label_smoothing=0.1).item(), rel=1e-6)


def test_soft_rows_from_mixing_are_smoothed_and_still_sum_to_one():
    reg = smoothing()
    y = torch.softmax(torch.randn(8, K), 1)
    _, soft = reg.transform_batch(torch.zeros(8, 1, 40), y)
    assert torch.allclose(soft, 0.9 * y + 0.1 / K) and torch.allclose(soft.sum(1), torch.ones(8))


def test_eps_zero_leaves_class_indices_untouched():
    reg = smoothing("regularizer.label_smoothing.eps=0")
    y = torch.arange(5)
    assert reg.transform_batch(torch.zeros(5, 1, 40), y)[1] is y


@pytest.mark.parametrize("eps", [1.0, -0.1])
def test_eps_outside_zero_one_is_refused(eps):
    with pytest.raises(ConfigError, match=rf"^regularizer\.label_smoothing\.eps={eps} is out of range"):
        smoothing(f"regularizer.label_smoothing.eps={eps}")
