"""A search with pruning off and with successive halving, and its trials stacked against one by one (issue #31).

The search: ``experiment=random_search`` (MNIST-1D, MLP 2×100; lr, weight decay and dropout p drawn by Optuna's
seeded random sampler, so every column proposes the same trials), ``--trials`` trials, the trainer's own 150
epochs with early stopping (patience 20), local files only (logger=none), no replication. Every column is the
real command, `regbench run -m experiment=random_search ...`, in a fresh process, timed from start to exit:

- unpruned: ``search.pruner=none``, the study's 10 trials at a time as stacks (``search.batch=10``);
- pruned: ``search.pruner=successive_halving`` (min 5 epochs, reduction factor 3), stacked the same way;
- one by one: ``search.pruner=none search.batch=1 stack=1`` (each trial alone, as a sweeper plugin trains them).

Targets: the pruned search within 1 point of the unpruned best validation accuracy at ≤ 0.5× its epochs; stacked
trials ≥ 2× the trials/hour of one by one. It runs unchanged on CUDA (trainer.device=auto). The last lines are
``search pruned epochs: <ratio>x``, ``search pruned best: <Δ> points`` and ``search stacked speedup: <ratio>x``.

    python benchmarks/search.py [--quick] [--trials 20] [--columns unpruned pruned one-by-one]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = {
    "unpruned": ["search.pruner=none"],
    "pruned": ["search.pruner=successive_halving", "search.min_epochs=5"],
    "one-by-one": ["search.pruner=none", "search.batch=1", "stack=1"],
}


def run(column: str, trials: int, extra: list[str], folder: Path) -> dict:
    sweep_dir = folder / column
    cmd = [sys.executable, "-m", "regbench", "run", "-m", "experiment=random_search", "logger=none",
           "trainer.progress=false", f"search.n_trials={trials}", "search.replicate_seeds=[]",
           "search.replicate_default=false", *COLUMNS[column], *extra, f"hydra.sweep.dir={sweep_dir}"]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=folder, check=True, capture_output=True, env={**os.environ, "WANDB_MODE": "offline"})
    wall = time.perf_counter() - start
    summary = json.loads((sweep_dir / "search.json").read_text())
    return {"wall": wall, "epochs": summary["epochs_trained"], "best": summary["best"]["value"],
            "pruned": summary["pruned"], "completed": summary["completed"], "trials": summary["n_trials"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--columns", nargs="+", default=list(COLUMNS), choices=list(COLUMNS))
    parser.add_argument("--quick", action="store_true", help="4 trials of 6 epochs on 200 examples: checks every column runs")
    args = parser.parse_args()
    extra = ["trainer.max_epochs=6", "dataset.n_train=200", "search.min_epochs=1"] if args.quick else []
    trials = 4 if args.quick else args.trials
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for column in args.columns:
            out[column] = r = run(column, trials, extra, Path(d))
            print(f"{column:>11}: {r['wall']:7.1f} s  {3600 * r['trials'] / r['wall']:7.0f} trials/hour  "
                  f"{r['epochs']:5d} epochs  best val_acc {r['best']:.4f}  ({r['completed']} completed, {r['pruned']} pruned)",
                  flush=True)
    if "unpruned" in out and "pruned" in out:
        a, b = out["unpruned"], out["pruned"]
        print(f"search pruned epochs: {b['epochs'] / a['epochs']:.2f}x   (target ≤ 0.5x)")
        print(f"search pruned best: {100 * (b['best'] - a['best']):+.1f} points   (target within 1 point)")
    if "unpruned" in out and "one-by-one" in out:
        print(f"search stacked speedup: {out['one-by-one']['wall'] / out['unpruned']['wall']:.2f}x   (target ≥ 2x)")


if __name__ == "__main__":
    main()
