"""regbench's training loop against a bare hand-written PyTorch loop, same process, same everything.

Both train the same model class on the same MNIST-1D tensors with the same batch size and
optimizer. Two ratios are printed:
- train steps/s: time inside the training loops only (regbench's ``train_time_s``);
- wall: whole runs, where regbench also evaluates train and val each epoch, checkpoints
  atomically and writes metrics; the bare loop evaluates val once per epoch.
Target (issue #2): train-step ratio ≥ 0.90 for mlp and cnn1d on CPU.

    python benchmarks/overhead.py [--epochs 20] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from regbench import build
from regbench.config import compose
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
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
        train_s += time.perf_counter() - t0
        evaluate(model, data.x_val, data.y_val, 2000)
    return train_s, time.perf_counter() - wall, steps


def regbench_loop(cfg) -> tuple[float, float, int]:
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        result = train(cfg, d)
    return result["train_time_s"], time.perf_counter() - wall, result["steps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--models", default="mlp,cnn1d")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.epochs} epochs, median of {args.repeats}")
    print(f"{'model':8} {'bare steps/s':>13} {'regbench steps/s':>17} {'ratio':>6}   {'bare wall s':>11} {'regbench wall s':>15} {'ratio':>6}")
    for model in args.models.split(","):
        cfg = compose([f"model={model}", f"trainer.max_epochs={args.epochs}", "trainer.early_stopping.patience=null",
                       "logger=none", "trainer.progress=false", "trainer.device=cpu"])
        bare, ours = [], []
        for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both alike
            bare.append(bare_loop(cfg, args.epochs))
            ours.append(regbench_loop(cfg))
        b_sps = statistics.median(s / t for t, _, s in bare)
        o_sps = statistics.median(s / t for t, _, s in ours)
        b_wall = statistics.median(w for _, w, _ in bare)
        o_wall = statistics.median(w for _, w, _ in ours)
        print(f"{model:8} {b_sps:13.1f} {o_sps:17.1f} {o_sps / b_sps:6.2f}   {b_wall:11.2f} {o_wall:15.2f} {b_wall / o_wall:6.2f}")


if __name__ == "__main__":
    main()
