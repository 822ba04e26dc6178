"""W&B: a report run only for online studies (checked against a stand-in wandb module, no network)."""

from __future__ import annotations

import shutil
import sys
import types

import yaml

from regbench.report import write_report
from regbench.report.wandb_report import online_target


def _configs(mode: str, name: str = "wandb") -> dict:
    return {"run": {"name": "study", "logger": {"name": name, "mode": mode, "project": "p", "entity": None}}}


def test_only_online_wandb_runs_are_uploaded(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert online_target(_configs("offline")) is None
    assert online_target(_configs("online", name="none")) is None
    assert online_target(_configs("online")) == {"project": "p", "entity": None, "group": "study"}
    monkeypatch.setenv("WANDB_MODE", "offline")  # the environment wins, as for the runs themselves
    assert online_target(_configs("online")) is None
    monkeypatch.setenv("WANDB_MODE", "online")
    assert online_target(_configs("offline"))["group"] == "study"


def test_the_multi_select_logger_shape_is_read(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    wandb = {"_target_": "regbench.loggers.wandb.WandbLogger", "mode": "online", "project": "p", "entity": "e"}
    both = {"run": {"name": "study", "logger": {"tags": [], "wandb": wandb, "tensorboard": {"subdir": "tensorboard"}}}}
    assert online_target(both) == {"project": "p", "entity": "e", "group": "study"}
    assert online_target({"run": {"name": "study", "logger": {"tags": [], "mlflow": {"tracking_uri": None}}}}) is None


class FakeRun:
    def __init__(self, calls):
        self.calls, self.url = calls, "https://wandb.example/p/runs/report1"

    def log(self, data):
        self.calls["log"].update(data)

    def finish(self):
        self.calls["finished"] = True


def test_online_study_gets_a_report_run_in_its_group(reports, tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    shutil.copytree(reports["adam_l2_vs_adamw"], sweep)
    for path in sweep.glob("**/config.yaml"):
        if path.parent.name != ".hydra":
            cfg = yaml.safe_load(path.read_text())
            cfg["logger"] = {"name": "wandb", "mode": "online", "project": "regbench-test", "entity": None}
            path.write_text(yaml.safe_dump(cfg))
    calls = {"log": {}}
    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: (calls.setdefault("init", kw), FakeRun(calls))[1]
    fake.Table = lambda dataframe: ("Table", dataframe)
    fake.Image = lambda path, caption=None: ("Image", path)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)

    write_report(sweep, formats=("md",))

    init = calls["init"]
    assert init["job_type"] == "report" and init["group"] == "default" and init["project"] == "regbench-test"
    tables = {k: v for k, v in calls["log"].items() if k.startswith("tables/")}
    images = {k: v for k, v in calls["log"].items() if k.startswith("figures/")}
    assert set(tables) == {"tables/ablation", "tables/effects"} and all(v[0] == "Table" for v in tables.values())
    assert tables["tables/ablation"][1]["n"].tolist() == [1] * 8
    assert len(images) == len(list((sweep / "figures").glob("*.png"))) and all(v[0] == "Image" for v in images.values())
    assert calls["finished"]
    assert "uploaded to the report run https://wandb.example/p/runs/report1" in (sweep / "report.md").read_text()
