"""End of a sweep: write its tables, print its configurations and failures; non-zero exit if a job failed.

Called by `regbench run -m` in the launching process once Hydra returns, whatever the launcher: jobs
that ran in other processes (joblib, submitit) are read back from their ``result.json``. The jobs
of this sweep are the ones its ``multirun.yaml`` expands to (or, for a sampling sweeper, the
ones this process saw); a job that left no result counts as failed, so nothing is lost silently.
Diverged runs are results (a learning rate too high is an answer), not failures.
"""

from __future__ import annotations

from pathlib import Path


def end_of_sweep(sweep_dir: Path | None, statuses: list[tuple[str, str]], every_run: bool = False,
                 started: float | None = None) -> int:
    """``sweep_dir``: the command's ``hydra.sweep.dir`` (None if unknown: the jobs' common parent is used);
    ``statuses``: (run dir, status) of the jobs this process saw; ``every_run``: the table holds every run
    of the dir, not only those of its last sweep (the tuned protocol's final dir, filled by a sweep per arm);
    ``started``: when the command started (default: when Hydra wrote the sweep's multirun.yaml)."""
    from rich.markup import escape

    from regbench.console import console
    from regbench.sweep.jobs import sweep_jobs
    from regbench.sweep.results import (CONFIGS_CSV, configs_table, format_counts, per_config, print_failures,
                                        status_counts, write_tables)

    out = console()
    if sweep_dir is None or not Path(sweep_dir).is_dir():
        sweep_dir = _common_parent([d for d, _ in statuses])
    if sweep_dir is None or not sweep_dir.is_dir():
        counts: dict[str, int] = {}
        for _, status in statuses:
            counts[status] = counts.get(status, 0) + 1
        out.print("sweep: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), markup=False)
        return 1 if counts.get("failed") else 0

    runs, _ = write_tables(sweep_dir)
    jobs = None if every_run else sweep_jobs(sweep_dir)
    if every_run:
        mine = set(runs["run_dir"]) if not runs.empty else set()
    elif jobs is not None:
        mine = {j.dirname for j in jobs}
    elif statuses:
        mine = {_relative(d, sweep_dir) for d, _ in statuses}
    else:
        mine = set(runs["run_dir"]) if not runs.empty else set()
    this = runs[runs["run_dir"].isin(mine)] if not runs.empty else runs
    counts = status_counts(this) if not this.empty else {}
    lost = this[this["status"].isin(["pending", "interrupted", "running"])] if not this.empty else this
    failed = counts.get("failed", 0) + len(lost)

    if started is None:
        started = (sweep_dir / "multirun.yaml").stat().st_mtime if (sweep_dir / "multirun.yaml").exists() else 0
    reused = sum(1 for d in this["run_dir"] if _finished_before(sweep_dir / d, started)) if not this.empty else 0
    line = f"sweep {sweep_dir}: {format_counts(counts)}"
    if reused:
        line += f" ({reused} finished by an earlier run of the sweep, not retrained)"
    out.print(line, soft_wrap=True, markup=False)
    if not this.empty:
        out.print(configs_table(this, per_config(this)))
        print_failures(this, out)
    for _, row in lost.iterrows():
        out.print(f"  [red]no result[/red] {escape(row['run_dir'])}: the job ended without writing result.json "
                  f"({row['status']})", soft_wrap=True)
    out.print(f"tables: {sweep_dir}/results.csv, results.parquet, {CONFIGS_CSV}   "
              f"(again any time: regbench results {sweep_dir})", soft_wrap=True, markup=False)
    return 1 if failed else 0


def _common_parent(dirs: list[str]) -> Path | None:
    parents = {Path(d).parent for d in dirs}
    return parents.pop() if len(parents) == 1 else None


def _relative(run_dir: str, sweep_dir: Path) -> str:
    try:
        return str(Path(run_dir).resolve().relative_to(sweep_dir.resolve()))
    except ValueError:
        return str(run_dir)


def _finished_before(run_dir: Path, started: float) -> bool:
    result = run_dir / "result.json"
    return result.exists() and result.stat().st_mtime < started
