"""Where a sweep's numbers come from: the command, code version, dates, hardware, and what did not finish.

The command is Hydra's own record of the sweep (``multirun.yaml``: ``hydra.overrides``); the jobs
it was going to run are expanded from the same record (command-line sweeps and an experiment's
``hydra.sweeper.params``), so jobs that never started show up as missing even though they left no
directory behind.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import subprocess
from collections import Counter
from pathlib import Path

import yaml

import regbench
from regbench.report.study import FAILED, UNFINISHED, Study, as_number, parse_selection
from regbench.sweep.results import METRICS

NOT_OVERRIDES = {"run_dir", "status", "run_id", "error", *METRICS}


def collect(study: Study, report_args: list[str] | None = None) -> dict:
    sweeps = [_sweep_record(study, p) for p in sorted(study.sweep_dir.glob("**/multirun.yaml"))]
    results = [r for r in study.results.values() if r]
    finished = sorted(t for t in (_parse_time(r.get("finished_at")) for r in results) if t)
    started = sorted(dt.datetime.fromtimestamp(p.stat().st_mtime).astimezone()
                     for d in study.runs["run_dir"] for p in [study.sweep_dir / d / ".hydra" / "config.yaml"] if p.exists())
    problems = study.runs[study.runs["status"].isin(FAILED)]
    unfinished = study.runs[study.runs["status"].isin(UNFINISHED) & (study.runs["status"] != "not started")]
    return {
        "commands": [s["command"] for s in sweeps],
        "report_command": "regbench report " + " ".join(report_args or [str(study.sweep_dir)]),
        "code": Counter((r.get("regbench_version") or "?", r.get("git_commit") or "unknown") for r in results),
        "report_code": (regbench.__version__, git_commit()),
        "started": started[0] if started else None,
        "finished_first": finished[0] if finished else None,
        "finished_last": finished[-1] if finished else None,
        "generated": dt.datetime.now().astimezone(),
        "devices": Counter(r.get("device") or "?" for r in results if r.get("device")),
        "machine": machine(),
        "counts": _counts(study, sweeps),
        "failed": [(row.run_dir, row.status, (study.results.get(row.run_dir) or {}).get("error") or "")
                   for row in problems.itertuples()],
        "unfinished": [(row.run_dir, row.status) for row in unfinished.itertuples()],
        "never_started": [d for d, s in zip(study.runs["run_dir"], study.runs["status"]) if s == "not started"]
                         + [job for s in sweeps for job in s["missing"]],
        "expected": sum(s["expected"] or 0 for s in sweeps) if sweeps and all(s["expected"] is not None for s in sweeps) else None,
        "notes": [n for s in sweeps for n in s["notes"]],
    }


def _counts(study: Study, sweeps: list[dict]) -> dict[str, int]:
    counts = study.counts()
    missing = sum(len(s["missing"]) for s in sweeps)  # jobs the run table does not know about at all
    if missing:
        counts = {**{s: n for s, n in counts.items() if s != "not started"}, "not started": counts.get("not started", 0) + missing}
    return counts


def _sweep_record(study: Study, path: Path) -> dict:
    record = {"command": "", "expected": None, "missing": [], "notes": []}
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        record["notes"].append(f"{path}: unreadable ({e})")
        return record
    hydra = cfg.get("hydra") or {}
    overrides = hydra.get("overrides") or {}
    task = [str(o) for o in overrides.get("task") or []]
    own = [str(o) for o in overrides.get("hydra") or [] if not str(o).startswith("hydra.mode=")]
    record["command"] = "regbench run -m " + " ".join(_quote(o) for o in [*task, *own])
    try:
        jobs = expected_jobs(task, (hydra.get("sweeper") or {}).get("params") or {})
    except Exception as e:  # an override Hydra's parser rejects, an interval sweep: the report goes on without
        record["notes"].append(f"the jobs of {path.parent} could not be listed: {e}")
        return record
    if jobs is None:
        record["notes"].append(f"{path.parent}: not a grid sweep; missing jobs are not listed")
        return record
    here = path.parent
    present = []  # every run the run table knows, with a folder or not (it may list unstarted jobs itself)
    keys = [c for c in study.raw.columns if c not in NOT_OVERRIDES]
    for row in study.raw.to_dict("records"):
        full = study.sweep_dir / row["run_dir"]
        if full == here or here in full.parents:
            present.append({k: _norm(row[k]) for k in keys if isinstance(row[k], str)})
    record["expected"] = len(jobs)
    for job in jobs:
        if not any(all(run.get(k) == _norm(v) for k, v in job.items()) for run in present):
            record["missing"].append(",".join(f"{k}={v}" for k, v in job.items()))
    return record


def expected_jobs(task: list[str], params: dict) -> list[dict] | None:
    """The swept settings of every job of a grid sweep, as {key: value as written}; None for other sweeps."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    axes: dict[str, list[str]] = {}
    for key, value in params.items():
        axes[key] = [str(value)]
    for o in parser.parse_overrides(task):
        if o.is_sweep_override():
            axes[o.get_key_element().lstrip("+~")] = [o.input_line.split("=", 1)[1]]
    grid = {}
    for key, (value,) in axes.items():
        (o,) = parser.parse_overrides([f"{key}={value}"])
        if o.is_sweep_override() and not o.is_discrete_sweep():
            return None
        grid[key] = list(o.sweep_string_iterator()) if o.is_discrete_sweep() else [value]
    swept = {k: v for k, v in grid.items() if len(v) > 1}
    return [dict(zip(swept, combo)) for combo in itertools.product(*swept.values())]


def _norm(value):
    text = str(value).strip()
    if text.startswith("[") or text.lower() in ("none", "null"):
        return tuple(parse_selection(text))
    x = as_number(text)
    return x if x is not None else text.lower()


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


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(regbench.__file__).parent, capture_output=True,
                             text=True, timeout=5)
        commit = out.stdout.strip()
        if commit:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                   text=True, timeout=5, cwd=Path(regbench.__file__).parent).stdout.strip()
            return commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown (not a git checkout)"


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
