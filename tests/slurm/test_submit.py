"""`regbench submit`: a sweep submitted as one SLURM job array, and the command returns before its jobs end."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from helpers import read_result, run_cli
from slurm.slurm_tools import ACTIVE, sacct, wait_for
from slurm.test_blocking import SWEEP, assert_same_results, sweep

MANIFEST = ".regbench-submitted.json"


def read_manifest(sweep_dir) -> dict:
    return json.loads((sweep_dir / MANIFEST).read_text())

pytestmark = pytest.mark.slurm


def ended(array: str):
    records = [r for r in sacct(array) if "." not in r["job_id"]]
    return records if records and all(r["state"] not in ACTIVE for r in records) else None


def test_a_submitted_sweep_returns_before_its_jobs_end_and_completes_with_the_basic_launchers_results(tmp_path):
    """Two stacks of two: submit returns within seconds, before any run has a result; a second submit while the jobs
    are queued or running is refused in one line; the jobs end COMPLETED and `regbench results` gives the basic
    launcher's table; submitting again afterwards retrains nothing."""
    basic = sweep(tmp_path, "basic", "stack=2")
    sweep_dir = tmp_path / "submitted" / "sweep"
    sweep_dir.parent.mkdir()
    started = time.monotonic()
    out = run_cli("submit", *SWEEP, "stack=2", f"hydra.sweep.dir={sweep_dir}", cwd=sweep_dir.parent)
    took = time.monotonic() - started
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert not list(sweep_dir.glob("*/result.json")), "submit waited for a job"
    assert took < 30 and "submitted 4 job(s) as SLURM array" in out.stdout and f"regbench status {sweep_dir}" in out.stdout
    manifest = read_manifest(sweep_dir)
    array = manifest["array_job_id"]
    assert [t["job_id"] for t in manifest["tasks"]] == [f"{array}_{i}" for i in range(4)]
    assert sorted(t["run_dir"] for t in manifest["tasks"]) == sorted(p.name for p in basic.iterdir() if p.is_dir())
    assert all("seed=0" in t["overrides"] or "seed=1" in t["overrides"] for t in manifest["tasks"])
    assert "regbench submit" in manifest["command"]

    again = run_cli("submit", *SWEEP, "stack=2", f"hydra.sweep.dir={sweep_dir}", cwd=sweep_dir.parent)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "still queued or running" in again.stderr, again.stderr
    assert read_manifest(sweep_dir) == manifest  # the first submission's manifest is kept

    records = wait_for(lambda: ended(array), 240, "every task to end", every=1)
    assert all(r["state"] == "COMPLETED" for r in records), records
    status = run_cli("status", str(sweep_dir)).stdout
    assert f"SLURM array {array} (4 task(s)): 4 completed" in status and "4 runs: 4 completed" in status, status
    out = run_cli("results", str(sweep_dir))
    assert out.returncode == 0, out.stderr[-3000:]
    assert_same_results(basic, sweep_dir)

    finished = {p.parent.name: read_result(p.parent)["finished_at"] for p in sweep_dir.glob("*/result.json")}
    out = run_cli("submit", *SWEEP, "stack=2", f"hydra.sweep.dir={sweep_dir}", cwd=sweep_dir.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    second = read_manifest(sweep_dir)["array_job_id"]  # a sweep with every run finished launches nothing, or jobs that
    if second != array:                                 # report the finished runs
        wait_for(lambda: ended(second), 240, "the second submission's tasks to end", every=1)
    assert {p.parent.name: read_result(p.parent)["finished_at"] for p in sweep_dir.glob("*/result.json")} == finished

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
    out = run_cli("status", str(sweep_dir))
    assert out.returncode == 0, out.stderr[-3000:]
    summary = next(line for line in out.stdout.splitlines() if line.startswith(f"SLURM array {array}"))
    assert "1 completed" in summary and "cancelled" in summary and "failed" not in summary, out.stdout
    assert out.stdout.count(f"cancelled {array}_") == 3, out.stdout
    assert out.stdout.count("(submit the same command again to run it)") == 3, out.stdout

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
    assert f"SLURM array {second} (4 task(s)): 4 completed" in status, status
