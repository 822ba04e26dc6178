"""A run killed with SIGKILL mid-training and re-run with the same command ends bit for bit like an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, read_metrics, read_result, run_cli

# Dropout and mixup draw random numbers every step, so a resume that lost any RNG state would show.
ARGS = ["model=cnn1d", "regularizer=[dropout,mixup]", "regularizer.dropout.p=0.2", "trainer.max_epochs=12",
        "dataset.n_train=1500", "trainer.early_stopping.patience=3", "logger=wandb", "trainer.num_threads=1"]


def _start(run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "regbench", "run", *ARGS, f"hydra.run.dir={run_dir}"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())


def _wait_for_epochs(run_dir: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    path = run_dir / "metrics.jsonl"
    while time.time() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"run ended (code {proc.returncode}) before {n} epochs")
        time.sleep(0.01)
    pytest.fail("timed out waiting for epochs")


def test_sigkill_then_rerun_matches_an_uninterrupted_run(tmp_path):
    reference = tmp_path / "reference"
    out = run_cli("run", *ARGS, f"hydra.run.dir={reference}")
    assert out.returncode == 0, out.stderr
    expected = read_result(reference)
    assert expected["epochs_run"] >= 4, "the reference run must last long enough to be killed midway"

    killed = tmp_path / "killed"
    proc = _start(killed)
    _wait_for_epochs(killed, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "result.json").exists(), "killed too late: the run had already finished"
    epochs_before = len(read_metrics(killed))
    assert epochs_before < expected["epochs_run"]

    out = run_cli("run", *ARGS, f"hydra.run.dir={killed}")
    assert out.returncode == 0, out.stderr
    resumed = read_result(killed)
    assert "resuming" in (killed / "regbench.log").read_text()
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "best_epoch", "epochs_run", "steps"):
        assert resumed[key] == expected[key], key  # exact, not approximate
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(read_metrics(killed)) == strip(read_metrics(reference))

    # The W&B run continues under the id kept in the checkpoint: both offline folders carry it.
    runs = sorted((killed / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and len({p.name.rsplit("-", 1)[1] for p in runs}) == 1
    assert resumed["logger_id"] == runs[0].name.rsplit("-", 1)[1]
