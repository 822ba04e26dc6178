"""Runs/hour of one sweep trained sequentially, with joblib, stacked, and stacked under joblib (issue #10).

The sweep: 16 seeds of one model on MNIST-1D, 60 epochs, early stopping off, local files only
(logger=none). Every column is the real command, `regbench run -m seed=0,...,15 model=<model> ...`, in a
fresh process, timed from start to exit (start-up, pre-check, Hydra, training, tables), so the ratios are
what a user's study gains:

- sequential: ``stack=1`` (every run alone), Hydra's basic launcher;
- joblib: ``stack=1 hydra/launcher=joblib`` (one job per core, each limited to its share of the threads);
- stacked: ``stack=auto`` (the 16 runs train as one stack);
- stacked+joblib: ``stack=auto hydra/launcher=joblib`` (one stack per worker).

Targets on the 2-core CPU of issue #10: stacked ≥ 3× sequential for mlp, ≥ 2× for cnn1d. It runs
unchanged on CUDA (trainer.device=auto). The last lines are ``stacked speedup <model>: <ratio>x``; with
``--repeats N`` the columns run N times in turn and the speedup is the median of the N rounds' ratios (a
VM whose speed drifts by 10-30% within minutes moves one round's ratio by as much).

    python benchmarks/stacked.py [--quick] [--models mlp cnn1d] [--seeds 16] [--epochs 60] [--repeats 1]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = {
    "sequential": ["stack=1"],
    "joblib": ["stack=1", "hydra/launcher=joblib"],
    "stacked": ["stack=auto"],
    "stacked+joblib": ["stack=auto", "hydra/launcher=joblib"],
}


def sweep_seconds(model: str, seeds: int, epochs: int, column: list[str], root: Path) -> float:
    """Wall time of the whole `regbench run -m` command."""
    command = [sys.executable, "-m", "regbench", "run", "-m", f"seed={','.join(map(str, range(seeds)))}",
               f"model={model}", f"trainer.max_epochs={epochs}", "trainer.early_stopping.patience=null",
               "logger=none", "trainer.progress=false", "trainer.device=auto", *column, f"hydra.sweep.dir={root}"]
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, cwd=root.parent)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    stacked = "stack=auto" in column
    if stacked and " runs train in " not in out.stdout:
        sys.exit(f"the stacked column did not stack:\n{out.stdout[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 seeds, 3 epochs: a smoke test")
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn1d"])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all columns; the speedup is their median")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs = 4, 3
    print(f"{args.seeds} seeds × {args.epochs} epochs, MNIST-1D, early stopping off, whole `regbench run -m` commands")
    print(f"{'model':8s}" + "".join(f"{c + ' runs/h':>22s}" for c in COLUMNS) + "   seconds per column")
    speedups = {}
    for model in args.models:
        rounds = []
        for _ in range(args.repeats):
            seconds = {}
            for name, column in COLUMNS.items():
                with tempfile.TemporaryDirectory() as root:
                    seconds[name] = sweep_seconds(model, args.seeds, args.epochs, column, Path(root) / "sweep")
            rate = {name: 3600 * args.seeds / s for name, s in seconds.items()}
            rounds.append(rate["stacked"] / rate["sequential"])
            print(f"{model:8s}" + "".join(f"{rate[c]:22.0f}" for c in COLUMNS)
                  + "   " + " / ".join(f"{seconds[c]:.1f}" for c in COLUMNS), flush=True)
        speedups[model] = rounds
    for model, rounds in speedups.items():
        spread = f" (median of {len(rounds)} rounds: {', '.join(f'{r:.2f}' for r in rounds)})" if len(rounds) > 1 else ""
        print(f"stacked speedup {model}: {statistics.median(rounds):.2f}x{spread}")


if __name__ == "__main__":
    main()
