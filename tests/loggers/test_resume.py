"""A run killed with SIGKILL mid-training and re-run with the same command continues the same TensorBoard folder
and the same MLflow run, which then hold every epoch, as metrics.jsonl does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import REPO, read_metrics, read_result, run_cli
from tracker_readers import last_per_step, mlflow_history, mlflow_runs, tensorboard

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

# The default checkpoint cadence (after epoch 1, then every 10 s): a kill after epoch 3 resumes from epoch 1, so
# epochs 2-3 are trained and logged again, which the trackers must not show twice (TensorBoard) or out of date.
ARGS = ["model=cnn1d", "regularizer=[dropout]", "trainer.max_epochs=10", "dataset.n_train=1500", "trainer.early_stopping.patience=null",
        "logger=[tensorboard,mlflow]", "trainer.num_threads=1", "name=study", "trainer.progress=false"]
KEYS = ("val_loss", "val_acc", "step", "lr")


def test_a_killed_run_resumes_the_same_tracker_runs_with_every_epoch(tmp_path):
    run_dir, uri = tmp_path / "runs" / "killed", f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([sys.executable, "-m", "regbench", "run", *ARGS, f"hydra.run.dir={run_dir}"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline, metrics = time.time() + 180, run_dir / "metrics.jsonl"
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "result.json").exists(), "killed too late: the run had already finished"
    (before,) = mlflow_runs(uri, "study")
    assert before.info.status == "RUNNING"  # a killed process finishes nothing

    out = run_cli("run", *ARGS, f"hydra.run.dir={run_dir}", env={"MLFLOW_TRACKING_URI": None})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming" in (run_dir / "regbench.log").read_text()
    result, rows = read_result(run_dir), read_metrics(run_dir)
    epochs = [r["epoch"] for r in rows]
    assert epochs == list(range(1, 11)) and result["epochs_run"] == 10

    (after,) = mlflow_runs(uri, "study")  # the same MLflow run, not a second one
    assert after.info.run_id == before.info.run_id == json.loads(result["logger_id"])["mlflow"]
    assert after.info.status == "FINISHED"
    for key in KEYS:
        values = last_per_step(mlflow_history(uri, after.info.run_id, key))
        assert values == {r["epoch"]: pytest.approx(r[key]) for r in rows}, key
    assert after.data.metrics["result/test_acc"] == pytest.approx(result["test_acc"])

    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 2  # one folder, a file per session
    scalars, texts, _ = tensorboard(run_dir / "tensorboard")
    for key in KEYS:  # every epoch once, the resumed session's values
        assert scalars[key] == [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in rows], key
    assert len(texts["config"]) == 1 and scalars["result/test_acc"] == [(10, pytest.approx(result["test_acc"]))]


SWEEP = ["model=cnn1d", "seed=0,1", "stack=1", "trainer.max_epochs=6", "dataset.n_train=1500", "trainer.early_stopping.patience=null",
         "logger=[tensorboard,mlflow]", "trainer.num_threads=1", "name=study", "trainer.progress=false"]


@pytest.mark.slow  # about 35 s on 2 cores: make test-slow (the solo kill above runs in make test)
def test_a_killed_sweep_resumes_the_same_tracker_runs(tmp_path):
    """A sweep killed in its first job, re-run with the same command: one MLflow run and one TensorBoard folder per
    job, each with every epoch once."""
    sweep_dir, uri = tmp_path / "sweep", f"sqlite:///{tmp_path / 'sweep' / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([sys.executable, "-m", "regbench", "run", "-m", *SWEEP, f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 180
    while not any(len(p.read_text().splitlines()) >= 3 for p in sweep_dir.glob("*/metrics.jsonl")):
        assert proc.poll() is None and time.time() < deadline, "the sweep ended before it could be killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list(sweep_dir.glob("*/result.json")), "killed too late: a job had already finished"
    (killed,) = mlflow_runs(uri, "study")

    out = run_cli("run", "-m", *SWEEP, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": None})
    assert out.returncode == 0, out.stderr[-2000:]
    runs = {r.info.run_name: r for r in mlflow_runs(uri, "study")}
    assert len(runs) == 2 and runs[killed.info.run_name].info.run_id == killed.info.run_id  # continued, not a new run
    for name, run in runs.items():
        result, rows = read_result(sweep_dir / name), read_metrics(sweep_dir / name)
        assert [r["epoch"] for r in rows] == list(range(1, 7)) and run.info.status == "FINISHED"
        assert json.loads(result["logger_id"])["mlflow"] == run.info.run_id
        assert last_per_step(mlflow_history(uri, run.info.run_id, "val_loss")) == {r["epoch"]: pytest.approx(r["val_loss"]) for r in rows}
        scalars, _, _ = tensorboard(sweep_dir / name / "tensorboard")
        assert scalars["val_loss"] == [(r["epoch"], pytest.approx(r["val_loss"], rel=1e-6)) for r in rows], name
