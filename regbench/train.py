"""The training loop: read it top to bottom.

``train(cfg, run_dir)`` trains one configuration and returns its result. It never names a
regularizer: each active one is called through the hooks of :mod:`regbench.regularizers.base`.
Everything a run needs to continue after a kill (weights, optimizer, schedule, regularizer state,
every random generator, early-stopping state, history) is written atomically to
``checkpoints/last.pt`` after each epoch, so re-running the same command resumes bit for bit.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

import regbench
from regbench import build, checkpoint
from regbench.errors import UserError
from regbench.config import run_id, to_container
from regbench.loggers import build_logger

log = logging.getLogger("regbench")

RESULT_FILE, METRICS_FILE, CONFIG_FILE = "result.json", "metrics.jsonl", "config.yaml"
FINISHED = ("completed", "diverged")


class EarlyStopping:
    """Stop after ``patience`` evaluations without an improvement of at least ``min_delta``."""

    def __init__(self, monitor: str, patience: int | None, min_delta: float = 0.0):
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.sign = -1.0 if monitor.endswith("loss") else 1.0  # compare as "higher is better"
        self.best, self.best_epoch, self.bad_epochs = -math.inf, 0, 0

    def update(self, value: float, epoch: int) -> bool:
        """Record one evaluation; True if it is the best so far."""
        if math.isfinite(value) and self.sign * value > self.best + self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = self.sign * value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs > self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]


@torch.inference_mode()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy against hard labels, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size])
        loss_sum += F.cross_entropy(logits.float(), y[i:i + batch_size], reduction="sum")
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum()
    model.train(was_training)
    return loss_sum.item() / len(x), correct.item() / len(x)


def read_result(run_dir: Path) -> dict | None:
    path = Path(run_dir) / RESULT_FILE
    return json.loads(path.read_text()) if path.exists() else None


def train(cfg: DictConfig, run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    rid = run_id(cfg)
    previous = read_result(run_dir)
    if previous and previous.get("run_id") != rid:
        raise UserError(
            f"{run_dir} holds another configuration (run id {previous.get('run_id')}, this one is {rid}); "
            "choose another hydra.run.dir or remove it")
    if previous and previous.get("status") in FINISHED and cfg.resume:
        log.info("%s: already %s, not retrained", run_dir, previous["status"])
        return {**previous, "skipped": True}

    t = cfg.trainer
    device = build.resolve_device(t.device)
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    if t.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)

    checkpoint.seed_everything(cfg.seed)
    data = build.build_data(cfg.dataset, cfg.seed).to(device)
    checkpoint.seed_everything(cfg.seed)  # the same model init whatever the data loading drew
    regs = build.build_regularizers(cfg.get("regularizer"))
    model = build.build_model(cfg.model, data.input_shape, data.num_classes, regs).to(device)
    for reg in regs:
        reg.check(data.input_shape, data.num_classes)
        reg.setup(model, input_shape=data.input_shape, num_classes=data.num_classes)
    optimizer = build.build_optimizer(cfg.optimizer, model)
    n_train, batch_size = len(data.x_train), min(t.batch_size, len(data.x_train))
    steps_per_epoch = math.ceil(n_train / batch_size)
    scheduler = build.build_scheduler(cfg.scheduler, optimizer, steps_per_epoch, t.max_epochs)
    stopper = EarlyStopping(t.early_stopping.monitor, t.early_stopping.patience, t.early_stopping.min_delta)

    ckpt_dir = run_dir / "checkpoints"
    last_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
    state = {"epoch": 0, "step": 0, "history": [], "train_seconds": 0.0, "wall_seconds": 0.0,
             "status": "running", "logger_id": None, "run_id": rid}
    if cfg.resume and last_path.exists():
        ckpt = checkpoint.load(last_path, map_location=device)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        for reg in regs:
            reg.load_state_dict(ckpt["regularizers"].get(reg.name, {}))
        stopper.load_state_dict(ckpt["early_stopping"])
        checkpoint.set_rng_state(ckpt["rng"])
        state = ckpt["state"]
        log.info("resuming %s from epoch %d (step %d)", run_dir, state["epoch"], state["step"])

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(OmegaConf.to_yaml(to_container(cfg)))
    _write_jsonl(run_dir / METRICS_FILE, state["history"])  # a resumed run's file matches its checkpoint

    names = [r.name for r in regs]
    for reg in regs:
        log.info("regularizer %s", reg.describe())
    logger = build_logger(cfg.logger)
    result = {"status": "failed", "run_id": rid}
    try:
        resumed_id = state["logger_id"]
        logger.start(run_dir=run_dir, config=to_container(cfg), group=cfg.name, name=run_dir.name,
                     tags=names or ["baseline"], resume_id=resumed_id)
        state["logger_id"] = logger.run_id
        if resumed_id is None:  # a tracker that has not seen the epochs already run gets them now
            for row in state["history"]:
                logger.log(row)

        hooks = {h: [r for r in regs if r.overrides(h)]
                 for h in ("transform_batch", "penalty", "after_backward", "before_step", "after_step", "eval_model")}

        def eval_model():
            m = model
            for reg in hooks["eval_model"]:
                m = reg.eval_model(m)
            return m

        def save_checkpoint():
            checkpoint.save_atomic({
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None,
                "regularizers": {r.name: r.state_dict() for r in regs}, "early_stopping": stopper.state_dict(),
                "rng": checkpoint.rng_state(), "state": state,
            }, last_path)

        progress = _progress(t.progress, t.max_epochs, state["epoch"])
        x_train, y_train = data.x_train, data.y_train
        wall_start = time.perf_counter() - state["wall_seconds"]
        with progress:
            task = progress.add_task("train", total=t.max_epochs, completed=state["epoch"], metrics="") if progress else None
            while state["status"] == "running" and state["epoch"] < t.max_epochs:
                # ---- one epoch of training
                model.train()
                epoch_start = time.perf_counter()
                loss_sum = torch.zeros((), device=device)
                perm = torch.randperm(n_train, device=device)
                for i in range(steps_per_epoch):
                    idx = perm[i * batch_size:(i + 1) * batch_size]
                    if len(idx) < 2 and i > 0:
                        continue  # a 1-example remainder batch would break BatchNorm and adds nothing
                    x, y = x_train[idx], y_train[idx]
                    for reg in hooks["transform_batch"]:
                        x, y = reg.transform_batch(x, y)
                    loss = F.cross_entropy(model(x), y)  # y: class indices, or probability rows after mixup/smoothing
                    total = loss
                    for reg in hooks["penalty"]:
                        total = total + reg.penalty(model)
                    optimizer.zero_grad(set_to_none=True)
                    total.backward()
                    for reg in hooks["after_backward"]:
                        reg.after_backward(model)
                    for reg in hooks["before_step"]:
                        reg.before_step(model, optimizer)
                    optimizer.step()
                    if scheduler is not None:
                        scheduler.step()
                    for reg in hooks["after_step"]:
                        reg.after_step(model)
                    loss_sum += loss.detach()
                    state["step"] += 1
                state["epoch"] += 1
                state["train_seconds"] += time.perf_counter() - epoch_start

                # ---- evaluate, select, stop
                running_loss = loss_sum.item() / steps_per_epoch
                if not math.isfinite(running_loss):
                    state["status"] = "diverged"
                    log.warning("epoch %d: training loss is not finite: diverged", state["epoch"])
                    row = {"epoch": state["epoch"], "step": state["step"], "train_loss": None, "train_acc": None,
                           "val_loss": None, "val_acc": None, "lr": optimizer.param_groups[0]["lr"],
                           "seconds": round(time.perf_counter() - wall_start, 3)}
                else:
                    m = eval_model()
                    train_loss, train_acc = evaluate(m, x_train, y_train, t.eval_batch_size)
                    val_loss, val_acc = evaluate(m, data.x_val, data.y_val, t.eval_batch_size)
                    row = {"epoch": state["epoch"], "step": state["step"], "train_loss": train_loss, "train_acc": train_acc,
                           "val_loss": val_loss, "val_acc": val_acc, "lr": optimizer.param_groups[0]["lr"],
                           "seconds": round(time.perf_counter() - wall_start, 3)}
                    if stopper.update(row[stopper.monitor], state["epoch"]):
                        checkpoint.save_atomic({"model": model.state_dict(), "epoch": state["epoch"],
                                                "regularizers": {r.name: r.state_dict() for r in regs}}, best_path)
                    if stopper.should_stop:
                        state["status"] = "stopped"
                        log.info("early stopping at epoch %d: best %s at epoch %d", state["epoch"],
                                 stopper.monitor, stopper.best_epoch)
                state["history"].append(_finite(row))
                state["wall_seconds"] = time.perf_counter() - wall_start
                save_checkpoint()  # first the checkpoint, then the logs: a kill in between loses no state
                _append_jsonl(run_dir / METRICS_FILE, state["history"][-1])
                logger.log(state["history"][-1])
                log.info(_format_row(state["history"][-1], t.max_epochs), extra={"epoch_line": True})
                if progress:
                    progress.update(task, completed=state["epoch"], metrics=_short(row))

        result = _finish(cfg, run_dir, rid, model, regs, data, stopper, state, best_path, eval_model, names)
    except BaseException as e:
        result = {**result, "error": f"{type(e).__name__}: {e}"}
        raise
    finally:
        logger.finish(result)
    return result


def _finish(cfg, run_dir, rid, model, regs, data, stopper, state, best_path, eval_model, names) -> dict:
    """Evaluate the selected checkpoint once on every split (the test split only here) and write result.json."""
    t = cfg.trainer
    use_best = t.early_stopping.patience is not None and best_path.exists() and state["status"] != "diverged"
    if use_best:
        best = checkpoint.load(best_path, map_location=data.x_train.device)
        model.load_state_dict(best["model"])
        for reg in regs:
            reg.load_state_dict(best["regularizers"].get(reg.name, {}))
    metrics = {}
    if state["status"] != "diverged":
        m = eval_model()
        for split in ("train", "val", "test"):
            loss, acc = evaluate(m, getattr(data, f"x_{split}"), getattr(data, f"y_{split}"), t.eval_batch_size)
            metrics.update({f"{split}_loss": loss, f"{split}_acc": acc})
    else:
        metrics = {f"{s}_{m}": None for s in ("train", "val", "test") for m in ("loss", "acc")}
    result = {
        "status": "diverged" if state["status"] == "diverged" else "completed",
        **metrics,
        "best_epoch": stopper.best_epoch if use_best else state["epoch"],
        "selected": "best" if use_best else "last",
        "epochs_run": state["epoch"],
        "steps": state["step"],
        "wall_time_s": round(state["wall_seconds"], 3),
        "train_time_s": round(state["train_seconds"], 3),
        "steps_per_s": round(state["step"] / state["train_seconds"], 2) if state["train_seconds"] > 0 else None,
        "seed": cfg.seed,
        "run_id": rid,
        "name": cfg.name,
        "regularizers": names,
        "num_params": sum(p.numel() for p in model.parameters()),
        "data": data.info,
        "device": str(data.x_train.device),
        "regbench_version": regbench.__version__,
        "git_commit": _git_commit(),
        "logger_id": state["logger_id"],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json_atomic(run_dir / RESULT_FILE, result)
    return result


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _finite(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)


def _append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def _short(row: dict) -> str:
    if row.get("train_loss") is None:
        return "diverged"
    return (f"loss {row['train_loss']:.3f}  train {row['train_acc']:.1%}  "
            f"val {row['val_acc']:.1%}")


def _format_row(row: dict, max_epochs: int) -> str:
    return f"epoch {row['epoch']}/{max_epochs} step {row['step']} " + " ".join(
        f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "step") and isinstance(v, float))


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __bool__(self):
        return False


def _progress(setting, max_epochs: int, start: int):
    import sys

    show = sys.stderr.isatty() if setting == "auto" else bool(setting)
    if not show:
        return _NoProgress()
    # The bar shows each epoch; the per-epoch log lines then go to the log file only.
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.addFilter(lambda record: not getattr(record, "epoch_line", False))
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]epoch"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[metrics]}"), transient=False)


_GIT = None


def _git_commit() -> str | None:
    global _GIT
    if _GIT is None:
        try:
            _GIT = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                  text=True, timeout=5).stdout.strip() or ""
        except Exception:
            _GIT = ""
    return _GIT or None
