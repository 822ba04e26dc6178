"""Runs/hour of one sweep trained sequentially, with joblib, stacked, and stacked under joblib (issue #10).

The sweep: 16 seeds of one model on its dataset (mlp, cnn1d: MNIST-1D; cnn, the 2-D image CNN: digits), 60
epochs, early stopping off, local files only (logger=none). Every column is the real command,
`regbench run -m seed=0,...,15 model=<model> dataset=<dataset> ...`, in a fresh process, timed from start to
exit (start-up, pre-check, Hydra, training, tables), so the ratios are what a user's study gains:

- sequential: ``stack=1`` (every run alone), Hydra's basic launcher;
- joblib: ``stack=1 hydra/launcher=joblib`` (one job per core, each limited to its share of the threads);
- stacked: ``stack=auto`` (the 16 runs train as one stack);
- stacked+joblib: ``stack=auto hydra/launcher=joblib`` (one stack per worker).

Targets on the 2-core CPU of issue #10: stacked ≥ 3× sequential for mlp, ≥ 2× for cnn1d; issue #33: ≥ 2×
for cnn on digits with 8 seeds and the trainer's own early stopping (``--models cnn --seeds 8 --epochs 150
--early-stopping --columns sequential stacked``: its done-when command). It runs unchanged on CUDA
(trainer.device=auto). Each column's mean test accuracy is printed with its 95% interval over the seeds, and
the paired stacked − sequential difference (the same seeds) with its own. The last lines are ``stacked speedup
<model>: <ratio>x``; with ``--repeats N`` the columns run N times in turn and the speedup is the median of the
N rounds' ratios (a VM whose speed drifts by 10-30% within minutes moves one round's ratio by as much).

    python benchmarks/stacked.py [--quick] [--models mlp cnn1d cnn] [--seeds 16] [--epochs 60] [--repeats 1]
                                 [--early-stopping] [--columns sequential joblib stacked stacked+joblib]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATASETS = {"mlp": "mnist1d", "cnn1d": "mnist1d", "cnn": "digits"}  # each model's row trains on this dataset

COLUMNS = {
    "sequential": ["stack=1"],
    "joblib": ["stack=1", "hydra/launcher=joblib"],
    "stacked": ["stack=auto"],
    "stacked+joblib": ["stack=auto", "hydra/launcher=joblib"],
}


def sweep_seconds(model: str, seeds: int, epochs: int, column: list[str], root: Path,
                  early_stopping: bool = False) -> tuple[float, dict[int, float]]:
    """Wall time of the whole `regbench run -m` command, and each seed's test accuracy."""
    command = [sys.executable, "-m", "regbench", "run", "-m", f"seed={','.join(map(str, range(seeds)))}",
               f"model={model}", f"dataset={DATASETS.get(model, 'mnist1d')}", f"trainer.max_epochs={epochs}",
               *([] if early_stopping else ["trainer.early_stopping.patience=null"]),
               "logger=none", "trainer.progress=false", "trainer.device=auto", *column, f"hydra.sweep.dir={root}"]
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, cwd=root.parent)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    stacked = "stack=auto" in column
    if stacked and " runs train in " not in out.stdout:
        sys.exit(f"the stacked column did not stack:\n{out.stdout[-2000:]}")
    if stacked and "trains under vmap" in out.stdout + out.stderr:
        print(f"  ({model}: a stack trained under vmap, not folded)", flush=True)
    results = [json.loads(p.read_text()) for p in root.glob("*/result.json")]
    return seconds, {r["seed"]: r["test_acc"] for r in results}


def interval(values: list[float]) -> str:
    """Mean and 95% interval over the seeds (t on n − 1 degrees of freedom)."""
    from regbench.report.effects import t_inference

    if len(values) < 2:
        return f"{values[0]:.4f}" if values else "-"
    ci = t_inference(statistics.mean(values), statistics.stdev(values) / math.sqrt(len(values)), len(values) - 1)
    return f"{ci['estimate']:.4f} [{ci['low']:.4f}, {ci['high']:.4f}]"


def agreement(accs: dict[str, dict[int, float]]) -> str:
    """Each column's test accuracy over the seeds, and the paired stacked − sequential difference."""
    line = "; ".join(f"{name} {interval(list(a.values()))}" for name, a in accs.items())
    if "stacked" in accs and "sequential" in accs:
        seeds = sorted(accs["stacked"].keys() & accs["sequential"].keys())
        line += f"; stacked − sequential {interval([accs['stacked'][s] - accs['sequential'][s] for s in seeds])}"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 seeds, 3 epochs: a smoke test")
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn1d", "cnn"])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all columns; the speedup is their median")
    parser.add_argument("--early-stopping", action="store_true", help="keep the trainer's early stopping (default: off)")
    parser.add_argument("--columns", nargs="+", default=list(COLUMNS), choices=list(COLUMNS),
                        help="which columns to run (sequential and stacked give the speedup)")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs = 4, 3
    columns = {c: COLUMNS[c] for c in args.columns}
    stopping = "the trainer's early stopping" if args.early_stopping else "early stopping off"
    print(f"{args.seeds} seeds × {args.epochs} epochs, {stopping}, whole `regbench run -m` commands")
    print(f"{'model':8s}" + "".join(f"{c + ' runs/h':>22s}" for c in columns) + "   seconds per column")
    speedups = {}
    for model in args.models:
        rounds = []
        for _ in range(args.repeats):
            seconds, accs = {}, {}
            for name, column in columns.items():
                with tempfile.TemporaryDirectory() as root:
                    seconds[name], accs[name] = sweep_seconds(model, args.seeds, args.epochs, column,
                                                              Path(root) / "sweep", args.early_stopping)
            rate = {name: 3600 * args.seeds / s for name, s in seconds.items()}
            if "stacked" in rate and "sequential" in rate:
                rounds.append(rate["stacked"] / rate["sequential"])
            print(f"{model:8s}" + "".join(f"{rate[c]:22.0f}" for c in columns)
                  + "   " + " / ".join(f"{seconds[c]:.1f}" for c in columns), flush=True)
            print(f"  test_acc, mean [95% interval]: {agreement(accs)}", flush=True)
        if rounds:
            speedups[model] = rounds
    for model, rounds in speedups.items():
        spread = f" (median of {len(rounds)} rounds: {', '.join(f'{r:.2f}' for r in rounds)})" if len(rounds) > 1 else ""
        print(f"stacked speedup {model}: {statistics.median(rounds):.2f}x{spread}")


if __name__ == "__main__":
    main()
