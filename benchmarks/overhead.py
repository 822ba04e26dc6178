"""regbench's training loop against a bare hand-written PyTorch loop, same process, same everything.

Both train the same model class on the same MNIST-1D tensors with the same batch size and
optimizer. Two ratios are printed:
- train steps/s: time inside the training loops only (regbench's ``train_time_s``);
- wall: whole runs, where regbench also evaluates train and val each epoch, checkpoints
  atomically and writes metrics; the bare loop evaluates val once per epoch.
Target (issue #2): train-step ratio ≥ 0.90 for mlp and cnn1d on CPU; (issue #11) wall ratio ≥ 0.95.

Then the fixed costs, in fresh processes as a user pays them (skip with --no-fixed):
- start-up: `regbench run model=mlp trainer.max_epochs=1` outside its own training, over a bare script that
  imports torch and builds the same model and Adam optimizer (target: ≤ 1.0 s more);
- per-run sweep overhead: an 8-seed one-epoch sweep over a 1-seed one, per extra run, less the runs' own
  training and evaluation, with logger=none and with W&B offline (targets: ≤ 0.15 s and ≤ 0.3 s).

    python benchmarks/overhead.py [--epochs 20] [--repeats 5] [--threads N] [--no-fixed]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from regbench import build
from regbench.config import compose
from regbench.process import flush_denormals
from regbench.train import evaluate, train


def bare_loop(cfg, epochs: int) -> tuple[float, float, int]:
    """The loop a researcher writes by hand: returns (train seconds, wall seconds, steps)."""
    wall = time.perf_counter()
    torch.manual_seed(cfg.seed)
    data = build.build_data(cfg.dataset, cfg.seed)
    torch.manual_seed(cfg.seed)
    model = build.build_model(cfg.model, data.input_shape, data.num_classes, [])
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optimizer.lr)
    n, bs = len(data.x_train), cfg.trainer.batch_size
    train_s, steps = 0.0, 0
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            if len(idx) < 2:
                continue  # as regbench does (BatchNorm cannot train on one example): the same steps in both loops
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
        train_s += time.perf_counter() - t0
        evaluate(model, data.x_val, data.y_val, 2000)
    return train_s, time.perf_counter() - wall, steps


def regbench_loop(cfg) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as d:  # removing the run's folder afterwards is the benchmark's, not the run's
        wall = time.perf_counter()
        result = train(cfg, d)
        wall = time.perf_counter() - wall
    return result["train_time_s"], wall, result["steps"]


BARE_SCRIPT = """
import torch
from torch import nn
model = nn.Sequential(nn.Flatten(), nn.Linear(40, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10))
torch.optim.Adam(model.parameters(), lr=1e-2)
"""


def timed(cmd: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, env={**os.environ, "WANDB_MODE": "offline"})
    return time.perf_counter() - start


def in_run_seconds(folder: Path) -> float:
    """The runs' own time (training, evaluation, checkpoints: result.json's wall_time_s), summed."""
    return sum(json.loads(p.read_text())["wall_time_s"] for p in folder.glob("**/result.json"))


def fixed_costs(repeats: int) -> None:
    run = [sys.executable, "-m", "regbench", "run", "model=mlp", "trainer.max_epochs=1", "trainer.progress=false"]
    startup, sweep_none, sweep_wandb = [], [], []
    with tempfile.TemporaryDirectory() as d:
        for i in range(repeats):
            bare = timed([sys.executable, "-c", BARE_SCRIPT], d)
            ours = timed([*run, "logger=none", f"hydra.run.dir={d}/single{i}"], d) - in_run_seconds(Path(d) / f"single{i}")
            startup.append(ours - bare)
            for logger, out in (("none", sweep_none), ("wandb", sweep_wandb)):
                one, eight = Path(d) / f"{logger}1-{i}", Path(d) / f"{logger}8-{i}"
                # stack=1: every run alone, so each run's own time is its result's wall_time_s
                sweep = [*run, "-m", "stack=1", f"logger={logger}"]
                t1 = timed([*sweep, "seed=0", f"hydra.sweep.dir={one}"], d) - in_run_seconds(one)
                t8 = timed([*sweep, "seed=0,1,2,3,4,5,6,7", f"hydra.sweep.dir={eight}"], d) - in_run_seconds(eight)
                out.append((t8 - t1) / 7)
    print(f"start-up over a bare torch script (model + Adam): {statistics.median(startup):+.2f} s   (target ≤ 1.0 s)")
    print(f"sweep overhead per run, logger=none: {statistics.median(sweep_none):.2f} s   (target ≤ 0.15 s)")
    print(f"sweep overhead per run, W&B offline: {statistics.median(sweep_wandb):.2f} s   (target ≤ 0.3 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--models", default="mlp,cnn1d")
    parser.add_argument("--no-fixed", dest="fixed", action="store_false", help="skip the start-up and sweep figures")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    flush_denormals()  # as `regbench run` does, before torch's threads start: both loops under the same arithmetic
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.epochs} epochs, median of {args.repeats} interleaved pairs")
    print(f"{'model':8} {'bare steps/s':>13} {'regbench steps/s':>17} {'ratio':>6}   {'bare wall s':>11} {'regbench wall s':>15} {'ratio':>6}")
    for model in args.models.split(","):
        cfg = compose([f"model={model}", f"trainer.max_epochs={args.epochs}", "trainer.early_stopping.patience=null",
                       "logger=none", "trainer.progress=false", "trainer.device=cpu"])
        bare, ours = [], []
        for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both alike
            bare.append(bare_loop(cfg, args.epochs))
            ours.append(regbench_loop(cfg))
        b_sps, o_sps = ([s / t for t, _, s in runs] for runs in (bare, ours))
        b_wall, o_wall = ([w for _, w, _ in runs] for runs in (bare, ours))
        # The ratios are medians of each repeat's pair (run back to back), which cancels drifts in machine load
        # that a ratio of the two medians would keep; the absolute columns are the medians.
        step_ratio = statistics.median(o / b for o, b in zip(o_sps, b_sps))
        wall_ratio = statistics.median(b / o for o, b in zip(o_wall, b_wall))
        print(f"{model:8} {statistics.median(b_sps):13.1f} {statistics.median(o_sps):17.1f} {step_ratio:6.2f}   "
              f"{statistics.median(b_wall):11.2f} {statistics.median(o_wall):15.2f} {wall_ratio:6.2f}")
    if args.fixed:
        fixed_costs(args.repeats)


if __name__ == "__main__":
    main()
