"""Noise injection: N(0, σ²) on hidden activations or on the weights in training, nothing at eval."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import compose
from torch import nn

from regbench import build
from regbench.errors import ConfigError
from regbench.models.layers import TrainingNoise


def built(*overrides, setup=True):
    cfg = compose(*overrides)
    regs = build.build_regularizers(cfg.regularizer)
    torch.manual_seed(0)
    model = build.build_model(cfg.model, tuple(cfg.dataset.input_shape), cfg.dataset.num_classes, regs)
    if setup:
        for reg in regs:
            reg.setup(model, input_shape=tuple(cfg.dataset.input_shape), num_classes=cfg.dataset.num_classes)
    return model, regs


# ------------------------------------------------------------------------------ activation noise

def test_hidden_activations_get_gaussian_noise_of_std_sigma():
    model, _ = built("model=mlp", "model.width=512", "regularizer=[noise]", "regularizer.noise.std=0.3")
    layers = [m for m in model.modules() if isinstance(m, TrainingNoise)]
    assert len(layers) == 2 and all(m.std == 0.3 for m in layers)
    seen = []
    for m in layers:
        m.register_forward_hook(lambda mod, inp, out: seen.append(out - inp[0]))
    with torch.no_grad():
        model.train()(torch.randn(256, 1, 40))
    for added in seen:
        assert added.mean().item() == pytest.approx(0, abs=0.01)
        assert added.std().item() == pytest.approx(0.3, rel=0.02)


def test_activation_noise_is_off_at_eval_and_absent_at_zero():
    model, _ = built("model=mlp", "regularizer=[noise]")
    plain, _ = built("model=mlp")
    plain.load_state_dict(model.state_dict())
    x = torch.randn(16, 1, 40)
    with torch.no_grad():
        assert not torch.equal(model.train()(x), plain(x))
        assert torch.equal(model.eval()(x), plain(x))
    model, _ = built("model=mlp", "regularizer=[noise]", "regularizer.noise.std=0")
    assert not [m for m in model.modules() if isinstance(m, TrainingNoise)]


def test_activation_noise_needs_hidden_units():
    with pytest.raises(ConfigError, match=r"^model\.noise_std=0\.1: logistic has no hidden activations"):
        built("model=logistic", "regularizer=[noise]")
    with pytest.raises(ConfigError, match=r"^regularizer\.noise\.std=-1"):
        built("regularizer=[noise]", "regularizer.noise.std=-1")


# ---------------------------------------------------------------------------------- weight noise

def kernels(model):
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d))]


def test_each_training_forward_sees_freshly_perturbed_weights():
    model, (reg,) = built("regularizer=[weight_noise]", "regularizer.weight_noise.std=0.05")  # cnn1d: convs + linear
    assert len(reg.covered) == 4 and all(nn.utils.parametrize.is_parametrized(m, "weight") for m in kernels(model))
    model.train()
    for m in kernels(model):
        clean = m.parametrizations.weight.original
        first, second = m.weight - clean, m.weight - clean  # each access is one forward's draw
        assert first.std().item() == pytest.approx(0.05, rel=0.1) and abs(first.mean().item()) < 0.01
        assert not torch.equal(first, second)
    model.eval()
    assert all(torch.equal(m.weight, m.parametrizations.weight.original) for m in kernels(model))


def test_evaluation_uses_the_clean_weights():
    model, _ = built("regularizer=[weight_noise]")
    plain, _ = built()
    plain.load_state_dict({k.replace("parametrizations.weight.original", "weight"): v for k, v in model.state_dict().items()})
    x = torch.randn(16, 1, 40)
    with torch.no_grad():
        assert not torch.equal(model.train()(x), plain(x))
        assert torch.equal(model.eval()(x), plain(x))


def test_step_updates_the_clean_weights_with_the_gradient_at_the_noisy_ones():
    model, (reg,) = built("model=mlp", "regularizer=[weight_noise]", "regularizer.weight_noise.std=0.1")
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    layer = model.hidden[0][0]
    clean = layer.parametrizations.weight.original
    assert any(p is clean for p in opt.param_groups[0]["params"])  # the optimizer holds the clean weights
    w0 = clean.detach().clone()
    x, y = torch.randn(32, 1, 40), torch.randint(0, 10, (32,))
    model.train()
    F.cross_entropy(model(x), y).backward()
    noisy_grad = clean.grad.clone()
    opt.step()
    # The stored weights moved by exactly −lr·grad: no noise left in them, nothing to undo.
    assert torch.equal(clean.detach(), w0 - 0.5 * noisy_grad)
    # And that gradient is not the clean one.
    opt.zero_grad()
    with torch.no_grad():
        clean.copy_(w0)
    reg_free, _ = built("model=mlp")
    reg_free.load_state_dict({k.replace("parametrizations.weight.original", "weight"): v for k, v in model.state_dict().items()})
    F.cross_entropy(reg_free(x), y).backward()
    assert not torch.allclose(reg_free.hidden[0][0].weight.grad, noisy_grad, atol=1e-4)


def test_weight_noise_zero_changes_nothing():
    model, (reg,) = built("regularizer=[weight_noise]", "regularizer.weight_noise.std=0")
    assert reg.covered == [] and not any(nn.utils.parametrize.is_parametrized(m) for m in model.modules())
