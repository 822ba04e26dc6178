"""Images/s and runs/hour of K runs on one device: one after another, as stacks, and as K processes side by side
(issue #33), for K = 1, 2, 4, ... up to ``--max-k`` or the first K that does not fit in device memory.

The runs: seeds 0..K-1 of one model (``cnn``, ``resnet18``) on CIFAR-10-shaped data (CIFAR-10 when its files are
in $REGBENCH_DATA or ./data, else ``dataset=synthetic``: random images of its shape, speed does not depend on
what the pixels show), ``--epochs`` epochs on ``--n-train`` examples, early stopping off, ``logger=none``, in
fp32 and bf16 (``trainer.precision=bf16``). Every row is K and three columns:

- sequential: the K runs one after another, ``regbench.train.train(cfg, run_dir)`` in this process;
- stacked: the K runs with ``regbench.stack.train_stacked(cfgs, run_dirs)`` (one stack, or several where
  regbench splits it to fit the device: the row says so). A configuration that cannot stack shows the reason
  ``why_not_stackable`` gives in its cell;
- side by side: K processes at once, each ``python -m regbench run seed=i ...`` with the same overrides in its
  own run dir, started together; their time is the span from the earliest run's start of training (its
  config.yaml, written once the run is built, just before its first epoch) to the latest run's end (its
  result.json, written after its final evaluation), from the files' times, so that the processes' start-up,
  imports, pre-check and data loading are not counted (result.json's finished_at has whole seconds only).

images/s = examples trained (steps × batch size, summed over the K runs) / seconds; runs/hour = K / seconds ×
3600. For sequential and stacked the seconds are the wall time of the training calls in this process (building
each run included, composing its configuration not), read after torch.cuda.synchronize() on CUDA; a solo run of
one epoch per model and precision warms the process up first (CUDA context, kernels, the dataset in memory). A
column that runs out of device memory (torch.cuda.OutOfMemoryError, or a side-by-side process that does) reads
"does not fit", and K stops doubling there. The last lines are ``gpu stacked speedup <model>: <ratio>x``:
fp32 stacked images/s over fp32 sequential at the largest K where both ran, with the ratio over side by side.
``--sequential-runs N`` times the sequential column on seeds 0..N-1 only (the row says so): runs one after another
are the same work each, so their rate does not depend on K, and the time goes to the columns where K matters.
A row's note gives the largest difference between a seed's final train_loss stacked and alone (the stack trained
each member as its solo run does, to float tolerance). ``--budget-s`` bounds the whole run (a lent GPU's minutes):
each model and precision gets an equal share of what is left, and K stops doubling before a row that would pass its
share (a row takes about twice the one before it); a model and precision that starts after the budget has passed is
left out: the run passes its budget by at most the warm-up and first row of the last one begun.

Targets (#33): stacked ≥ 4× sequential for cnn at the largest K that fits, and ahead of K processes side by side.
Runs unchanged on a CUDA machine (trainer.device=auto). On a CPU use ``--quick`` (K up to 2, 256 images, narrow
nets, 1 epoch, batch 64): it checks that every column runs rather than measuring a GPU.

    python benchmarks/gpu_stacked.py [--quick] [--models cnn,resnet18] [--precisions fp32,bf16] [--max-k 64]
                                     [--epochs 2] [--batch 128] [--n-train 10000] [--sequential-runs N]
                                     [--budget-s S]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from gpu import cifar_shaped, failure, narrow, past_budget, sync  # benchmarks/gpu.py, beside this script
from regbench.build import resolve_device
from regbench.config import compose
from regbench.stack import train_stacked, why_not_stackable
from regbench.train import train

PRECISIONS = {"fp32": "32", "bf16": "bf16"}  # name: trainer.precision
DOES_NOT_FIT = "does not fit"


class Cell:
    """One column of a row: its images/s and runs/hour, or the text it shows instead (a reason, does not fit)."""

    def __init__(self, images: int = 0, seconds: float = 0.0, runs: int = 0, text: str | None = None, note: str = "",
                 losses: list[float] = ()):
        self.images, self.seconds, self.runs, self.text, self.note = images, seconds, runs, text, note
        self.losses = list(losses)  # each run's final train_loss, by seed

    @property
    def measured(self) -> bool:
        return self.text is None

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds

    def __str__(self) -> str:
        if not self.measured:
            return f"{self.text:>23}"
        return f"{self.images_per_s:11.0f} {3600 * self.runs / self.seconds:11.0f}"


def overrides(model: str, precision: str, args, data: list[str]) -> list[str]:
    """The overrides of every run of a row (its seed apart), for compose and for the command line alike."""
    shrink = narrow(model) if args.quick else []
    return [*data, f"model={model}", *shrink, f"trainer.max_epochs={args.epochs}", "trainer.early_stopping.patience=null",
            "logger=none", "trainer.progress=false", "trainer.device=auto", f"trainer.batch_size={args.batch}",
            "trainer.train_eval_size=1", f"trainer.precision={PRECISIONS[precision]}"]


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def examples(results, batch: int) -> int:
    bad = [r for r in results if str(r["status"]) != "completed"]
    if bad:
        raise RuntimeError(f"a run did not complete: {dict(bad[0])}")
    return sum(r["steps"] * batch for r in results)


class VmapNotes(logging.Handler):
    """Remembers regbench's log line of a stack that trains under vmap instead of folded."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.seen = False

    def emit(self, record: logging.LogRecord) -> None:
        self.seen |= "trains under vmap" in record.getMessage()


def sequential(ov: list[str], K: int, args, device: torch.device) -> Cell:
    n = min(K, args.sequential_runs or K)  # runs one after another: each the same work, so the rate of n is K's
    cfgs = [compose([f"seed={i}", *ov]) for i in range(n)]
    with tempfile.TemporaryDirectory() as root:
        try:
            sync(device)
            start = time.perf_counter()
            results = [train(cfg, Path(root) / f"seed{i}") for i, cfg in enumerate(cfgs)]
            sync(device)
            seconds = time.perf_counter() - start
        except torch.cuda.OutOfMemoryError:
            free_memory()
            return Cell(text=DOES_NOT_FIT)
    note = f"sequential: seeds 0-{n - 1} of the {K}" if n < K else ""
    return Cell(examples(results, args.batch), seconds, n, note=note, losses=[r["train_loss"] for r in results])


def stacked(ov: list[str], K: int, args, device: torch.device) -> Cell:
    cfgs = [compose([f"seed={i}", *ov]) for i in range(K)]
    reason = why_not_stackable(cfgs[0])
    if reason:
        return Cell(text=f"trains alone: {reason}")
    notes = VmapNotes()
    logging.getLogger("regbench").addHandler(notes)
    with tempfile.TemporaryDirectory() as root:
        try:
            sync(device)
            start = time.perf_counter()
            results = train_stacked(cfgs, [Path(root) / f"seed{i}" for i in range(K)])
            sync(device)
            seconds = time.perf_counter() - start
        except torch.cuda.OutOfMemoryError:
            free_memory()
            return Cell(text=DOES_NOT_FIT)
        finally:
            logging.getLogger("regbench").removeHandler(notes)
    sizes = sorted({r["stacked"] for r in results if r.get("stacked")}, reverse=True)
    note = [f"stacked as stacks of {'/'.join(map(str, sizes))}"] if sizes != [K] else []
    note += ["a stack trained under vmap, not folded"] if notes.seen else []
    return Cell(examples(results, args.batch), seconds, K, note="; ".join(note), losses=[r["train_loss"] for r in results])


def side_by_side(ov: list[str], K: int, args) -> Cell:
    with tempfile.TemporaryDirectory() as root:
        run_dirs = [Path(root) / f"seed{i}" for i in range(K)]
        logs = [open(Path(root) / f"seed{i}.log", "w") for i in range(K)]
        try:
            procs = [subprocess.Popen([sys.executable, "-m", "regbench", "run", f"seed={i}", *ov, f"hydra.run.dir={d}"],
                                      stdout=log, stderr=subprocess.STDOUT, cwd=os.getcwd())
                     for i, (d, log) in enumerate(zip(run_dirs, logs))]
            codes = [p.wait() for p in procs]
        finally:
            for log in logs:
                log.close()
        results, spans = [], []
        for i, (code, d) in enumerate(zip(codes, run_dirs)):
            output = (Path(root) / f"seed{i}.log").read_text()
            if code != 0 or not (d / "result.json").is_file():
                if "out of memory" in output.lower() or code in (-9, 137):  # the device's memory, or the host's (killed)
                    return Cell(text=DOES_NOT_FIT)
                raise RuntimeError(f"seed={i} of {K} side by side failed (exit {code}):\n{output[-3000:]}")
            results.append(json.loads((d / "result.json").read_text()))
            spans.append(((d / "config.yaml").stat().st_mtime, (d / "result.json").stat().st_mtime))
    seconds = max(end for _, end in spans) - min(start for start, _ in spans)
    return Cell(examples(results, args.batch), seconds, K)


def warm_up(ov: list[str]) -> None:
    """One solo epoch, untimed: the CUDA context, the kernels' first calls and the dataset in this process."""
    with tempfile.TemporaryDirectory() as root:
        train(compose(["seed=0", *ov, "trainer.max_epochs=1"]), root)


def agreement(seq: Cell, stk: Cell) -> list[str]:
    """The stacked runs' final train_loss against the same seeds' solo runs (the largest difference): a stack that
    trained its members wrongly on this device shows here, at no extra time."""
    if not (seq.losses and len(seq.losses) <= len(stk.losses)):
        return []
    return [f"train_loss stacked - sequential: max |diff| {max(abs(a - b) for a, b in zip(stk.losses, seq.losses)):.2g}"]


def speedup_line(model: str, rows: dict) -> str:
    precision = "fp32" if "fp32" in rows else next(iter(rows))
    both = [(K, cells) for K, cells in rows[precision] if cells[0].measured and cells[1].measured]
    if not both:
        why = next((c[1].text for _, c in rows[precision] if not c[1].measured), "no K fit")
        return f"gpu stacked speedup {model}: - ({precision}: {why})"
    K, (seq, stk, sbs) = both[-1]
    against = f"{stk.images_per_s / sbs.images_per_s:.2f}x side by side" if sbs.measured else f"side by side: {sbs.text}"
    which = "" if precision == "fp32" else f", {precision}"
    return f"gpu stacked speedup {model}: {stk.images_per_s / seq.images_per_s:.2f}x (K={K}{which}; {against})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a CPU smoke run: K up to 2, 256 images, narrow nets, 1 epoch, batch 64")
    parser.add_argument("--models", default="cnn,resnet18", help="comma list (cnn,resnet18)")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma list (fp32,bf16)")
    parser.add_argument("--max-k", type=int, default=None, help="the largest K (64; 2 with --quick)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of every run (2; 1 with --quick)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (128; 64 with --quick)")
    parser.add_argument("--n-train", type=int, default=None, help="training examples (10000; 256 with --quick)")
    parser.add_argument("--sequential-runs", type=int, default=None,
                        help="time the sequential column on at most this many of the K runs (all K without)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="seconds for the whole run: K stops doubling before a row that would pass its share")
    args = parser.parse_args()
    args.max_k = args.max_k or (2 if args.quick else 64)
    args.epochs = args.epochs or (1 if args.quick else 2)
    args.batch = args.batch or (64 if args.quick else 128)
    args.n_train = args.n_train or (256 if args.quick else 10000)
    models, precisions = args.models.split(","), args.precisions.split(",")
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        parser.error(f"--precisions: unknown {', '.join(unknown)} (choose from {', '.join(PRECISIONS)})")
    data = cifar_shaped(args.quick, args.n_train)
    device = resolve_device("auto")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__} on {device} ({name}), {data[0]} ({args.n_train} training examples), "
          f"batch {args.batch}, {args.epochs} epoch{'s' if args.epochs > 1 else ''} per run, K up to {args.max_k}", flush=True)
    print(f"{'model':9} {'precision':9} {'K':>4}  {'sequential img/s runs/h':>23}  {'stacked img/s runs/h':>23}  "
          f"{'side by side img/s runs/h':>25}", flush=True)
    table: dict[str, dict[str, list]] = {}
    combos = [(model, precision) for model in models for precision in precisions]
    begun, failed, left_out = time.perf_counter(), [], set()
    for done, (model, precision) in enumerate(combos):
        if passed := past_budget(args.budget_s, begun):
            left_out.add(model)
            print(f"{model:9} {precision:9} {passed}", flush=True)
            continue
        share = None if args.budget_s is None else (args.budget_s - (time.perf_counter() - begun)) / (len(combos) - done)
        start = time.perf_counter()
        try:
            ov = overrides(model, precision, args, data)
            warm_up(ov)
            rows = table.setdefault(model, {}).setdefault(precision, [])
            K = 1
            while K <= args.max_k:
                row_start = time.perf_counter()
                cells = (sequential(ov, K, args, device), stacked(ov, K, args, device), side_by_side(ov, K, args))
                rows.append((K, cells))
                notes = "; ".join([c.note for c in cells if c.note] + agreement(*cells[:2]))
                print(f"{model:9} {precision:9} {K:4d}  {cells[0]}  {cells[1]}  {cells[2]}"
                      + (f"  ({notes})" if notes else ""), flush=True)
                if any(c.text == DOES_NOT_FIT for c in cells):
                    break
                now = time.perf_counter()
                if share is not None and 2 * K <= args.max_k and now - start + 2 * (now - row_start) > share:
                    print(f"{model:9} {precision:9} K={2 * K} and up left out: the row would pass this model and "
                          f"precision's {share:.0f} s of --budget-s", flush=True)
                    break
                K *= 2
        except Exception as e:  # a model or precision that this torch cannot run leaves the others' rows
            failed.append(f"{model} {precision}")
            print(f"{model:9} {precision:9} {failure(e)}", flush=True)
    for model in models:
        if model in table:
            print(speedup_line(model, table[model]))
        elif model in left_out:
            print(f"gpu stacked speedup {model}: - (left out: --budget-s had passed)")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
