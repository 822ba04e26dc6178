"""CONTRIBUTING.md's recipe, followed for a toy regularizer that lives outside the repository:
one module on PYTHONPATH, one YAML in a config folder on Hydra's search path, nothing else touched."""

from __future__ import annotations

from helpers import read_metrics, read_result, run_cli

MODULE = '''
from regbench.errors import check_range
from regbench.regularizers.base import Regularizer


class WeightNormPenalty(Regularizer):
    def __init__(self, strength: float = 0.1):
        check_range("strength", strength, 0)
        self.strength = strength

    def penalty(self, model):
        return self.strength * sum(p.norm() for p in model.parameters())
'''

YAML = '''weight_norm_penalty:
  _target_: toy_regularizer.WeightNormPenalty
  strength: 0.5
'''


def test_a_new_regularizer_is_one_module_and_one_yaml(tmp_path):
    (tmp_path / "toy_regularizer.py").write_text(MODULE)
    (tmp_path / "conf" / "regularizer").mkdir(parents=True)
    (tmp_path / "conf" / "regularizer" / "weight_norm_penalty.yaml").write_text(YAML)
    env = {"PYTHONPATH": str(tmp_path)}
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
