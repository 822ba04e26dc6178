"""Dropout through the regularizer path: ≈ p of hidden units zeroed, survivors ×1/(1−p), identity at eval."""

from __future__ import annotations

import pytest
import torch
from helpers import compose
from torch import nn

from regbench import build
from regbench.errors import ConfigError


def built(*overrides):
    """The model and regularizers `regbench run` would build for these overrides."""
    cfg = compose(*overrides)
    regs = build.build_regularizers(cfg.regularizer)
    torch.manual_seed(0)
    return build.build_model(cfg.model, tuple(cfg.dataset.input_shape), cfg.dataset.num_classes, regs), regs


def record(model, kind):
    """(input, output) of every module of ``kind`` in the next forward."""
    seen = []
    for m in model.modules():
        if isinstance(m, kind):
            m.register_forward_hook(lambda mod, inp, out: seen.append((inp[0].detach(), out.detach())))
    return seen


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_hidden_units_dropped_at_rate_p_survivors_scaled(p):
    model, regs = built("model=mlp", "model.width=512", "regularizer=[dropout]", f"regularizer.dropout.p={p}")
    assert [r.name for r in regs] == ["dropout"]
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 2 and all(m.p == p for m in drops)  # one per hidden layer, none on the input
    seen = record(model, nn.Dropout)
    model.train()(torch.randn(256, 1, 40))
    for inp, out in seen:
        alive = inp != 0  # ReLU already zeroed some; count only units dropout could drop
        dropped = (out == 0) & alive
        assert dropped.sum() / alive.sum() == pytest.approx(p, abs=0.01)
        survivors = alive & ~dropped
        assert torch.allclose(out[survivors], inp[survivors] / (1 - p))


def test_input_dropout_drops_inputs():
    model, _ = built("model=mlp", "regularizer=[dropout]", "regularizer.dropout.input_p=0.2")
    seen = record(model.input_dropout, nn.Dropout)
    x = torch.randn(512, 1, 40)
    model.train()(x)
    ((inp, out),) = seen
    assert (out == 0).float().mean().item() == pytest.approx(0.2, abs=0.01)


def test_identity_at_eval():
    model, _ = built("model=mlp", "regularizer=[dropout]")
    plain, _ = built("model=mlp")
    plain.load_state_dict(model.state_dict())  # dropout has no parameters: the same network without it
    x = torch.randn(64, 1, 40)
    with torch.no_grad():
        assert not torch.equal(model.train()(x), plain(x))
        model.eval()
        assert torch.equal(model(x), plain(x)) and torch.equal(model(x), model(x))


def test_p_zero_builds_no_dropout_layer():
    model, _ = built("model=mlp", "regularizer=[dropout]", "regularizer.dropout.p=0")
    assert not [m for m in model.modules() if isinstance(m, nn.Dropout)]


def test_bad_rate_names_the_key():
    cfg = compose("regularizer=[dropout]", "regularizer.dropout.p=1.0")
    with pytest.raises(ConfigError, match=r"^regularizer\.dropout\.p=1\.0 is out of range \[0, 1\)"):
        build.build_regularizers(cfg.regularizer)
