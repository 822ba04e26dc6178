"""Gradient clipping: the global gradient norm is bounded by max_norm, its direction kept."""

from __future__ import annotations

import pytest
import torch
from helpers import compose, tiny

from regbench import build, checkpoint
from regbench.errors import ConfigError
from regbench.train import train


def setup(*overrides):
    cfg = compose("model=mlp", "regularizer=[grad_clip]", *overrides)
    regs = build.build_regularizers(cfg.regularizer)
    torch.manual_seed(0)
    model = build.build_model(cfg.model, (1, 40), 10, regs)
    return model, regs[0]


def grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("scale", [1000.0, 1e-3])
def test_global_norm_is_bounded_and_direction_kept(scale):
    model, clip = setup("regularizer.grad_clip.max_norm=1.0")
    (model(torch.randn(32, 1, 40)).logsumexp(1).mean() * scale).backward()
    before = grads(model).clone()
    clip.after_backward(model)
    after = grads(model)
    if before.norm() > 1.0:
        assert after.norm().item() == pytest.approx(1.0, rel=1e-4)
        assert torch.allclose(after, before * (after.norm() / before.norm()), rtol=1e-4, atol=1e-9)
    else:
        assert torch.equal(after, before)  # below the bound: untouched


def test_infinite_max_norm_is_a_no_op():
    model, clip = setup("regularizer.grad_clip.max_norm=inf")
    (model(torch.randn(8, 1, 40)).sum() * 1e6).backward()
    before = grads(model).clone()
    clip.after_backward(model)
    assert torch.equal(grads(model), before)


def test_bound_holds_for_every_step_of_a_real_run(tmp_path):
    # With SGD at lr 1 and clipping at 0.01, no step can move the weights by more than 0.01.
    cfg = tiny("model=mlp", "optimizer=sgd", "optimizer.lr=1.0", "regularizer=[grad_clip]",
               "regularizer.grad_clip.max_norm=0.01", "trainer.max_epochs=1")
    result = train(cfg, tmp_path)
    assert result["status"] == "completed"
    trained = checkpoint.load(tmp_path / "checkpoints" / "last.pt")["model"]
    checkpoint.seed_everything(cfg.seed)  # the trainer's model init
    init = build.build_model(cfg.model, (1, 40), 10, []).state_dict()
    moved = torch.cat([(trained[k] - init[k]).flatten() for k in init]).norm().item()
    assert 0 < moved <= result["steps"] * 0.01 * (1 + 1e-4)


def test_max_norm_must_be_positive():
    with pytest.raises(ConfigError, match=r"^regularizer\.grad_clip\.max_norm=0 is out of range \(0, inf\)"):
        setup("regularizer.grad_clip.max_norm=0")
