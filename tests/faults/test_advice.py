"""Following regbench's own advice never loses a result (issue #34, row 1): each message that recommends an
override or a move is followed here, through the real CLI, and every completed result is checked unchanged."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TINY, read_metrics, read_result, run_cli
from helpers import one_line_error as one_line

# A stacked sweep of 3 MLPs that checkpoints every epoch (the kill can fall anywhere), long enough to be killed.
STACKED = ["model=mlp", "seed=0,1,2", "trainer.max_epochs=30", "dataset.n_train=400", "logger=none",
           "trainer.progress=false", "trainer.num_threads=1", "trainer.checkpoint_every_s=0",
           "trainer.early_stopping.patience=null"]
NUMBERS = ["train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "best_epoch", "epochs_run", "steps"]


def results(sweep_dir: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sweep_dir.glob("*/result.json")}


def test_resume_best_never_retrains_a_completed_run(tmp_path):
    run_dir = tmp_path / "run"
    args = ("run", *TINY, "model=mlp", f"hydra.run.dir={run_dir}")
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    before = (run_dir / "result.json").read_bytes()
    out = run_cli(*args, "resume=best", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "not retrained" in out.stdout
    assert (run_dir / "result.json").read_bytes() == before


def test_resume_best_over_a_completed_stacked_sweep_changes_no_result(run_sweep):
    out, sweep_dir = run_sweep(*TINY, "model=mlp", "seed=0,1,2,3")
    assert out.returncode == 0, out.stderr[-2000:]
    before = results(sweep_dir)
    assert len(before) == 4 and all(json.loads(b).get("stacked") for b in before.values())
    out, _ = run_sweep(*TINY, "model=mlp", "seed=0,1,2,3", "resume=best")
    assert out.returncode == 0, out.stderr[-2000:]
    assert results(sweep_dir) == before


def _kill_mid_stack(tmp_path: Path, sweep_dir: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "regbench", "run", "-m", *STACKED, f"hydra.sweep.dir={sweep_dir}"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    try:
        while not any(len(p.read_text().splitlines()) >= 8 for p in sweep_dir.glob("*/metrics.jsonl")):
            assert proc.poll() is None and time.time() < deadline, "the sweep ended before it could be killed"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not list(sweep_dir.glob("*/result.json")), "killed too late: a member had already finished"


@pytest.mark.slow  # about 30 s: a reference sweep, a killed one and its resume (make test-slow, CI)
def test_resume_best_for_one_damaged_member_keeps_its_siblings_where_they_were(run_sweep, tmp_path):
    out, reference = run_sweep(*STACKED, sweep_dir=tmp_path / "reference")
    assert out.returncode == 0, out.stderr[-2000:]
    killed = tmp_path / "killed"
    _kill_mid_stack(tmp_path, killed)
    members = sorted(p.parent.parent for p in killed.glob("*/checkpoints/last.pt"))
    assert len(members) == 3
    damaged, *healthy = members
    (damaged / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    epochs = {m.name: len(read_metrics(m)) for m in healthy}

    out, _ = run_sweep(*STACKED, sweep_dir=killed)  # refused, naming the file and the advice
    one_line(out, str(damaged / "checkpoints" / "last.pt"), "resume=best")
    out, _ = run_sweep(*STACKED, "resume=best", sweep_dir=killed)  # the advice, followed for the whole sweep
    assert out.returncode == 0, out.stderr[-2000:]
    assert "from best.pt" in (damaged / "regbench.log").read_text()
    for m in healthy:  # the siblings resumed from their own last.pt and end as the uninterrupted sweep's runs
        log = (m / "regbench.log").read_text()
        assert "from best.pt" not in log, m.name
        resumed_at = [int(line.split("from epoch ")[1].split()[0]) for line in log.splitlines() if "from epoch" in line]
        assert resumed_at and resumed_at[-1] >= epochs[m.name] - 1, (m.name, resumed_at, epochs[m.name])
        mine, theirs = read_result(m), read_result(reference / m.name)
        # resume=best trains alone, the reference stacked: equal to float rounding (the stacked tests' tolerance)
        assert {k: mine[k] for k in NUMBERS} == pytest.approx({k: theirs[k] for k in NUMBERS}, rel=1e-5), m.name


def test_a_damaged_result_s_advice_touches_only_that_run(run_sweep, tmp_path):
    out, sweep_dir = run_sweep(*TINY, "model=mlp", "seed=0,1,2")
    assert out.returncode == 0, out.stderr[-2000:]
    damaged, *kept = sorted(sweep_dir.glob("*/result.json"))
    kept = {p: p.read_bytes() for p in kept}
    damaged.write_text('{"status": "compl')
    out, _ = run_sweep(*TINY, "model=mlp", "seed=0,1,2")
    message = one_line(out, str(damaged), "move that file away")
    assert "resume=false" not in message  # a sweep-wide override would retrain every run
    shutil.move(damaged, tmp_path / "damaged-result.json")  # the advice, followed
    out, _ = run_sweep(*TINY, "model=mlp", "seed=0,1,2")
    assert out.returncode == 0, out.stderr[-2000:]
    assert read_result(damaged.parent)["status"] == "completed"
    assert all(p.read_bytes() == b for p, b in kept.items())


def test_a_damaged_checkpoint_s_advice_moves_only_that_file(tmp_path):
    run_dir = tmp_path / "run"
    args = ("run", "debug=tiny", "model=mlp", "trainer.max_epochs=3", f"hydra.run.dir={run_dir}")
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    (run_dir / "result.json").unlink()  # as if killed after the last checkpoint
    (run_dir / "checkpoints" / "best.pt").write_bytes(b"junk")
    out = run_cli(*args, cwd=tmp_path)
    one_line(out, "best.pt", "move it away")
    shutil.move(run_dir / "checkpoints" / "best.pt", tmp_path / "best.pt")
    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert read_result(run_dir)["selected"] == "last"
