"""What the tests on a SLURM cluster share: SLURM's accounting of a job, polling, comparing two runs' results."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

#: Result fields that measure time or provenance, not what was trained: left out when two runs are compared.
NOT_COMPARED = {"wall_time_s", "train_time_s", "compile_time_s", "steps_per_s", "finished_at", "git_commit", "logger_id"}

#: SLURM job states of a job not yet over.
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING", "SUSPENDED", "RESIZING", "REQUEUE_HOLD", "REQUEUE_FED"}


def sacct(job_id: str | int, *, duplicates: bool = False) -> list[dict]:
    """SLURM's accounting records of a job (or an array: every task), one dict per job or step."""
    args = ["sacct", "-n", "-P", "-o", "JobID,State,ExitCode", "-j", str(job_id)] + (["-D"] if duplicates else [])
    out = subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout
    return [dict(zip(("job_id", "state", "exit_code"), line.split("|"))) for line in out.splitlines() if line]


def job_ids(sweep_dir: Path) -> list[str]:
    """The SLURM ids of a sweep's array tasks (``<array>_<task>``; a submission of one task is a plain job, ``<job>``),
    from the submitit folders."""
    folder = Path(sweep_dir) / ".submitit"
    names = [p.name for p in folder.iterdir() if p.is_dir() and p.name.replace("_", "").isdigit()] if folder.is_dir() else []
    arrays = {n.split("_")[0] for n in names if "_" in n}  # an array also has a folder of its own id
    return sorted(n for n in names if "_" in n or n not in arrays)


def wait_for(predicate, timeout: float, what: str, every: float = 0.05, process: subprocess.Popen | None = None):
    """Poll ``predicate`` until it returns something true (returned); fail after ``timeout`` s or when ``process`` ends."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the sweep ended (exit {process.returncode}) before {what}:\n{out[-2000:]}\n{err[-3000:]}")
        time.sleep(every)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def comparable(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in NOT_COMPARED}
