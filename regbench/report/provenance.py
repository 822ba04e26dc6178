"""Where a sweep's numbers come from: the command, code version, dates, hardware, and what did not finish.

The command is Hydra's own record of the sweep (``multirun.yaml``: ``hydra.overrides``); the jobs
it was going to run are expanded from the same record by :mod:`regbench.sweep.jobs` (the run table
of :func:`regbench.sweep.results.load_runs` already lists those of the sweep dir's own sweep), so
jobs that never started show up even though they left no directory behind.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
from collections import Counter
from pathlib import Path

import regbench
from regbench.files import git_commit
from regbench.records import Status
from regbench.report.study import FAILED, UNFINISHED, Study


def collect(study: Study, report_args: list[str] | None = None) -> dict:
    sweeps = [_sweep_record(study, p) for p in sorted(study.sweep_dir.glob("**/multirun.yaml"))]
    results = [r for r in study.results.values() if r]
    finished = sorted(t for t in (_parse_time(r.finished_at) for r in results) if t)
    started = sorted(dt.datetime.fromtimestamp(p.stat().st_mtime).astimezone()
                     for d in study.runs["run_dir"] for p in [study.sweep_dir / d / ".hydra" / "config.yaml"] if p.exists())
    problems = study.runs[study.runs["status"].isin(FAILED)]
    unfinished = study.runs[study.runs["status"].isin(UNFINISHED) & (study.runs["status"] != Status.NOT_STARTED)]
    return {
        "commands": [s["command"] for s in sweeps],
        "report_command": "regbench report " + " ".join(report_args or [str(study.sweep_dir)]),
        "code": Counter((r.regbench_version or "?", r.git_commit or "unknown") for r in results),
        "report_code": (regbench.__version__, git_commit() or "unknown (not a git checkout)"),
        "started": started[0] if started else None,
        "finished_first": finished[0] if finished else None,
        "finished_last": finished[-1] if finished else None,
        "generated": dt.datetime.now().astimezone(),
        "devices": Counter(r.device for r in results if r.device),
        "machine": machine(),
        "counts": _counts(study, sweeps),
        "failed": [(row.run_dir, row.status, getattr(study.results.get(row.run_dir), "error", None) or "")
                   for row in problems.itertuples()],
        "unfinished": [(row.run_dir, row.status) for row in unfinished.itertuples()],
        "never_started": [d for d, s in zip(study.runs["run_dir"], study.runs["status"]) if s == Status.NOT_STARTED]
                         + [job for s in sweeps for job in s["missing"]],
        "notes": [n for s in sweeps for n in s["notes"]],
    }


def _counts(study: Study, sweeps: list[dict]) -> dict[str, int]:
    counts = study.counts()
    missing = sum(len(s["missing"]) + s["unsampled"] for s in sweeps)  # jobs the run table does not list
    if missing:
        counts = {**{s: n for s, n in counts.items() if s != "not started"}, "not started": counts.get("not started", 0) + missing}
    return counts


def _sweep_record(study: Study, path: Path) -> dict:
    """The command of one ``multirun.yaml`` and its jobs that have no run (the run table lists those of
    the sweep dir's own multirun.yaml as pending already; sub-sweeps in sub-folders are checked here)."""
    from omegaconf import OmegaConf

    from regbench.sweep.jobs import expected_count, expected_jobs, load_multirun

    record = {"command": "", "missing": [], "unsampled": 0, "notes": []}
    here = path.parent
    try:
        cfg = load_multirun(here)
        overrides = OmegaConf.to_container(cfg.hydra.overrides, resolve=False)
    except Exception as e:  # noqa: BLE001 - an unreadable record costs the command line, not the report
        record["notes"].append(f"{path}: unreadable ({type(e).__name__}: {e})")
        return record
    task = [str(o) for o in overrides.get("task") or []]
    own = [str(o) for o in overrides.get("hydra") or [] if not str(o).startswith("hydra.mode=")]
    record["command"] = "regbench run -m " + " ".join(_quote(o) for o in [*task, *own])
    known = {(study.sweep_dir / d).resolve() for d in study.runs["run_dir"]}
    top = here.resolve()
    below = sum(1 for d in known if d == top or top in d.parents)
    try:
        if top == study.sweep_dir.resolve():
            jobs = [] if _is_grid(cfg) else None  # the run table has expanded the sweep dir's own sweep already
        else:
            jobs = expected_jobs(cfg)
        if jobs is None:  # a sampling sweeper (Optuna) draws its trials as it goes: only their number is known
            planned = expected_count(cfg)
            if planned is not None:
                record["unsampled"] = max(0, planned - below)
                record["notes"].append(f"`{here.name}`: {planned} trials planned by the sampler, {below} on disk")
            return record
    except Exception as e:  # noqa: BLE001 - jobs Hydra cannot expand here: list what is on disk only
        record["notes"].append(f"the jobs of {here} could not be listed ({type(e).__name__}: {e})")
        return record
    for job in jobs:
        if (here / job.dirname).resolve() not in known:
            record["missing"].append(str((here / job.dirname).relative_to(study.sweep_dir)))
    return record


def _is_grid(cfg) -> bool:
    from regbench.sweep.jobs import is_basic_sweeper

    return is_basic_sweeper(cfg)


def _quote(override: str) -> str:
    return f"'{override}'" if any(ch in override for ch in "[]()*?{} ") else override


def _parse_time(text) -> dt.datetime | None:
    if not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"):
        try:
            return dt.datetime.strptime(str(text), fmt)
        except ValueError:
            continue
    return None


def machine() -> str:
    """The machine writing the report (result.json records only the training device)."""
    from importlib import metadata

    try:
        torch = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch = "not installed"
    cpu = platform.processor() or platform.machine()
    return (f"{platform.platform()}, {cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"torch {torch}")


def when(t: dt.datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S %z") if t else "unknown"


def duration(a: dt.datetime | None, b: dt.datetime | None) -> str:
    if not a or not b:
        return ""
    seconds = (b - a).total_seconds()
    if not math.isfinite(seconds) or seconds < 0:
        return ""
    h, rem = divmod(int(seconds), 3600)
    return f"{h}h {rem // 60:02d}m" if h else f"{rem // 60}m {rem % 60:02d}s"
