"""Stochastic depth through the regularizer: whole residual branches dropped per sample at rates rising to p."""

from __future__ import annotations

import pytest
import torch
from helpers import compose

from regbench import build
from regbench.errors import ConfigError
from regbench.models.layers import DropPath

RESNET = ("dataset=digits", "model=resnet18", "model.width=4")


def built(*overrides):
    cfg = compose(*overrides)
    regs = build.build_regularizers(cfg.regularizer)
    torch.manual_seed(0)
    return build.build_model(cfg.model, tuple(cfg.dataset.input_shape), cfg.dataset.num_classes, regs)


def test_branches_dropped_per_sample_at_linearly_rising_rates():
    model = built(*RESNET, "regularizer=[drop_path]", "regularizer.drop_path.p=0.4")
    layers = [m for m in model.modules() if isinstance(m, DropPath)]
    assert [m.p for m in layers] == pytest.approx([0.4 * i / 8 for i in range(1, 9)])  # Huang et al.'s linear rule
    seen = []
    for m in layers:
        m.register_forward_hook(lambda mod, inp, out: seen.append((mod.p, inp[0], out)))
    with torch.no_grad():
        model.train()(torch.randn(2000, 1, 8, 8))
    for p, inp, out in seen:
        per_sample_dropped = (out == 0).flatten(1).all(1)
        assert per_sample_dropped.float().mean().item() == pytest.approx(p, abs=0.035)
        kept = ~per_sample_dropped
        assert torch.allclose(out[kept], inp[kept] / (1 - p))  # a branch is dropped whole or kept whole, rescaled


def test_identity_at_eval():
    model = built(*RESNET, "regularizer=[drop_path]", "regularizer.drop_path.p=0.5")
    plain = built(*RESNET)
    plain.load_state_dict(model.state_dict())
    x = torch.randn(32, 1, 8, 8)
    with torch.no_grad():
        assert not torch.equal(model.train()(x), plain(x))
        assert torch.equal(model.eval()(x), plain.eval()(x))


def test_p_zero_builds_no_drop_path_layer():
    assert not [m for m in built(*RESNET, "regularizer=[drop_path]", "regularizer.drop_path.p=0").modules()
                if isinstance(m, DropPath)]


def test_models_without_residual_branches_refuse_it_at_build():
    with pytest.raises(ConfigError, match=r"^model\.drop_path=0\.1: mlp has no residual branches"):
        built("model=mlp", "regularizer=[drop_path]")
    with pytest.raises(ConfigError, match=r"^regularizer\.drop_path\.p=1\.0 is out of range"):
        built(*RESNET, "regularizer=[drop_path]", "regularizer.drop_path.p=1.0")
