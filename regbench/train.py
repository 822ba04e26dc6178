"""The training loop: read it top to bottom.

``train(cfg, run_dir)`` trains one configuration and returns its result. It never names a
regularizer: each active one is called through the hooks of :mod:`regbench.regularizers.base`.
Everything a run needs to continue after a kill (weights, optimizer, schedule, regularizer state,
every random generator, early-stopping state, history) is written atomically to
``checkpoints/last.pt`` (after the first epoch, the last, and every ``trainer.checkpoint_every_s``),
so re-running the same command resumes bit for bit. Validation is evaluated every epoch (early stopping),
the training subset at the cadence of ``trainer.train_eval_every``.

A run's bookkeeping is one :class:`Lifecycle`: start or resume, each epoch's record, selection and stopping
(early stopping, a search's pruning, divergence), checkpoints, the result and the trackers. ``train`` calls it at
the seams of its loop; a stack (:mod:`regbench.stack.loop`) drives one per member, the same calls in batches.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import torch
from omegaconf import DictConfig

import regbench
from regbench import build, checkpoint, rundir
from regbench.process import flush_denormals, keep_freed_memory
from regbench.records import Result, Status, read_result, write_result  # noqa: F401 (read_result: read from here too)
from regbench.config import run_id, to_container, to_yaml
from regbench.data.base import DataSplits, stratified_subsample
from regbench.loss import cross_entropy
from regbench.files import append_jsonl, git_commit, read_jsonl, write_atomic, write_jsonl
from regbench.regularizers.base import Regularizer

log = logging.getLogger("regbench")

METRICS_FILE, CONFIG_FILE = "metrics.jsonl", "config.yaml"


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


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy against hard labels, in eval mode."""
    return evaluate_splits(model, [(x, y)], batch_size)[0]


@torch.inference_mode()
def evaluate_splits(model: torch.nn.Module, splits: list[tuple[torch.Tensor, torch.Tensor]],
                    batch_size: int) -> list[tuple[float, float]]:
    """:func:`evaluate` for several splits, with one switch to eval mode and one wait for the device (a
    quarter of the per-epoch evaluation of a small MLP); each split's numbers are bitwise evaluate's."""
    was_training = model.training
    model.eval()
    sums = []
    for x, y in splits:
        loss_sum = torch.zeros((), device=x.device)
        correct = torch.zeros((), device=x.device, dtype=torch.long)
        for i in range(0, len(x), batch_size):
            logits = model(x[i:i + batch_size])
            loss_sum += cross_entropy(logits.float(), y[i:i + batch_size], reduction="sum")
            correct += (logits.argmax(1) == y[i:i + batch_size]).sum()
        sums += [loss_sum.double(), correct.double()]  # exact: a float32 sum, and counts below 2**53
    model.train(was_training)
    values = torch.stack(sums).tolist()
    return [(values[2 * j] / len(x), values[2 * j + 1] / len(x)) for j, (x, _) in enumerate(splits)]


HOOKS = ("transform_batch", "penalty", "after_backward", "before_step", "after_step", "eval_model")


@dataclass
class RunState:
    """Where a run is: everything besides the objects' own state that a checkpoint restores."""

    run_id: str
    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)  # one row per epoch, as in metrics.jsonl
    train_seconds: float = 0.0
    compile_seconds: float = 0.0  # torch.compile's first steps (trainer.compile), not counted in train_seconds
    wall_seconds: float = 0.0
    status: Status = Status.RUNNING  # running → stopped (early) | pruned (by a search) | diverged; the result: completed | pruned | diverged
    logger_id: str | None = None

    def __post_init__(self):
        self.status = Status(self.status)  # a checkpoint holds the word (plain values only)

    def to_checkpoint(self) -> dict:
        return {**asdict(self), "status": str(self.status)}


@dataclass
class Run:
    """What one run trains with, built from its config: the objects the loop calls, and where it writes."""

    cfg: DictConfig
    run_dir: Path
    data: DataSplits
    model: torch.nn.Module
    regs: list[Regularizer]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    stopper: EarlyStopping
    batch_size: int
    steps_per_epoch: int
    train_eval: torch.Tensor  # indices of the training examples metrics.jsonl's train metrics are computed on
    hooks: dict[str, list[Regularizer]] = field(init=False)  # the regularizers overriding each hook, in list order
    forward: torch.nn.Module | None = None  # what training calls: the model, or its torch.compile'd form
    scaler: torch.amp.GradScaler | None = None  # precision=16: loss scaling (CUDA)
    best: dict | None = None  # the best epoch's weights, until the next checkpoint writes them to best.pt
    saved_at: float = -math.inf  # when last.pt was last written (time.monotonic)
    prune: Callable[[int, dict], bool] | None = None  # a search's trial: told each epoch's row, True to stop it

    def __post_init__(self):
        self.hooks = {h: [r for r in self.regs if r.overrides(h)] for h in HOOKS}
        if self.forward is None:
            self.forward = self.model
        # The trainer settings as plain values, read once: a config lookup per step cost 5% of a small MLP's step,
        # and the per-epoch ones (cadences, batch sizes) cost a short run 0.5%
        self.trainer = SimpleNamespace(**to_container(self.cfg.trainer))
        precision = self.trainer.precision
        self._autocast_dtype = None if precision == 32 else torch.bfloat16 if precision == "bf16" else torch.float16

    def autocast(self):
        """Mixed precision for the forward pass (trainer.precision=bf16 or 16); a no-op at 32."""
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.data.x_train.device.type, dtype=self._autocast_dtype)

    def train_subset(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training examples (inputs, labels) metrics.jsonl's train metrics are computed on."""
        return self.data.x_train[self.train_eval], self.data.y_train[self.train_eval]

    @property
    def last_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "checkpoints" / "best.pt"

    def eval_model(self) -> torch.nn.Module:
        """The model evaluation sees (EMA swaps in its averaged weights)."""
        m = self.model
        for reg in self.hooks["eval_model"]:
            m = reg.eval_model(m)
        return m


def train(cfg: DictConfig, run_dir: str | Path, prune: Callable[[int, dict], bool] | None = None) -> Result:
    """Train one configuration in ``run_dir`` (resuming its checkpoint) and return its result. ``prune``: a
    search's trial (:mod:`regbench.sweep.search`), told each epoch's metrics row; True ends the run as pruned."""
    run_dir = Path(run_dir)
    previous = Lifecycle.already_finished(cfg, run_dir)
    if previous:
        return previous.as_skipped()

    life = Lifecycle.begin(cfg, run_dir, prune)  # built, resumed from its checkpoint or at epoch 0
    run, state = life.run, life.state
    with life.tracking():  # the trackers are open; a failure or an interruption is recorded in them
        max_epochs = run.trainer.max_epochs
        life.start_clock()
        with _progress(run.trainer.progress, max_epochs) as progress:
            task = progress.add_task("train", total=max_epochs, completed=state.epoch, metrics="") if progress else None
            while life.running:
                epoch_start = time.perf_counter()
                running_loss = train_epoch(run, state)
                life.add_train_time(time.perf_counter() - epoch_start)
                row = evaluate_and_select(life, running_loss)
                life.record(row)
                if life.checkpoint_due():  # first the checkpoint, then the logs: a resume rewrites the logs from it
                    checkpoint.save_all(life.checkpoint_files())
                life.log_epoch()
                if progress:
                    progress.update(task, completed=state.epoch, metrics=_short(row))
        return life.finish()


def build_run(cfg: DictConfig, run_dir: Path) -> Run:
    """Device, data, regularizers, model, optimizer, schedule and early stopping, seeded as a solo run is."""
    t = cfg.trainer
    device = build.resolve_device(t.device)
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    if t.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        # That mode also fills every new tensor with NaN, to expose kernels that read memory they never wrote.
        # Ours write before they read (reruns and resumes are bitwise equal without it; tests check), and the
        # fills cost 2-3% of a solo cnn1d epoch and 5-7% of a stacked one.
        torch.utils.deterministic.fill_uninitialized_memory = False

    keep_freed_memory()
    flush_denormals()

    checkpoint.seed_everything(cfg.seed)
    data = build.build_data(cfg.dataset, cfg.seed).to(device)
    checkpoint.seed_everything(cfg.seed)  # the same model init whatever the data loading drew
    regs = build.build_regularizers(cfg.get("regularizer"))
    model = build.build_model(cfg.model, data.input_shape, data.num_classes, regs).to(device)
    for reg in regs:
        reg.check(data.input_shape, data.num_classes)
        reg.setup(model, input_shape=data.input_shape, num_classes=data.num_classes)
    optimizer = build.build_optimizer(cfg.optimizer, model)
    batch_size = min(t.batch_size, len(data.x_train))
    steps_per_epoch = math.ceil(len(data.x_train) / batch_size)
    scheduler = build.build_scheduler(cfg.scheduler, optimizer, steps_per_epoch, t.max_epochs)
    stopper = EarlyStopping(t.early_stopping.monitor, t.early_stopping.patience, t.early_stopping.min_delta)
    train_eval = train_eval_subset(data.y_train, t.train_eval_size, cfg.dataset.split_seed).to(device)
    if t.channels_last:  # NHWC: faster convolutions on tensor cores; the data follows once, not per batch
        model.to(memory_format=torch.channels_last)
        data.x_train, data.x_val, data.x_test = (x.contiguous(memory_format=torch.channels_last)
                                                  for x in (data.x_train, data.x_val, data.x_test))
    forward = torch.compile(model) if t.compile else model  # compiled lazily, in the first steps
    scaler = torch.amp.GradScaler(device.type) if t.precision == 16 else None
    return Run(cfg, run_dir, data, model, regs, optimizer, scheduler, stopper, batch_size, steps_per_epoch, train_eval,
               forward=forward, scaler=scaler)


def train_eval_subset(y_train: torch.Tensor, size: int | None, seed: int) -> torch.Tensor:
    """The training examples metrics.jsonl's train metrics use: all of them, or a fixed stratified subset of
    ``size`` (the same in every epoch and every run seed, drawn without touching torch's generator)."""
    n = len(y_train)
    if size is None or size >= n:
        return torch.arange(n)
    idx = stratified_subsample(y_train.cpu().numpy(), size, np.random.default_rng(seed))
    return torch.from_numpy(idx)


class Lifecycle:
    """One run from its start to its result, solo or as a member of a stack: start or resume, each epoch's record,
    selection and stopping (early stopping, a search's pruning, divergence), checkpoints, the result and the trackers.

    :func:`train` drives one through the plain loop; a stack drives one per member
    (:class:`regbench.stack.engine.Member`), with its epochs trained and evaluated in batches."""

    def __init__(self, run: Run, state: RunState):
        self.run, self.state = run, state
        self.logger = None  # the trackers, once open
        self.wall_start = 0.0  # time.perf_counter() when the run would have started, had it never stopped
        self.result: Result | None = None

    @property
    def where(self) -> str:
        """The prefix of the run's log lines: none for a solo run."""
        return ""

    @property
    def cfg(self) -> DictConfig:
        return self.run.cfg

    @property
    def running(self) -> bool:
        """Whether another epoch is to be trained."""
        return self.state.status == Status.RUNNING and self.state.epoch < self.run.trainer.max_epochs

    # ---- start or resume
    @staticmethod
    def already_finished(cfg: DictConfig, run_dir: Path) -> Result | None:
        """The result of ``cfg`` if it already finished in ``run_dir`` and ``resume`` is on: it is not retrained.
        A folder of another configuration is refused (RunDirConflict)."""
        rid = run_id(cfg)
        rundir.check_identity(run_dir, rid)
        previous = rundir.finished_result(run_dir, rid, cfg.resume)
        if previous:
            log.info("%s: already %s, not retrained", run_dir, previous.status)
        return previous

    @classmethod
    def begin(cls, cfg: DictConfig, run_dir: Path, prune: Callable[[int, dict], bool] | None = None) -> Lifecycle:
        """Build the run, start it at its checkpoint or at epoch 0 (:func:`start`), and write what a run writes
        first: config.yaml, and metrics.jsonl as its checkpoint has it."""
        run = build_run(cfg, run_dir)
        run.prune = prune
        life = cls(run, start(run, run_id(cfg)))
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(run_dir / CONFIG_FILE, to_yaml(to_container(cfg)))
        write_jsonl(run_dir / METRICS_FILE, life.state.history)  # a resumed run's file matches its checkpoint
        for reg in run.regs:
            log.info("%sregularizer %s", life.where, reg.describe())
        return life

    # ---- the trackers
    def open_trackers(self) -> None:
        """Start the trackers, continuing the tracker runs the checkpoint names; a tracker that has not seen the
        epochs already run is given them now."""
        cfg, run, state = self.cfg, self.run, self.state
        self.logger = build.build_logger(cfg.logger)
        resumed_id = state.logger_id
        self.logger.start(run_dir=run.run_dir, config=to_container(cfg), group=cfg.name, name=run.run_dir.name,
                          tags=[r.name for r in run.regs] or ["baseline"], resume_id=resumed_id)
        state.logger_id = self.logger.run_id
        if resumed_id is None:
            for row in state.history:
                self.logger.log(row)

    def close_trackers(self, result: Result) -> None:
        """Tell the trackers how the run ended, opening them first if they are not yet (a stack member's)."""
        if self.logger is None:
            self.open_trackers()
        self.logger.finish(result.to_dict())

    @contextlib.contextmanager
    def tracking(self):
        """The trackers open while the block runs; a failure or an interruption in it is recorded in them."""
        self.open_trackers()
        try:
            yield
        except BaseException as e:
            self.fail(e)
            raise

    def fail(self, error: BaseException) -> None:
        """Record in the trackers that the run failed (its result.json is the caller's: a sweep's job writes it)."""
        self.close_trackers(Result(Status.FAILED, run_id=self.state.run_id, error=f"{type(error).__name__}: {error}"))

    # ---- one epoch's record
    def start_clock(self) -> None:
        self.wall_start = time.perf_counter() - self.state.wall_seconds

    def add_train_time(self, seconds: float) -> None:
        """The epoch's training time; the first epoch of a compiled run in this process is its compile time."""
        if self.run.trainer.compile and not self.state.compile_seconds:
            self.state.compile_seconds = seconds
        else:
            self.state.train_seconds += seconds

    def empty_row(self) -> dict:
        """The epoch's metrics row before evaluation (a diverged epoch's row stays so)."""
        return {"epoch": self.state.epoch, "step": self.state.step, "train_loss": None, "train_acc": None,
                "val_loss": None, "val_acc": None, "lr": self.run.optimizer.param_groups[0]["lr"]}

    def diverge(self) -> None:
        """The epoch's training loss was not finite: the run ends as diverged."""
        self.state.status = Status.DIVERGED
        log.warning("%sepoch %d: training loss is not finite: diverged", self.where, self.state.epoch)

    def select(self, row: dict) -> bool:
        """One epoch's validation row: whether it is the best so far (early stopping's monitor), and whether the run
        ends here, stopped early or pruned by its search trial."""
        stopper, state = self.run.stopper, self.state
        improved = stopper.update(row[stopper.monitor], state.epoch)
        if stopper.should_stop:
            state.status = Status.STOPPED
            log.info("%searly stopping at epoch %d: best %s at epoch %d", self.where, state.epoch, stopper.monitor,
                     stopper.best_epoch)
        elif self.run.prune is not None and self.run.prune(state.epoch, row):
            state.status = Status.PRUNED
            log.info("%spruned by the search at epoch %d", self.where, state.epoch)
        return improved

    def keep_best(self) -> None:
        """The model now is the best so far: kept in memory, the next checkpoint writes it to best.pt."""
        self.run.best = best_snapshot(self.run, self.state.epoch)

    def record(self, row: dict) -> None:
        """The epoch's row, with the seconds since the run started, joins the history."""
        row["seconds"] = round(time.perf_counter() - self.wall_start, 3)
        self.state.history.append(finite_row(row))
        self.state.wall_seconds = time.perf_counter() - self.wall_start

    def log_epoch(self) -> None:
        """The epoch's row to metrics.jsonl, the trackers (when open) and the log."""
        row = self.state.history[-1]
        append_jsonl(self.run.run_dir / METRICS_FILE, row)
        if self.logger is not None:
            self.logger.log(row)
        log.info("%s%s", self.where, format_row(row, self.run.trainer.max_epochs), extra={"epoch_line": True})

    # ---- checkpoints
    def checkpoint_due(self) -> bool:
        """After the first epoch, at the end, and otherwise every ``trainer.checkpoint_every_s`` seconds (0: every
        epoch)."""
        ending = not self.running
        return ending or self.state.epoch == 1 or time.monotonic() - self.run.saved_at >= self.run.trainer.checkpoint_every_s

    def checkpoint_files(self) -> list[tuple[dict, Path]]:
        """What a checkpoint writes, in order (:func:`regbench.checkpoint.save_all`): best.pt if a better epoch came
        since, then last.pt; a kill in between leaves a pair a resume agrees with."""
        run, files = self.run, []
        if run.best is not None:
            files.append((run.best, run.best_path))
            run.best = None
        run.saved_at = time.monotonic()
        files.append(({
            "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict() if run.scheduler else None,
            "regularizers": {r.name: r.state_dict() for r in run.regs}, "early_stopping": run.stopper.state_dict(),
            "rng": checkpoint.rng_state(), "state": self.state.to_checkpoint(),
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        }, run.last_path))
        return files

    # ---- the end
    def finish(self, **extra) -> Result:
        """The run's result (:func:`final_result`, plus ``extra`` fields: a stack's ``stacked``), told to the trackers,
        then written to result.json, which names their runs: a kill never leaves a result without them."""
        result = final_result(self.run, self.state)
        if self.logger is None:
            self.open_trackers()  # a stack member's, at its end (one W&B run per process at a time)
        self.result = replace(result, logger_id=self.state.logger_id, **extra)
        self.close_trackers(self.result)
        write_result(self.run.run_dir, self.result)
        return self.result


def start(run: Run, rid: str) -> RunState:
    """Where run ``rid`` starts, solo or as a stack member: its checkpoint, or epoch 0.

    ``resume=true`` continues from ``last.pt``; ``resume=best`` from ``last.pt`` where it can be read and from
    ``best.pt`` where it cannot (so the advice for one damaged file can be followed for a whole sweep: no other
    run rolls back); ``resume=false`` starts afresh. A checkpoint of another configuration is refused."""
    from regbench.errors import DamagedFile

    mode = run.cfg.resume
    if mode and run.last_path.exists():
        try:
            state = resume(run)
        except DamagedFile:
            if mode != "best" or not run.best_path.exists():
                raise
            state = resume_from_best(run, rid)
    elif mode == "best" and run.best_path.exists():
        state = resume_from_best(run, rid)
    else:
        state = RunState(rid)
    if state.run_id != rid:  # the id file was removed, or the checkpoint was copied in from another run
        raise rundir.RunDirConflict(f"{run.last_path} is a checkpoint of another configuration (run id {state.run_id}; "
                                    f"this one is {rid}); choose another hydra.run.dir or remove that folder")
    return state


def resume(run: Run) -> RunState:
    """Restore every object and random generator from ``checkpoints/last.pt``."""
    ckpt = checkpoint.load(run.last_path, map_location=run.data.x_train.device)
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    if run.scheduler is not None:
        run.scheduler.load_state_dict(ckpt["scheduler"])
    for reg in run.regs:
        reg.load_state_dict(ckpt["regularizers"].get(reg.name, {}))
    run.stopper.load_state_dict(ckpt["early_stopping"])
    if run.scaler is not None and ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    checkpoint.set_rng_state(ckpt["rng"])
    state = RunState(**ckpt["state"])
    log.info("resuming %s from epoch %d (step %d)", run.run_dir, state.epoch, state.step)
    return state


def resume_from_best(run: Run, rid: str) -> RunState:
    """``resume=best`` where ``last.pt`` is damaged or gone: continue from the best checkpoint's weights at its epoch.

    Not exact, unlike a resume from last.pt: best.pt holds the weights (and regularizer state) only, so
    the optimizer, the schedule and the random generators start afresh at that epoch.
    """
    best = checkpoint.load(run.best_path, map_location=run.data.x_train.device)
    run.model.load_state_dict(best["model"])
    for reg in run.regs:
        reg.load_state_dict(best["regularizers"].get(reg.name, {}))
    history = [row for row in read_jsonl(run.run_dir / METRICS_FILE) if row.get("epoch", math.inf) <= best["epoch"]]
    state = RunState(rid, epoch=best["epoch"], step=best["epoch"] * run.steps_per_epoch, history=history)
    for row in history:
        run.stopper.update(row[run.stopper.monitor] if row[run.stopper.monitor] is not None else math.nan, row["epoch"])
    if run.scheduler is not None:
        for _ in range(state.step):
            run.scheduler.step()
    log.warning("resuming %s from best.pt at epoch %d (optimizer state and random generators start afresh)",
                run.run_dir, state.epoch)
    return state


def train_epoch(run: Run, state: RunState) -> float:
    """One pass over the training split in a fresh random order; the mean training loss (inf if it diverged)."""
    model, optimizer, hooks, data, scaler = run.model, run.optimizer, run.hooks, run.data, run.scaler
    model.train()
    loss_sum = torch.zeros((), device=data.x_train.device)
    perm = torch.randperm(len(data.x_train), device=data.x_train.device)
    for i in range(run.steps_per_epoch):
        idx = perm[i * run.batch_size:(i + 1) * run.batch_size]
        if len(idx) < 2 and i > 0:
            continue  # a 1-example remainder batch would break BatchNorm and adds nothing
        x, y = data.x_train[idx], data.y_train[idx]
        for reg in hooks["transform_batch"]:
            x, y = reg.transform_batch(x, y)
        with run.autocast():
            logits = run.forward(x)
        loss = cross_entropy(logits.float(), y)  # y: class indices, or probability rows after mixup/smoothing
        total = loss
        for reg in hooks["penalty"]:
            total = total + reg.penalty(model)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(total).backward()
            scaler.unscale_(optimizer)  # the hooks below (clipping, decay) see true gradients
        else:
            total.backward()
        for reg in hooks["after_backward"]:
            reg.after_backward(model)
        for reg in hooks["before_step"]:
            reg.before_step(model, optimizer)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if run.scheduler is not None:
            run.scheduler.step()
        for reg in hooks["after_step"]:
            reg.after_step(model)
        loss_sum += loss.detach()
        state.step += 1
    state.epoch += 1
    return loss_sum.item() / run.steps_per_epoch  # .item() waits for the device: the epoch's time is true


def evaluate_and_select(life: Lifecycle, running_loss: float) -> dict:
    """The epoch's metrics row; keeps the best checkpoint and decides whether the run stops or diverged."""
    run, state = life.run, life.state
    row = life.empty_row()
    if not math.isfinite(running_loss):
        life.diverge()
        return row
    m, data, batch = run.eval_model(), run.data, run.trainer.eval_batch_size
    due = train_eval_due(run.trainer, state.epoch)
    values = evaluate_splits(m, [(data.x_val, data.y_val), *([run.train_subset()] if due else [])], batch)
    (row["val_loss"], row["val_acc"]), *train_values = values
    if life.select(row):
        life.keep_best()
    if state.status != Status.RUNNING and not due:  # a run's last row always has its train metrics
        train_values = evaluate_splits(m, [run.train_subset()], batch)
    if train_values:
        row["train_loss"], row["train_acc"] = train_values[0]
    return row


def train_eval_due(t: SimpleNamespace, epoch: int) -> bool:
    """Whether epoch ``epoch`` evaluates the training subset: the first (a learning curve starts where training
    does), every ``trainer.train_eval_every``-th and the last; a run that stops early evaluates it at the stop
    too. Validation is evaluated every epoch."""
    return epoch == 1 or epoch % t.train_eval_every == 0 or epoch >= t.max_epochs


def best_snapshot(run: Run, epoch: int) -> dict:
    """What best.pt holds: a copy of the weights (a clone per tensor; a deepcopy took five times as long) and the
    regularizers' state at ``epoch``."""
    return {"model": {k: v.clone() for k, v in run.model.state_dict().items()}, "epoch": epoch,
            "regularizers": copy.deepcopy({r.name: r.state_dict() for r in run.regs})}


def final_result(run: Run, state: RunState) -> Result:
    """The run's result: the selected checkpoint evaluated once on every split (the test split only here)."""
    cfg, data = run.cfg, run.data
    diverged = state.status == Status.DIVERGED
    use_best = cfg.trainer.early_stopping.patience is not None and run.best_path.exists() and not diverged
    if use_best:
        best = checkpoint.load(run.best_path, map_location=data.x_train.device)
        run.model.load_state_dict(best["model"])
        for reg in run.regs:
            reg.load_state_dict(best["regularizers"].get(reg.name, {}))
    metrics = {f"{s}_{m}": None for s in ("train", "val", "test") for m in ("loss", "acc")}
    if not diverged:
        splits = ("train", "val", "test")
        values = evaluate_splits(run.eval_model(), [(getattr(data, f"x_{s}"), getattr(data, f"y_{s}")) for s in splits],
                                 cfg.trainer.eval_batch_size)
        for split, (loss, acc) in zip(splits, values):
            metrics[f"{split}_loss"], metrics[f"{split}_acc"] = loss, acc
    return Result(
        status=Status.DIVERGED if diverged else Status.PRUNED if state.status == Status.PRUNED else Status.COMPLETED,
        **metrics,
        best_epoch=run.stopper.best_epoch if use_best else state.epoch,
        selected="best" if use_best else "last",
        epochs_run=state.epoch,
        steps=state.step,
        wall_time_s=round(state.wall_seconds, 3),
        train_time_s=round(state.train_seconds, 3),
        compile_time_s=round(state.compile_seconds, 3) if cfg.trainer.compile else None,
        precision=str(cfg.trainer.precision),
        steps_per_s=round(state.step / state.train_seconds, 2) if state.train_seconds > 0 else None,
        seed=cfg.seed,
        run_id=state.run_id,
        name=cfg.name,
        regularizers=[r.name for r in run.regs],
        num_params=sum(p.numel() for p in run.model.parameters()),
        train_eval_examples=len(run.train_eval),
        train_eval_every=cfg.trainer.train_eval_every,
        data=data.info,
        device=str(data.x_train.device),
        regbench_version=regbench.__version__,
        git_commit=git_commit(),
        logger_id=state.logger_id,
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


def finite_row(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def _short(row: dict) -> str:
    if row.get("train_loss") is None:
        return "diverged"
    return (f"loss {row['train_loss']:.3f}  train {row['train_acc']:.1%}  "
            f"val {row['val_acc']:.1%}")


def format_row(row: dict, max_epochs: int) -> str:
    return f"epoch {row['epoch']}/{max_epochs} step {row['step']} " + " ".join(
        f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "step") and isinstance(v, float))


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __bool__(self):
        return False


def _progress(setting, max_epochs: int):
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
