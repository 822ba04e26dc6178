"""Stochastic depth through the regularizer: whole residual branches dropped per sample at rates rising to p."""

from __future__ import annotations

import pytest
import torch
from helpers import compose
from torchvision.ops import StochasticDepth

from regbench import build
from regbench.errors import ConfigError

RESNET = ("dataset=digits", "model=resnet18", "model.width=4")


def built(*overrides):
    cfg = compose(*overrides)
    regs = build.build_regularizers(cfg.regularizer)
    torch.manual_seed(0)
    return build.build_model(cfg.model, tuple(cfg.dataset.input_shape), cfg.dataset.num_classes, regs)


def test_branches_dropped_per_sample_at_linearly_rising_rates():
    model = built(*RESNET, "regularizer=[drop_path]", "regularizer.drop_path.p=0.4")
    layers = [m for m in model.modules() if isinstance(m, StochasticDepth)]
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
                if isinstance(m, StochasticDepth)]


def test_models_without_residual_branches_refuse_it_at_build():
    with pytest.raises(ConfigError, match=r"^model\.drop_path=0\.1: mlp has no residual branches"):
        built("model=mlp", "regularizer=[drop_path]")
    with pytest.raises(ConfigError, match=r"^regularizer\.drop_path\.p=1\.0 is out of range"):
        built(*RESNET, "regularizer=[drop_path]", "regularizer.drop_path.p=1.0")


def test_the_layer_is_huang_et_al_per_sample_rule_under_the_same_draws():
    """torchvision's StochasticDepth(p, "row") draws one Bernoulli(1 − p) per sample, as the rule below:
    the same generator state gives the same dropped samples and the same rescaled survivors."""
    p, x = 0.3, torch.randn(512, 4, 3, 3)
    layer = [m for m in built(*RESNET, "regularizer=[drop_path]", f"regularizer.drop_path.p={p}").modules()
             if isinstance(m, StochasticDepth)][-1]
    assert layer.p == pytest.approx(p) and layer.mode == "row"
    torch.manual_seed(1)
    out = layer.train()(x)
    torch.manual_seed(1)
    keep = x.new_empty(len(x), 1, 1, 1).bernoulli_(1 - p)  # one draw per sample, nothing else
    expected = x * keep / (1 - p)
    assert torch.equal(out == 0, expected == 0)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=0)
    assert 0.2 < (keep == 0).float().mean().item() < 0.4  # p of the samples dropped, not none or all
    assert torch.equal(layer.eval()(x), x)
