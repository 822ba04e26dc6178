"""logger=[tensorboard,mlflow] on a stacked sweep: each member opens its trackers when it ends and logs its whole
history then, so every run has readable event files and an MLflow run in the sweep's store; re-running the
finished sweep trains nothing and adds no tracker run."""

from __future__ import annotations

import json

import pytest
from helpers import TINY, read_metrics, read_result
from tracker_readers import mlflow_history, mlflow_runs, tensorboard

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

ARGS = ("model=mlp", "seed=0,1", "regularizer=[dropout]", *TINY, "trainer.max_epochs=3", "logger=[tensorboard,mlflow]",
        "name=sweepstudy", "trainer.progress=false")


def test_a_stacked_sweep_leaves_event_files_and_an_mlflow_store(run_sweep):
    out, sweep_dir = run_sweep(*ARGS, env={"MLFLOW_TRACKING_URI": None})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "stack: 2 of 2 runs train in 1 stack(s) of 2" in out.stdout
    uri = f"sqlite:///{sweep_dir / 'mlflow.db'}"
    runs = {r.info.run_name: r for r in mlflow_runs(uri, "sweepstudy")}
    assert sorted(runs) == sorted(p.parent.name for p in sweep_dir.glob("*/result.json")) and len(runs) == 2
    for name, run in runs.items():
        result, rows = read_result(sweep_dir / name), read_metrics(sweep_dir / name)
        assert result["stacked"] == 2 and json.loads(result["logger_id"]) == {"mlflow": run.info.run_id, "tensorboard": "tensorboard"}
        assert run.info.status == "FINISHED" and run.data.tags["dropout"] == "true" and run.data.tags["study"] == "sweepstudy"
        assert run.data.params["seed"] == str(result["seed"])
        assert mlflow_history(uri, run.info.run_id, "val_acc") == [(r["epoch"], pytest.approx(r["val_acc"])) for r in rows]
        assert run.data.metrics["result/test_acc"] == pytest.approx(result["test_acc"])
        scalars, texts, _ = tensorboard(sweep_dir / name / "tensorboard")
        assert scalars["val_acc"] == [(r["epoch"], pytest.approx(r["val_acc"], rel=1e-6)) for r in rows]
        assert texts["study"] == ["sweepstudy"] and "dropout" in texts["tags"][0]

    out, _ = run_sweep(*ARGS, env={"MLFLOW_TRACKING_URI": None})
    assert out.returncode == 0 and "2 finished by an earlier run of the sweep, not retrained" in out.stdout
    assert len(mlflow_runs(uri, "sweepstudy")) == 2
