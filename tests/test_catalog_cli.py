"""Every regularizer in conf/regularizer/ trains through the real CLI, as `regbench run regularizer=[X]`.

The list is the glob of the config folder, so a new regularizer is covered the moment its yaml
exists. Each one runs on the first setting it fits (its own checks and the model's decide:
1-D signals with the default cnn1d, else digits with a tiny ResNet-18, which also has the
residual branches drop_path needs). One `-m` sweep per setting pays the interpreter start-up once; each
job still trains alone, in its own directory, with its own result.json.
"""

from __future__ import annotations

import pytest

import json
from pathlib import Path

import yaml
from helpers import compose, run_cli
from omegaconf import OmegaConf

from regbench import build
from regbench.config import CONFIG_DIR
from regbench.errors import ConfigError

REGULARIZERS = sorted(p.stem for p in (CONFIG_DIR / "regularizer").glob("*.yaml"))
SETTINGS = {
    "mnist1d": [],  # the default model, cnn1d
    "digits": ["dataset=digits", "model=resnet18", "model.width=4"],  # residual, so drop_path fits too
}
TINY = ["debug=tiny", "trainer.batch_size=50"]


def assign_settings() -> dict[str, list[str]]:
    """Each regularizer with the first setting that `regbench run` would accept for it."""
    bases = {setting: compose(*overrides) for setting, overrides in SETTINGS.items()}
    by_setting: dict[str, list[str]] = {}
    for name in REGULARIZERS:
        for setting, cfg in bases.items():
            cfg.regularizer = OmegaConf.load(CONFIG_DIR / "regularizer" / f"{name}.yaml") or {}  # as regularizer=[name]
            try:
                build.check(cfg)
            except ConfigError:
                continue
            by_setting.setdefault(setting, []).append(name)
            break
        else:
            raise AssertionError(f"regularizer={name} fits none of the test settings {list(SETTINGS)}")
    return by_setting


def sweep(tmp_path: Path, label: str, *overrides: str) -> dict[str, dict]:
    """Run `regbench run -m ...`; return each job's result.json keyed by its task overrides."""
    sweep_dir = tmp_path / label
    out = run_cli("run", "-m", *overrides, *TINY, f"hydra.sweep.dir={sweep_dir}")
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = {}
    for result in sweep_dir.glob("*/result.json"):
        task = yaml.safe_load((result.parent / ".hydra" / "overrides.yaml").read_text())
        jobs[" ".join(o for o in task if o.split("=")[0] not in [t.split("=")[0] for t in TINY])] = json.loads(result.read_text())
    return jobs


@pytest.mark.slow  # about 12-25 s through the CLI: make test-slow (CI runs it)
def test_every_regularizer_trains_through_the_cli(tmp_path):
    by_setting = assign_settings()
    assert "drop_path" in by_setting["digits"] and "instancenorm" in by_setting["mnist1d"]
    assert "random_crop" in by_setting["digits"] and "ema" in by_setting["mnist1d"]
    for setting, names in by_setting.items():
        jobs = sweep(tmp_path, setting, f"regularizer={','.join(names)}", *SETTINGS[setting])
        for name in names:
            (result,) = [r for task, r in jobs.items() if f"regularizer={name}" in task.split()]
            assert result["status"] == "completed", (name, result.get("error"))
            expected = list(yaml.safe_load((CONFIG_DIR / "regularizer" / f"{name}.yaml").read_text()) or {})
            assert result["regularizers"] == expected, name
            assert result["epochs_run"] == 1 and result["steps"] == 2 and 0 <= result["test_acc"] <= 1
        assert len(jobs) == len(names)


def test_init_and_activation_options_run_from_the_cli(tmp_path):
    jobs = sweep(tmp_path, "init", "model=mlp", "model.init=normal", "model.init_gain=1,2,3", "model.activation=tanh,gelu")
    assert len(jobs) == 6
    for task, result in jobs.items():
        assert result["status"] == "completed", (task, result.get("error"))
    for config in (tmp_path / "init").glob("*/config.yaml"):
        model = yaml.safe_load(config.read_text())["model"]
        assert model["init"] == "normal" and model["init_gain"] in (1, 2, 3) and model["activation"] in ("tanh", "gelu")
    assert len({r["train_loss"] for r in jobs.values()}) == 6, "each setting trains a different network"
