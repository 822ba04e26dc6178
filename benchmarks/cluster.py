"""A sweep on a real SLURM cluster: `regbench submit`'s time to return, and the whole sweep's wall time (issue #30).

Needs a cluster (``tests/slurm/cluster.sh up`` brings up the project's one-node cluster on localhost). Every column is
the real command in a fresh process:

- submit: ``regbench submit`` of a ``--runs``-run sweep (seeds of the MLP, 1 epoch, logger=none), timed from start to
  exit, stacked (``stack=auto``: a task per stack) and with ``stack=1`` (a task per run); the jobs are cancelled
  at once (only the time to return is measured). Target: ≤ 5 s for 256 runs.
- wall: the same ``--wall-runs``-run sweep (``--epochs`` epochs) from command to last result, with the basic launcher
  (in this process, one after another), with ``hydra/launcher=slurm`` (regbench's launcher, blocking: a task per
  stack, and it returns when the last task ends), and with ``regbench submit`` followed until every task has ended
  (sacct), each stacked as the command plans it.

The last lines are ``cluster submit <runs> runs: <seconds> s`` and ``cluster wall slurm/basic: <ratio>x``.

    python benchmarks/cluster.py [--quick] [--runs 256] [--wall-runs 16] [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE = ["model=mlp", "logger=none", "trainer.progress=false", "dataset.n_train=500", "trainer.early_stopping.patience=null"]


def regbench(*args: str, cwd: Path) -> float:
    """Seconds from start to exit of ``regbench ARGS`` (fails loudly when it does)."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "regbench", *args], cwd=cwd, capture_output=True, text=True,
                         env={**os.environ, "WANDB_MODE": "offline"})
    if out.returncode:
        sys.exit(f"regbench {' '.join(args[:3])} ... failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return time.perf_counter() - start


def array_of(sweep_dir: Path) -> str:
    return json.loads((sweep_dir / ".regbench-submitted.json").read_text())["array_job_id"]


def ended(array: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-r", "-j", array, "-o", "%i"], capture_output=True, text=True)
    return not out.stdout.split()


def submit_time(runs: int, stack: str, folder: Path) -> float:
    sweep_dir = folder / f"submit-{runs}-{stack}"
    took = regbench("submit", f"seed=range({runs})", "trainer.max_epochs=1", f"stack={stack}", *BASE,
                    f"hydra.sweep.dir={sweep_dir}", cwd=folder)
    subprocess.run(["scancel", array_of(sweep_dir)], check=True)
    return took


def wall(column: str, runs: int, epochs: int, folder: Path) -> float:
    sweep_dir = folder / f"wall-{column}"
    args = [f"seed=range({runs})", f"trainer.max_epochs={epochs}", *BASE, f"hydra.sweep.dir={sweep_dir}"]
    if column == "basic":
        return regbench("run", "-m", *args, cwd=folder)
    if column == "slurm":
        return regbench("run", "-m", *args, "hydra/launcher=slurm", cwd=folder)
    start = time.perf_counter()
    regbench("submit", *args, cwd=folder)
    array = array_of(sweep_dir)
    while not ended(array):
        time.sleep(0.5)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=256, help="runs of the submitted sweep whose time to return is timed")
    parser.add_argument("--wall-runs", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="8 runs submitted, 2 runs of 1 epoch: checks every column runs")
    args = parser.parse_args()
    if shutil.which("sbatch") is None or subprocess.run(["sinfo", "-h"], capture_output=True).returncode:
        sys.exit("no SLURM cluster answers here: `bash tests/slurm/cluster.sh up` brings up the project's local one")
    runs, wall_runs, epochs = (8, 2, 1) if args.quick else (args.runs, args.wall_runs, args.epochs)
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as d:  # under the cwd: the cluster's jobs must see it
        folder = Path(d)
        stacked, alone = submit_time(runs, "auto", folder), submit_time(runs, "1", folder)
        print(f"submit {runs} runs: {stacked:5.1f} s stacked (a task per stack), {alone:5.1f} s with stack=1 (a task per run)",
              flush=True)
        walls = {column: wall(column, wall_runs, epochs, folder) for column in ("basic", "slurm", "submit")}
        print(f"wall of {wall_runs} runs × {epochs} epochs: " +
              ", ".join(f"{c} {w:.1f} s" for c, w in walls.items()), flush=True)
    print(f"cluster submit {runs} runs: {stacked:.1f} s   (target ≤ 5 s)")
    print(f"cluster wall slurm/basic: {walls['slurm'] / walls['basic']:.2f}x   (submit and wait: "
          f"{walls['submit'] / walls['basic']:.2f}x)")


if __name__ == "__main__":
    main()
