"""Runs/hour of one sweep trained sequentially and stacked (issue #10).

The sweep: 16 seeds of one model on MNIST-1D, 60 epochs, early stopping off, local files only
(logger=none), every run writing its run dir as `regbench run` does. Columns:
- sequential: ``regbench.train.train`` on each configuration, one after another, in this process;
- stacked: ``regbench.stack.train_stacked`` on all of them (stacks sized by ``max_stack_size``);
- (joblib and stacked-under-joblib columns: added with the sweep wiring, see ``JOBLIB_COLUMNS``.)
Targets on the 2-core CPU of issue #10: stacked ≥ 3× sequential for mlp, ≥ 2× for cnn1d.
It runs unchanged on CUDA (trainer.device=auto).

    python benchmarks/stacked.py [--quick] [--models mlp cnn1d] [--seeds 16] [--epochs 60] [--threads 1]

``--threads`` sets trainer.num_threads for both columns (default 1: on a machine shared with other
work, a second thread spinning on a busy core slows small models down several times).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from regbench.config import compose
from regbench.stack import train_stacked
from regbench.train import train

#: Columns to add once the sweep path launches stacks (name → function(cfgs, root) → seconds).
JOBLIB_COLUMNS: dict = {}


def configs(model: str, seeds: int, epochs: int, threads: int) -> list:
    overrides = [f"model={model}", f"trainer.max_epochs={epochs}", "trainer.early_stopping.patience=null",
                 "logger=none", "trainer.progress=false", f"trainer.num_threads={threads}", "trainer.device=auto"]
    return [compose([*overrides, f"seed={s}"]) for s in range(seeds)]


def sequential(cfgs, root: Path) -> float:
    start = time.perf_counter()
    for i, cfg in enumerate(cfgs):
        train(cfg, root / f"seed{i}")
    _sync()
    return time.perf_counter() - start


def stacked(cfgs, root: Path) -> float:
    start = time.perf_counter()
    results = train_stacked(cfgs, [root / f"seed{i}" for i in range(len(cfgs))])
    _sync()
    assert all(r["status"] == "completed" and r["stacked"] >= 1 for r in results), results
    return time.perf_counter() - start


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 seeds, 3 epochs: a smoke test")
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn1d"])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs = 4, 3
    columns = {"sequential": sequential, "stacked": stacked, **JOBLIB_COLUMNS}
    with tempfile.TemporaryDirectory() as root:  # untimed: data cache, imports (deterministic mode pulls in dynamo)
        warm = configs(args.models[0], 2, 1, args.threads)
        sequential(warm[:1], Path(root) / "seq")
        stacked(warm, Path(root) / "stack")
    print(f"{args.seeds} seeds × {args.epochs} epochs, MNIST-1D, early stopping off, threads={args.threads}")
    print(f"{'model':8s}" + "".join(f"{c + ' runs/h':>20s}" for c in columns) + f"{'seconds (seq / stacked)':>28s}")
    speedups = {}
    for model in args.models:
        cfgs = configs(model, args.seeds, args.epochs, args.threads)
        seconds = {}
        for name, fn in columns.items():
            with tempfile.TemporaryDirectory() as root:
                seconds[name] = fn(cfgs, Path(root))
        rate = {name: 3600 * len(cfgs) / s for name, s in seconds.items()}
        speedups[model] = rate["stacked"] / rate["sequential"]
        print(f"{model:8s}" + "".join(f"{rate[c]:20.0f}" for c in columns)
              + f"{seconds['sequential']:15.1f} / {seconds['stacked']:.1f}", flush=True)
    for model, ratio in speedups.items():
        print(f"stacked speedup {model}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
