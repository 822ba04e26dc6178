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
