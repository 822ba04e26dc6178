"""CONTRIBUTING.md's recipe, followed for a toy regularizer that lives outside the repository:
one module on PYTHONPATH, one YAML in a config folder on Hydra's search path, nothing else touched."""

from __future__ import annotations

import os

import pytest
from helpers import read_metrics, read_result, run_cli

MODULE = '''
from regbench.errors import check_range
from regbench.regularizers.base import Regularizer, Stacked


def norm_penalty(tensors, strength):
    return strength * sum(t.flatten(1).norm(dim=1) for t in tensors)


class WeightNormPenalty(Regularizer):
    stacked = Stacked("penalty", norm_penalty, number="strength", identity=0.0)

    def __init__(self, strength: float = 0.1):
        check_range("strength", strength, 0)
        self.strength = strength

    def penalty(self, model):
        return norm_penalty([p[None] for p in model.parameters()], self.strength)[0]
'''

YAML = '''weight_norm_penalty:
  _target_: toy_regularizer.WeightNormPenalty
  strength: 0.5
'''


def test_a_new_regularizer_is_one_module_and_one_yaml(tmp_path):
    (tmp_path / "toy_regularizer.py").write_text(MODULE)
    (tmp_path / "conf" / "regularizer").mkdir(parents=True)
    (tmp_path / "conf" / "regularizer" / "weight_norm_penalty.yaml").write_text(YAML)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    common = ("run", "debug=tiny", "model=mlp", "trainer.max_epochs=2", f"hydra.searchpath=[file://{tmp_path}/conf]")

    baseline = run_cli(*common, f"hydra.run.dir={tmp_path}/baseline", cwd=tmp_path, env=env)
    toy = run_cli(*common, "regularizer=[weight_norm_penalty]", f"hydra.run.dir={tmp_path}/toy", cwd=tmp_path, env=env)
    assert baseline.returncode == 0 and toy.returncode == 0, toy.stderr[-2000:]
    assert read_result(tmp_path / "toy")["regularizers"] == ["weight_norm_penalty"]
    assert read_result(tmp_path / "baseline")["regularizers"] == []
    # Same seed, same data order: the penalty alone makes the weights, hence the losses, differ.
    assert read_metrics(tmp_path / "toy")[-1]["train_loss"] != read_metrics(tmp_path / "baseline")[-1]["train_loss"]

    # Its constructor's check is the CLI's: one line, exit 2, before anything is written.
    bad = run_cli(*common, "regularizer=[weight_norm_penalty]", "regularizer.weight_norm_penalty.strength=-1",
                  f"hydra.run.dir={tmp_path}/bad", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and not (tmp_path / "bad").exists()
    assert bad.stderr.strip() == "regbench: error: regularizer.weight_norm_penalty.strength=-1 is out of range [0, inf)"


def test_the_recipe_s_regularizer_trains_in_a_stack_as_it_trains_alone(run_sweep, tmp_path):
    """Its stacked form is all a stack needs: a sweep over seeds trains one stack, within float rounding of stack=1."""
    (tmp_path / "toy_regularizer.py").write_text(MODULE)
    (tmp_path / "conf" / "regularizer").mkdir(parents=True)
    (tmp_path / "conf" / "regularizer" / "weight_norm_penalty.yaml").write_text(YAML)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    common = ("debug=tiny", "model=mlp", "trainer.max_epochs=2", "seed=0,1", "regularizer=none,[weight_norm_penalty]",
              f"hydra.searchpath=[file://{tmp_path}/conf]")
    out, stacked = run_sweep(*common, sweep_dir=tmp_path / "stacked", env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    out, alone = run_sweep(*common, "stack=1", sweep_dir=tmp_path / "alone", env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    for run in stacked.glob("*weight_norm_penalty*/result.json"):
        mine, theirs = read_result(run.parent), read_result(alone / run.parent.name)
        assert mine["stacked"] == 4 and "stacked" not in theirs  # members with and without it share one stack
        for key in ("train_loss", "val_loss", "test_acc"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6), key
