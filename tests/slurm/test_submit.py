"""`regbench submit`: a sweep submitted as one SLURM job array, and the command returns before its jobs end."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from regbench import rundir
from helpers import read_result, run_cli
from slurm.slurm_tools import ACTIVE, sacct, wait_for
from slurm.test_blocking import SWEEP, assert_same_results, sweep

MANIFEST = ".regbench-submitted.json"


def read_manifest(sweep_dir) -> dict:
    return json.loads((sweep_dir / MANIFEST).read_text())

pytestmark = pytest.mark.slurm


def queued(array: str) -> list[str]:
    """The array's tasks still in SLURM's queue (pending ones each by its own id)."""
    out = subprocess.run(["squeue", "-h", "-r", "-j", array, "-o", "%i"], capture_output=True, text=True, timeout=30)
    return out.stdout.split()


def ended(array: str):
    records = [r for r in sacct(array) if "." not in r["job_id"]]
    return records if records and all(r["state"] not in ACTIVE for r in records) else None


def test_a_submitted_sweep_returns_before_its_jobs_end_and_completes_with_the_basic_launchers_results(tmp_path):
    """Two stacks of two are two array tasks: submit returns within seconds, before any run has a result; a second
    submit while the tasks are queued or running submits nothing; the tasks end COMPLETED and `regbench results`
    gives the basic launcher's table; submitting again afterwards retrains nothing."""
    basic = sweep(tmp_path, "basic", "stack=2")
    sweep_dir = tmp_path / "submitted" / "sweep"
    sweep_dir.parent.mkdir()
    started = time.monotonic()
    out = run_cli("submit", *SWEEP, "stack=2", f"hydra.sweep.dir={sweep_dir}", cwd=sweep_dir.parent)
    took = time.monotonic() - started
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert not list(sweep_dir.glob("*/result.json")), "submit waited for a job"
    assert took < 30 and "submitted 2 job(s) for 4 run(s) as SLURM array" in out.stdout, out.stdout
    assert f"regbench status {sweep_dir}" in out.stdout
    manifest = read_manifest(sweep_dir)
    array = manifest["array_job_id"]
    assert [t["job_id"] for t in manifest["tasks"]] == [f"{array}_{i}" for i in range(2)]
    assert [len(t["run_dirs"]) for t in manifest["tasks"]] == [2, 2]  # a stack's task: its leader's run dir first
    assert all(t["run_dir"] == t["run_dirs"][0] for t in manifest["tasks"])
    assert sorted(d for t in manifest["tasks"] for d in t["run_dirs"]) == sorted(p.name for p in basic.iterdir() if p.is_dir())
    assert "regbench submit" in manifest["command"] and manifest["earlier"] == []

    again = run_cli("submit", *SWEEP, "stack=2", f"hydra.sweep.dir={sweep_dir}", cwd=sweep_dir.parent)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to submit" in again.stdout and "submitted" not in again.stdout, again.stdout
    assert read_manifest(sweep_dir) == manifest  # nothing new: the first submission's manifest is kept

    records = wait_for(lambda: ended(array), 240, "every task to end", every=1)
    assert all(r["state"] == "COMPLETED" for r in records), records
    status = run_cli("status", str(sweep_dir)).stdout
    assert f"SLURM array {array} (2 task(s)): 2 completed" in status and "4 runs: 4 completed" in status, status
    out = run_cli("results", str(sweep_dir))
    assert out.returncode == 0, out.stderr[-3000:]
    assert_same_results(basic, sweep_dir)

    finished = {p.parent.name: read_result(p.parent)["finished_at"] for p in sweep_dir.glob("*/result.json")}
    out = run_cli("submit", *SWEEP, "stack=2", f"hydra.sweep.dir={sweep_dir}", cwd=sweep_dir.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "nothing to submit: 4 run(s) finished" in out.stdout, out.stdout
    assert read_manifest(sweep_dir) == manifest
    assert {p.parent.name: read_result(p.parent)["finished_at"] for p in sweep_dir.glob("*/result.json")} == finished


def test_submitting_again_while_tasks_are_queued_sends_only_the_runs_no_task_holds(tmp_path):
    """Four runs one at a time (array_parallelism=1); two pending tasks are cancelled at once: the same command, while
    the other two are still queued or running, submits exactly the cancelled runs, and the manifest keeps both arrays.
    Every run ends completed, each trained by one task."""
    args = (*SWEEP, "stack=1", "hydra.launcher.array_parallelism=1", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    sweep_dir = tmp_path / "sweep"
    out = run_cli("submit", *args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    first = read_manifest(sweep_dir)
    array = first["array_job_id"]
    subprocess.run(["scancel", f"{array}_2", f"{array}_3"], check=True)
    cancelled = {t["run_dir"] for t in first["tasks"][2:]}
    wait_for(lambda: not {f"{array}_2", f"{array}_3"} & set(queued(array)), 60, "the two tasks to leave the queue", every=0.2)

    out = run_cli("submit", *args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    manifest = read_manifest(sweep_dir)
    second = manifest["array_job_id"]
    assert second != array and "submitted 2 job(s) for 2 run(s)" in out.stdout, out.stdout
    assert {t["run_dir"] for t in manifest["tasks"]} == cancelled
    assert [m["array_job_id"] for m in manifest["earlier"]] == [array]  # its tasks 0 and 1 were not over

    for job in (array, second):
        wait_for(lambda job=job: ended(job), 240, f"array {job} to end", every=1)
    results = [read_result(p.parent) for p in sweep_dir.glob("*/result.json")]
    assert len(results) == 4 and all(r["status"] == "completed" for r in results)
    status = run_cli("status", str(sweep_dir)).stdout
    assert f"SLURM array {second} (2 task(s)): 2 completed" in status, status
    assert f"SLURM array {array} (4 task(s)): 2 completed, 2 cancelled" in status, status
    assert status.count("(its run is completed)") == 2, status  # the cancelled tasks' runs, completed by the second


def test_a_partition_that_does_not_exist_is_one_line_and_nothing_is_submitted(tmp_path):
    sweep_dir = tmp_path / "sweep"
    out = run_cli("submit", *SWEEP, "hydra.launcher.partition=nosuchpartition", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-3000:]
    assert out.stderr.startswith("regbench: error: SLURM refused the submission") and out.stderr.count("\n") == 1, out.stderr
    assert not (sweep_dir / MANIFEST).exists()


def test_status_shows_cancelled_jobs_and_submitting_again_runs_only_them(tmp_path):
    """Solo jobs one at a time (array_parallelism=1); the array is cancelled once its first job has finished: status
    joins SLURM's view (1 completed, the others cancelled), and the same submit command completes the others,
    leaving the finished run as it was."""
    args = (*SWEEP, "stack=1", "hydra.launcher.array_parallelism=1", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    sweep_dir = tmp_path / "sweep"
    out = run_cli("submit", *args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    array = read_manifest(sweep_dir)["array_job_id"]
    first = wait_for(lambda: next(sweep_dir.glob("*/result.json"), None), 180, "the first job's result", every=0.2)
    wait_for(lambda: [r for r in sacct(f"{array}_0") if r["job_id"] == f"{array}_0" and r["state"] == "COMPLETED"], 60,
             "the first job's end", every=0.2)
    subprocess.run(["scancel", array], check=True)
    wait_for(lambda: ended(array), 120, "the cancelled array to end", every=0.5)
    # SLURM ends a cancelled task before its process has exited (no cgroups here): a run that was in its last
    # epoch may still complete. Wait until no process holds a run dir, then count what is left to run.
    wait_for(lambda: not any(rundir.holder(d) for d in sweep_dir.iterdir() if d.is_dir()), 60,
             "the cancelled processes to exit", every=0.2)
    left = 4 - len(list(sweep_dir.glob("*/result.json")))
    assert left >= 1, "every run completed before the cancel reached it"
    out = run_cli("status", str(sweep_dir))
    assert out.returncode == 0, out.stderr[-3000:]
    summary = next(line for line in out.stdout.splitlines() if line.startswith(f"SLURM array {array}"))
    assert "1 completed" in summary and "cancelled" in summary and "failed" not in summary, out.stdout
    assert out.stdout.count(f"cancelled {array}_") == 3, out.stdout
    assert out.stdout.count("(submit the same command again to run it)") == left, out.stdout

    finished_at = read_result(first.parent)["finished_at"]
    out = run_cli("submit", *args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    second = read_manifest(sweep_dir)["array_job_id"]
    assert second != array
    records = wait_for(lambda: ended(second), 240, "the second submission to end", every=1)
    assert all(r["state"] == "COMPLETED" for r in records), records
    results = [read_result(p.parent) for p in sweep_dir.glob("*/result.json")]
    assert len(results) == 4 and all(r["status"] == "completed" for r in results)
    assert read_result(first.parent)["finished_at"] == finished_at  # not retrained
    status = run_cli("status", str(sweep_dir)).stdout
    # only the runs unfinished at the second submit were sent: 3, or fewer where a cancelled task's process (SLURM
    # without cgroups does not kill it with its task) still completed its run in between
    sent = next(line for line in status.splitlines() if line.startswith(f"SLURM array {second} "))
    tasks = int(sent.split("(")[1].split()[0])
    assert 1 <= tasks <= left and sent.endswith(f"({tasks} task(s)): {tasks} completed"), status
