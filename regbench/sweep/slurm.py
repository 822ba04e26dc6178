"""A submitted sweep as SLURM sees it: the manifest `regbench submit` writes into the sweep dir, and sacct's view of
its array's tasks, which `regbench status` prints beside each run's own state. Reads only; submitting is
:mod:`regbench.sweep.submit`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from regbench.rundir import FINISHED

MANIFEST = ".regbench-submitted.json"
#: squeue states of a task that has not ended.
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING", "SUSPENDED", "RESIZING", "REQUEUE_HOLD",
          "REQUEUE_FED", "PREEMPTED", "STOPPED", "SIGNALING", "STAGE_OUT"}



#: sacct's states, as `regbench status` names them.
SLURM_STATES = {"PENDING": "pending", "RUNNING": "running", "REQUEUED": "requeued", "COMPLETING": "running",
                "COMPLETED": "completed", "FAILED": "failed", "CANCELLED": "cancelled", "TIMEOUT": "timed out",
                "PREEMPTED": "requeued", "NODE_FAIL": "failed", "OUT_OF_MEMORY": "failed", "BOOT_FAIL": "failed",
                "DEADLINE": "timed out", "SUSPENDED": "pending", "REQUEUE_HOLD": "pending"}


def slurm_view(sweep_dir: Path) -> list[str]:
    """Lines for `regbench status`: the SLURM states of the tasks of the sweep's submissions (sacct), the latest and
    the earlier ones that still had tasks when it was made, with the run dir of each task that failed, was cancelled
    or timed out; [] when the sweep was not submitted."""
    manifest = read_manifest(sweep_dir)
    if manifest is None:
        return []
    lines = []
    for submission in submissions_of(manifest):
        lines += _array_view(Path(sweep_dir), submission)
    return lines


def task_dirs(task: dict) -> list[str]:
    """The run dirs a manifest task trains: its stack's (``run_dirs``), or its one ``run_dir`` (an older manifest)."""
    dirs = task.get("run_dirs") or [task.get("run_dir")]
    return [d for d in dirs if isinstance(d, str)]


def submissions_of(manifest: dict) -> list[dict]:
    """A manifest's submissions: the latest first, then the earlier ones it kept (those with tasks not ended then)."""
    earlier = manifest.get("earlier") if isinstance(manifest.get("earlier"), list) else []
    return [manifest, *(m for m in earlier if isinstance(m, dict) and isinstance(m.get("tasks"), list))]


def _array_view(sweep_dir: Path, manifest: dict) -> list[str]:
    array = str(manifest.get("array_job_id", ""))
    if shutil.which("sacct") is None:
        return [f"SLURM array {array}: sacct is not on PATH here (run `regbench status` where SLURM's tools are)"]
    try:
        out = subprocess.run(["sacct", "-n", "-P", "-X", "-D", "-j", array, "-o", "JobID,State"], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return [f"SLURM array {array}: sacct did not answer ({e})"]
    if out.returncode:
        return [f"SLURM array {array}: sacct failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}"]
    attempts: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        job_id, _, state = line.partition("|")
        for task in _array_tasks(job_id):  # pending tasks come as one line: 59_[1-3%1]
            attempts.setdefault(task, []).append(SLURM_STATES.get(state.split()[0] if state else "", state.lower() or "?"))
    states = {}
    queued = None
    for task in manifest["tasks"]:
        seen = attempts.get(str(task.get("job_id")), [])
        if not seen and queued is None:
            queued = _queued(array)
        # not in the accounting: still queued (not there yet), or removed from the queue before it ever started
        states[task["job_id"]] = seen[-1] if seen else "pending" if task["job_id"] in queued else "cancelled"
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state] = counts.get(state, 0) + 1
    requeued = sum("requeued" in seen[:-1] for seen in attempts.values())
    order = ["pending", "running", "requeued", "completed", "failed", "cancelled", "timed out"]
    summary = ", ".join(f"{counts[s]} {s}" for s in sorted(counts, key=lambda s: order.index(s) if s in order else 99))
    lines = [f"SLURM array {array} ({len(states)} task(s)): {summary}" + (f"; {requeued} requeued before" if requeued else "")]
    by_id = {t["job_id"]: t for t in manifest["tasks"]}
    for job_id, state in states.items():
        if state in ("failed", "cancelled", "timed out"):
            task = by_id[job_id]
            dirs = task_dirs(task)
            runs = [_run_status(sweep_dir, d) for d in dirs]
            if runs and all(run in FINISHED for run in runs):
                note = f"   (its run{'s are' if len(runs) > 1 else ' is'} {', '.join(sorted(set(runs)))})"
            else:
                note = "   (submit the same command again to run it)" if state != "failed" else ""
            what = task.get("run_dir") or " ".join(task.get("overrides", []))
            if len(dirs) > 1:
                what += f" (a stack of {len(dirs)})"
            lines.append(f"  {state} {job_id}: {what}{note}")
    return lines


def _run_status(sweep_dir: Path, dirname: str | None) -> str | None:
    """The status a run's result.json records (None: no run dir known, no result yet, or not readable)."""
    if not dirname:
        return None
    try:
        return json.loads((sweep_dir / dirname / "result.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def _array_tasks(job_id: str) -> list[str]:
    """``59_3`` → [59_3]; ``59_[1-3,7%2]`` → [59_1, 59_2, 59_3, 59_7]; anything else as it is."""
    array, _, tasks = job_id.partition("_")
    if not (tasks.startswith("[") and tasks.endswith("]")):
        return [job_id]
    out = []
    for part in tasks[1:-1].split("%")[0].split(","):
        first, _, last = part.partition("-")
        if first.isdigit() and (not last or last.isdigit()):
            out += [f"{array}_{i}" for i in range(int(first), int(last or first) + 1)]
    return out


def read_manifest(sweep_dir: Path) -> dict | None:
    path = Path(sweep_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        from regbench.errors import UserError

        raise UserError(f"{path} is damaged (not JSON): remove it to submit the sweep again") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tasks"), list):
        from regbench.errors import UserError

        raise UserError(f"{path} is not a regbench submission manifest: remove it to submit the sweep again")
    here = str(Path(sweep_dir).resolve())
    if manifest.get("sweep_dir", here) != here:  # copied in from another sweep: its tasks are not this sweep's
        from regbench.errors import UserError

        raise UserError(f"{path} is the submission of another sweep ({manifest['sweep_dir']}): remove it to submit this one")
    return manifest


def still_active(sweep_dir: Path) -> list[str]:
    """The tasks of the sweep's submissions that SLURM has not ended (squeue), [] when none or no submission."""
    manifest = read_manifest(sweep_dir)
    return [] if manifest is None else active_tasks(manifest)


def active_tasks(manifest: dict) -> list[str]:
    """The tasks of a manifest's submissions that SLURM has not ended (squeue)."""
    queued = _queued(",".join(str(m.get("array_job_id", "")) for m in submissions_of(manifest)))
    return [task for task, state in queued.items() if state in ACTIVE]


def _queued(arrays: str) -> dict[str, str]:
    """squeue's tasks of the arrays (comma-separated ids), each by its own id, with its state; {} when squeue fails
    (a warning: the caller takes every task as ended)."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-j", arrays, "-o", "%i %T"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"regbench: warning: squeue did not answer ({e}); assuming no job of {arrays} is left", file=sys.stderr)
        return {}
    return dict(line.split() for line in out.stdout.splitlines() if len(line.split()) == 2)
