"""Images/s of regbench's loop against a bare hand-written loop with the same settings, on CIFAR-10-shaped data:
fp32, bf16 autocast, bf16 + channels-last, bf16 + torch.compile, for resnet18 and cnn, in one run.

Data: CIFAR-10 when its files are in $REGBENCH_DATA (or ./data), else random uint8 images of its shape
(``dataset=synthetic``: speed does not depend on what the pixels show). Runs unchanged on a CUDA
machine (device=auto); on a CPU use ``--quick`` (few images, narrow nets), where it checks that every
mode runs rather than measuring a GPU.

    python benchmarks/gpu.py [--quick] [--batch 512] [--epochs 2] [--models resnet18,cnn] [--modes ...]
                             [--n-train N] [--budget-s S]

Each mode trains ``--epochs`` epochs; the first epoch of a compiled mode is compile time and is left out
(regbench reports it as compile_time_s), so images/s is steady-state training for both loops. Clocks
are read after the device has finished (torch.cuda.synchronize, or .item() in regbench's loop). ``--budget-s``
bounds the run (a lent GPU's minutes): no model and mode starts once that many seconds have passed, and the rows
left out are named.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import traceback

import torch
import torch.nn.functional as F

from regbench import build
from regbench.build import resolve_device
from regbench.config import compose
from regbench.train import train

MODES = {  # name: (precision, channels_last, compile)
    "fp32": (32, False, False),
    "bf16": ("bf16", False, False),
    "bf16+channels_last": ("bf16", True, False),
    "bf16+compile": ("bf16", False, True),
}


def narrow(model: str) -> list[str]:
    """--quick's narrow nets (a CPU smoke run): resnet18 at width 8, the cnn at 8 channels and a 32-unit layer."""
    return ["model.width=8"] if model == "resnet18" else ["model.channels=8", "model.width=32"]


def cifar_shaped(quick: bool, n_train: int | None = None) -> list[str]:
    """The data overrides: CIFAR-10 when its files are there, else ``dataset=synthetic`` of its shape; ``n_train``
    training examples if given; with ``quick`` a synthetic draw of 300 training and 10 test images."""
    try:
        build.check_data(compose(["dataset=cifar10"]).dataset)
        data = ["dataset=cifar10"]
    except Exception:
        data = ["dataset=synthetic"]
    if n_train is not None:
        data.append(f"dataset.n_train={n_train}")
    if quick and data[0].endswith("synthetic"):
        data += ["dataset.train_size=300", "dataset.test_size=10"]
    return data


def config(model: str, mode: str, args, data: list[str]):
    precision, channels_last, compiled = MODES[mode]
    shrink = narrow(model) if args.quick else []
    return compose([*data, f"model={model}", *shrink, f"trainer.batch_size={args.batch}", f"trainer.max_epochs={args.epochs}",
                    "trainer.early_stopping.patience=null", "trainer.train_eval_size=1", "logger=none", "trainer.progress=false",
                    "optimizer=sgd", "optimizer.lr=0.01", f"trainer.precision={precision}",
                    f"trainer.channels_last={str(channels_last).lower()}", f"trainer.compile={str(compiled).lower()}",
                    "trainer.deterministic=false"])


def failure(e: Exception) -> str:
    """A row's text for a step that raised (its traceback printed): ``failed: <type>: <the message's last line>``."""
    traceback.print_exc()
    return f"failed: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[-1]}"


def past_budget(budget_s: float | None, begun: float) -> str | None:
    """A left-out row's text once ``--budget-s`` seconds have passed since ``begun`` (None before, or without one)."""
    if budget_s is not None and time.perf_counter() - begun > budget_s:
        return f"left out: {budget_s:.0f} s of --budget-s have passed"
    return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_loop(cfg) -> float:
    """The loop one writes by hand with the same settings; steady-state images/s."""
    device = resolve_device(cfg.trainer.device)
    torch.manual_seed(0)
    data = build.build_data(cfg.dataset, 0).to(device)
    model = build.build_model(cfg.model, data.input_shape, data.num_classes, []).to(device)
    x_train, y_train = data.x_train, data.y_train
    if cfg.trainer.channels_last:
        model.to(memory_format=torch.channels_last)
        x_train = x_train.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(model) if cfg.trainer.compile else model
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optimizer.lr)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.trainer.precision == "bf16"
                else contextlib.nullcontext())
    n, bs = len(x_train), cfg.trainer.batch_size
    seconds, images = 0.0, 0
    for epoch in range(cfg.trainer.max_epochs):
        sync(device)
        start = time.perf_counter()
        perm = torch.randperm(n, device=device)
        for i in range(0, n - 1, bs):
            idx = perm[i:i + bs]
            with autocast:
                logits = forward(x_train[idx])
            loss = F.cross_entropy(logits.float(), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(device)
        if epoch > 0 or not cfg.trainer.compile:  # a compiled loop's first epoch is compilation
            seconds += time.perf_counter() - start
            images += n
    return images / seconds


def regbench_loop(cfg) -> float:
    with tempfile.TemporaryDirectory() as d:
        result = train(cfg, d)
    return result["steps"] * cfg.trainer.batch_size / result["train_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few hundred images and narrow nets (a CPU smoke run)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (512; 64 with --quick)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--models", default="resnet18,cnn")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--n-train", type=int, default=None, help="training examples (all 50,000; 256 with --quick)")
    parser.add_argument("--budget-s", type=float, default=None, help="seconds after which no model and mode starts")
    args = parser.parse_args()
    args.batch = args.batch or (64 if args.quick else 512)
    unknown = [m for m in args.modes.split(",") if m not in MODES]
    if unknown:
        parser.error(f"--modes: unknown {', '.join(unknown)} (choose from {', '.join(MODES)})")
    data = cifar_shaped(args.quick, args.n_train or (256 if args.quick else None))
    device = resolve_device("auto")
    print(f"torch {torch.__version__} on {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), "
          f"{data[0]}, batch {args.batch}, {args.epochs} epochs per mode")
    print(f"{'model':10} {'mode':20} {'bare img/s':>11} {'regbench img/s':>15} {'ratio':>6}")
    begun, failed = time.perf_counter(), []
    for model in args.models.split(","):
        for mode in args.modes.split(","):
            if passed := past_budget(args.budget_s, begun):
                print(f"{model:10} {mode:20} {passed}", flush=True)
                continue
            cfg = config(model, mode, args, data)
            try:
                bare, ours = bare_loop(cfg), regbench_loop(cfg)
            except Exception as e:  # one mode that this torch cannot run (compile, say) leaves the others' rows
                failed.append(f"{model} {mode}")
                print(f"{model:10} {mode:20} {failure(e)}", flush=True)
                continue
            print(f"{model:10} {mode:20} {bare:11.0f} {ours:15.0f} {ours / bare:6.2f}", flush=True)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
