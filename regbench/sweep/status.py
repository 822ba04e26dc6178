"""`regbench status SWEEP_DIR`: how many runs of a sweep are completed, running, failed, pending.

Statuses (see :func:`regbench.sweep.results.run_status`):

- completed / diverged / failed: the run's ``result.json`` says so (failed runs also hold the error);
- running: a job holds the run dir now (its ``.running`` marker names a live process);
- interrupted: a checkpoint but no job, e.g. after a kill; re-running the sweep command resumes it;
- pending: not started, or started without a checkpoint yet. Jobs of the dir's last sweep
  (``multirun.yaml``) that have no folder yet count here too; for a sampling sweeper (Optuna)
  these are its ``n_trials`` minus the runs on disk.
"""

from __future__ import annotations

from pathlib import Path

from regbench.console import console
from regbench.records import Status
from regbench.sweep.results import format_counts, load_runs, print_failures, status_counts


def count(sweep_dir: Path, runs=None) -> dict[str, int]:
    """Runs per status, every status present (0 when none)."""
    from regbench.sweep.jobs import expected_count, expected_jobs, load_multirun

    runs = load_runs(sweep_dir) if runs is None else runs
    counts = status_counts(runs)
    cfg = load_multirun(sweep_dir)
    if cfg is not None and expected_jobs(cfg) is None:  # sampled jobs: only their number is known
        n_trials = expected_count(cfg) or 0
        counts[Status.PENDING] += max(0, n_trials - len(runs))
    return counts


def main(ns) -> int:
    sweep_dir = Path(ns.sweep_dir)
    out = console()
    runs = load_runs(sweep_dir)
    out.print(f"{sweep_dir}: {format_counts(count(sweep_dir, runs))}", soft_wrap=True, markup=False)
    from regbench.sweep.slurm import slurm_view

    for line in slurm_view(sweep_dir):  # a sweep sent by `regbench submit`: its jobs as SLURM sees them
        out.print(line, soft_wrap=True, markup=False)
    if not runs.empty:
        print_failures(runs, out)
        for _, row in runs[runs["status"] == Status.INTERRUPTED].iterrows():
            out.print(f"  interrupted {row['run_dir']}: resumes from its checkpoint when the sweep command is re-run",
                      soft_wrap=True, markup=False)
    return 0
