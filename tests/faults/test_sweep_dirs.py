"""One sweep dir, one sweep at a time, and what a sweep dir holds is read as regbench wrote it (issue #34, rows 6, 8,
9, 10): a second command into a busy dir is one line, `status` sees a stack's members while they train and after a
kill, and a plan that names a folder outside the sweep dir is never followed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TINY, compose, run_cli

from regbench.config import run_id
from regbench.sweep.stacks import PLAN_FILE, read_plan, role

# A stacked sweep long enough to be watched and killed (3 members, a checkpoint every epoch).
LONG = ["model=mlp", "seed=0,1,2", "trainer.max_epochs=200", "dataset.n_train=400", "logger=none", "trainer.progress=false",
        "trainer.num_threads=1", "trainer.checkpoint_every_s=0", "trainer.early_stopping.patience=null"]


def start(tmp_path: Path, sweep_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "regbench", "run", "-m", *args, f"hydra.sweep.dir={sweep_dir}"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(condition, proc, seconds=120):
    deadline = time.time() + seconds
    while not condition():
        assert proc.poll() is None and time.time() < deadline, "the sweep ended first"
        time.sleep(0.02)


def kill(proc):
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_the_same_command_started_twice_at_once_is_one_sweep(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = (*TINY, "model=mlp", "seed=0,1")
    procs = [start(tmp_path, sweep_dir, *args) for _ in range(2)]
    outs = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in outs)
    assert codes == [0, 2], outs
    (refused,) = [err for code, _, err in outs if code == 2]
    (line,) = refused.strip().splitlines()
    assert line.startswith("regbench: error: ") and str(sweep_dir) in line, line
    # refused by the sweep dir's lock, or, if the other had already started training, by its first run dir's
    assert "in use by another sweep" in line or "is being trained by another process" in line, line
    status = run_cli("status", str(sweep_dir), cwd=tmp_path)
    assert "2 completed" in status.stdout, status.stdout


def test_a_second_sweep_into_a_busy_dir_is_refused_and_the_first_keeps_its_plan(tmp_path):
    sweep_dir = tmp_path / "sweep"
    first = start(tmp_path, sweep_dir, *LONG)
    try:
        wait_for(lambda: list(sweep_dir.glob("*/checkpoints/last.pt")), first)
        plan = (sweep_dir / PLAN_FILE).read_bytes()
        second = run_cli("run", "-m", *LONG[:1], "seed=5,6", *LONG[2:], f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
        assert second.returncode == 2 and "in use by another sweep" in second.stderr, second.stderr[-2000:]
        assert len(second.stderr.strip().splitlines()) == 1
        assert (sweep_dir / PLAN_FILE).read_bytes() == plan
        assert not list(sweep_dir.glob("*seed=5*"))
    finally:
        kill(first)


def test_status_counts_a_training_stack_s_members_as_running_then_interrupted(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = start(tmp_path, sweep_dir, *LONG)
    try:
        wait_for(lambda: len(list(sweep_dir.glob("*/checkpoints/last.pt"))) == 3, proc)
        status = run_cli("status", str(sweep_dir), cwd=tmp_path)
        assert "3 running" in status.stdout and "pending" not in status.stdout.replace("0 pending", ""), status.stdout
    finally:
        kill(proc)
    status = run_cli("status", str(sweep_dir), cwd=tmp_path)
    assert "3 interrupted" in status.stdout, status.stdout
    results = run_cli("results", str(sweep_dir), cwd=tmp_path)
    assert results.returncode == 0 and "Traceback" not in results.stderr, results.stderr[-2000:]


@pytest.mark.parametrize("name", ["../escaped-by-plan", "/tmp/escaped-by-plan", "a/../../escaped", ""])
def test_a_plan_naming_a_folder_outside_the_sweep_dir_is_not_followed(name, tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    cfgs = [compose(*TINY, f"seed={s}") for s in range(2)]
    members = [{"dirname": d, "run_id": run_id(c), "config": {}, "overrides": []} for d, c in zip(["seed=0", name], cfgs)]
    (sweep_dir / PLAN_FILE).write_text(json.dumps({"units": 1, "stacks": [members]}))
    assert read_plan(sweep_dir) is None  # every job trains alone
    assert role(sweep_dir, sweep_dir / "seed=0", run_id(cfgs[0])) is None


def test_a_plan_file_replaced_by_a_directory_is_one_line(run_sweep):
    out, sweep_dir = run_sweep(*TINY, "model=mlp", "seed=0,1", "trainer.max_epochs=1")
    assert out.returncode == 0
    for p in sweep_dir.glob("*/result.json"):
        p.unlink()
    (sweep_dir / PLAN_FILE).unlink(missing_ok=True)
    (sweep_dir / PLAN_FILE).mkdir()
    out, _ = run_sweep(*TINY, "model=mlp", "seed=0,1", "trainer.max_epochs=1")
    assert out.returncode == 2, out.stderr[-2000:]
    (line,) = out.stderr.strip().splitlines()
    assert PLAN_FILE in line and "directory" in line, line


def test_a_completed_sweep_with_a_read_only_member_is_reported_not_relaunched(run_sweep, tmp_path):
    """Row 8: re-running a finished sweep launches nothing (Hydra would reopen each job's log) and prints its table."""
    out, sweep_dir = run_sweep(*TINY, "model=mlp", "seed=0,1")
    assert out.returncode == 0, out.stderr[-2000:]
    member = sorted(p.parent for p in sweep_dir.glob("*/result.json"))[0]
    if os.geteuid() != 0 or subprocess.run(["mount", "--bind", "-o", "ro", str(member), str(member)]).returncode:
        pytest.skip("a read-only bind mount needs root")
    try:
        before = {p: p.read_bytes() for p in member.rglob("*") if p.is_file()}
        out, _ = run_sweep(*TINY, "model=mlp", "seed=0,1")
        assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
        assert "2 completed" in out.stdout and "2 finished by an earlier run" in out.stdout, out.stdout
        assert {p: p.read_bytes() for p in member.rglob("*") if p.is_file()} == before
    finally:
        subprocess.run(["umount", "-l", str(member)])
