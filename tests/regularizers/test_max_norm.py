"""Max-norm: after every step each unit's incoming weight vector has norm ≤ c; units within the ball are untouched."""

from __future__ import annotations

import pytest
import torch
from helpers import compose, tiny

from regbench import build, checkpoint
from regbench.errors import ConfigError
from regbench.train import train


def unit_norms(w: torch.Tensor) -> torch.Tensor:
    """Norm of each unit's incoming weights: rows of a linear weight, filters of a conv kernel."""
    return w.flatten(1).norm(dim=1)


def setup(*overrides):
    cfg = compose("regularizer=[max_norm]", *overrides)
    regs = build.build_regularizers(cfg.regularizer)
    torch.manual_seed(0)
    model = build.build_model(cfg.model, (1, 40), 10, regs)
    for reg in regs:
        reg.setup(model, input_shape=(1, 40), num_classes=10)
    return model, regs[-1]


def test_projects_units_above_c_and_leaves_the_others():
    model, reg = setup("regularizer.max_norm.c=1.0")  # the default model, cnn1d: conv filters and a linear layer
    assert reg.covered == ["features.0.0.weight", "features.1.0.weight", "features.2.0.weight", "classifier.weight"]
    with torch.no_grad():
        for p in reg.params:
            p.mul_(torch.rand(len(p), *[1] * (p.ndim - 1)) * 4)  # some units far outside the ball, some inside
    before = [p.clone() for p in reg.params]
    reg.after_step(model)
    for old, new in zip(before, reg.params):
        inside = unit_norms(old) <= 1.0
        assert (~inside).any() and inside.any()
        assert (unit_norms(new) <= 1.0 + 1e-6).all()
        assert torch.equal(new[inside], old[inside])
        assert torch.allclose(unit_norms(new[~inside]), torch.ones(()), atol=1e-5)
        # Projection onto the ball rescales: the direction is kept.
        assert torch.allclose(new[~inside].flatten(1), old[~inside].flatten(1) / unit_norms(old[~inside])[:, None], atol=1e-5)


def test_every_unit_is_bounded_after_a_real_run(tmp_path):
    # A large SGD step pushes weights far; with the constraint every unit ends inside the ball.
    common = ("model=mlp", "optimizer=sgd", "optimizer.lr=2.0", "trainer.max_epochs=2")
    train(tiny(*common), tmp_path / "free")
    train(tiny(*common, "regularizer=[max_norm]", "regularizer.max_norm.c=0.5"), tmp_path / "constrained")
    norms = {}
    for run in ("free", "constrained"):
        weights = checkpoint.load(tmp_path / run / "checkpoints" / "last.pt")["model"]
        norms[run] = torch.cat([unit_norms(w) for w in weights.values() if w.ndim >= 2])
    assert norms["free"].max() > 0.6, "the unconstrained run must exceed c for the test to mean anything"
    assert norms["constrained"].max() <= 0.5 + 1e-6


def test_under_weight_norm_the_gain_is_clipped():
    model, reg = setup("model=mlp", "regularizer=[weightnorm,max_norm]", "regularizer.max_norm.c=0.5")
    assert all(name.endswith("original0") for name in reg.covered)  # g, not the direction v
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for m in linears:
            m.parametrizations.weight.original0.mul_(10)
        reg.after_step(model)
        assert all((unit_norms(m.weight) <= 0.5 + 1e-5).all() for m in linears)


def test_c_infinite_is_a_no_op_and_c_must_be_positive():
    model, reg = setup("regularizer.max_norm.c=inf")
    with torch.no_grad():
        reg.params[0].mul_(100)
    before = reg.params[0].clone()
    reg.after_step(model)
    assert torch.equal(reg.params[0], before)
    with pytest.raises(ConfigError, match=r"^regularizer\.max_norm\.c=0 is out of range \(0, inf\)"):
        setup("regularizer.max_norm.c=0")
