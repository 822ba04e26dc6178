"""A sweep killed after some jobs and re-run trains only the missing ones: one row per configuration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd

# stack=1: jobs one after another, so the kill can fall between them (a killed stack: tests/stack/)
ARGS = ("model=mlp", "seed=0,1,2,3", "trainer.max_epochs=25", "dataset.n_train=1000", "logger=none",
        "trainer.progress=false", "trainer.num_threads=1", "trainer.early_stopping.patience=null", "stack=1")


def kill_after_two_jobs(tmp_path, sweep_dir) -> None:
    """Start the sweep, and SIGKILL it once two jobs have finished and a third has a checkpoint."""
    proc = subprocess.Popen([sys.executable, "-m", "regbench", "run", "-m", *ARGS, f"hydra.sweep.dir={sweep_dir}"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = list(sweep_dir.glob("*/result.json"))
            started = [p for p in sweep_dir.glob("*/checkpoints/last.pt") if not (p.parent.parent / "result.json").exists()]
            if len(done) >= 2 and started:
                break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(list(sweep_dir.glob("*/result.json"))) < 4, "the sweep finished before it could be killed"


def test_a_killed_sweep_resumes_and_trains_only_what_is_missing(run_sweep, tmp_path):
    sweep_dir = tmp_path / "sweep"
    kill_after_two_jobs(tmp_path, sweep_dir)
    finished = {p.parent.name: p.read_bytes() for p in sweep_dir.glob("*/result.json")}
    interrupted = [p.parent.parent.name for p in sweep_dir.glob("*/checkpoints/last.pt") if p.parent.parent.name not in finished]
    assert len(finished) >= 2 and interrupted

    out, _ = run_sweep(*ARGS)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    runs = pd.read_csv(sweep_dir / "results.csv")
    assert len(runs) == 4 and (runs["status"] == "completed").all()
    assert sorted(runs["seed"]) == [0, 1, 2, 3] and runs["run_id"].is_unique  # exactly one row per configuration
    for d, before in finished.items():  # finished runs were not trained again
        assert (sweep_dir / d / "result.json").read_bytes() == before
    for d in interrupted:  # interrupted runs continued from their checkpoint
        assert "resuming" in (sweep_dir / d / "regbench.log").read_text()
    for d in runs["run_dir"]:  # and every epoch is in the history exactly once
        epochs = [json.loads(line)["epoch"] for line in (sweep_dir / d / "metrics.jsonl").read_text().splitlines()]
        assert epochs == list(range(1, 26))
    assert f"{len(finished)} finished by an earlier run of the sweep" in out.stdout
