"""Normalization regularizers: each builds its layer into the model, and the layer does what defines it.

BatchNorm normalizes with batch statistics in training and running statistics at eval; layer,
group and instance norm with the statistics of one example; weight norm makes ‖wᵢ‖ = gᵢ.
"""

from __future__ import annotations

import pytest
import torch
from helpers import compose
from torch import nn

from regbench import build
from regbench.errors import ConfigError

NORMS = {"batchnorm": "batch", "layernorm": "layer", "groupnorm": "group", "instancenorm": "instance",
         "weightnorm": "weight"}


def built(*overrides):
    cfg = compose(*overrides)
    regs = build.build_regularizers(cfg.regularizer)
    torch.manual_seed(0)
    return build.build_model(cfg.model, tuple(cfg.dataset.input_shape), cfg.dataset.num_classes, regs)


def first(model, kind):
    return next(m for m in model.modules() if isinstance(m, kind))


def inputs_of(module):
    seen = []
    module.register_forward_hook(lambda m, inp, out: seen.append((inp[0].detach(), out.detach())))
    return seen


@pytest.mark.parametrize("name", NORMS)
def test_each_sets_model_norm(name):
    (reg,) = build.build_regularizers(compose(f"regularizer=[{name}]").regularizer)
    assert reg.model_options() == {"norm": NORMS[name]}


def test_batchnorm_uses_batch_statistics_in_training_running_ones_at_eval():
    model = built("model=mlp", "regularizer=[batchnorm]")
    bn = first(model, nn.BatchNorm1d)
    seen = inputs_of(bn)
    x = torch.randn(64, 1, 40) * 2 + 1
    with torch.no_grad():
        model.train()(x)
        h, out = seen.pop()
        batch = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + bn.eps)
        assert torch.allclose(out, batch, atol=1e-5)  # γ = 1, β = 0 at init
        # Running statistics moved from (0, 1) towards the batch's by the momentum (0.1).
        assert torch.allclose(bn.running_mean, 0.1 * h.mean(0), atol=1e-6)
        assert torch.allclose(bn.running_var, 0.9 + 0.1 * h.var(0, unbiased=True), atol=1e-5)

        model.eval()(x)
        h, out = seen.pop()
        running = (h - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
        assert torch.allclose(out, running, atol=1e-5) and not torch.allclose(out, batch, atol=1e-3)

        # In training one example's output depends on the rest of its batch; at eval it does not.
        model.train()
        assert not torch.allclose(model(x)[:8], model(x[:8]), atol=1e-4)
        model.eval()
        assert torch.allclose(model(x)[:8], model(x[:8]), atol=1e-5)


@pytest.mark.parametrize("name,overrides,kind,axes", [
    ("layernorm", ["model=mlp"], nn.LayerNorm, (1,)),
    ("instancenorm", ["model=cnn1d"], nn.modules.instancenorm._InstanceNorm, (2,)),
])
def test_per_example_norms_standardize_each_example(name, overrides, kind, axes):
    model = built(*overrides, f"regularizer=[{name}]")
    seen = inputs_of(first(model, kind))
    x = torch.randn(16, 1, 40) * 3 + 2
    with torch.no_grad():
        full = model.train()(x)
        _, out = seen[0]
        assert torch.allclose(out.mean(axes), torch.zeros(()), atol=1e-5)
        assert torch.allclose(out.var(axes, unbiased=False), torch.ones(()), atol=1e-3)
        assert torch.allclose(model(x[:3]), full[:3], atol=1e-5)  # no dependence on the batch
        assert torch.allclose(model.eval()(x), full, atol=1e-6)  # nor on the mode


def test_groupnorm_standardizes_each_group_of_channels():
    model = built("model=cnn1d", "model.channels=64", "regularizer=[groupnorm]")
    gn = first(model, nn.GroupNorm)
    assert gn.num_groups == 32 and gn.num_channels == 64  # Wu & He's 32 groups
    seen = inputs_of(gn)
    with torch.no_grad():
        model.train()(torch.randn(8, 1, 40) * 3 + 2)
    out = seen[0][1].reshape(8, 32, -1)  # [N, groups, channels per group × positions]
    assert torch.allclose(out.mean(2), torch.zeros(()), atol=1e-5)
    assert torch.allclose(out.var(2, unbiased=False), torch.ones(()), atol=1e-3)


def test_instancenorm_needs_spatial_dimensions():
    with pytest.raises(ConfigError, match="^model.norm=instance: mlp has no spatial dimensions"):
        built("model=mlp", "regularizer=[instancenorm]")


def test_weightnorm_makes_each_units_norm_its_gain():
    model = built("model=mlp", "regularizer=[weightnorm]")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(nn.utils.parametrize.is_parametrized(m, "weight") for m in linears)
    x = torch.randn(8, 1, 40)
    with torch.no_grad():
        for m in linears:
            g = m.parametrizations.weight.original0
            g.mul_(torch.rand_like(g) + 0.5)  # away from the init, where g = ‖v‖
            assert torch.allclose(m.weight.norm(dim=1), g.squeeze(1).abs(), rtol=1e-5)
        before = model(x)
        for m in linears:
            m.parametrizations.weight.original1.mul_(3.0)  # the direction's scale does not change w
        assert torch.allclose(model(x), before, atol=1e-6)


def test_two_norms_at_once_are_refused():
    with pytest.raises(ConfigError, match="regularizers disagree on model.norm: 'batch' vs 'layer'"):
        built("model=mlp", "regularizer=[batchnorm,layernorm]")
