"""Train configurations as stacks, each member its own run: built as a solo run is, then epochs of its
stack, with per-member early stopping, divergence, best checkpoint, checkpoints, test evaluation, result
and tracker run. Each member is a :class:`regbench.train.Lifecycle` (:class:`~regbench.stack.engine.Member`):
this loop makes the solo loop's calls, differing only where the stack batches (one training epoch and one
evaluation per split for all members, one checkpoint for all, trackers opened at a member's end)."""

from __future__ import annotations

import copy
import logging
import math
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from regbench import checkpoint
from regbench import train as solo
from regbench.errors import UserError
from regbench.records import Result, Status
from regbench.stack.data import share_data
from regbench.stack.engine import Member, Stack
from regbench.stack.grouping import MAX_STACK_CPU, max_stack_size, stack_keys
from regbench.stack.sizing import measured_stack_size

log = logging.getLogger("regbench")


def check_same_key(cfgs: list[DictConfig]) -> None:
    keys = set()
    for cfg, (key, why) in zip(cfgs, stack_keys(cfgs)):
        if key is None:
            raise ValueError(f"seed={cfg.seed}: cannot train stacked: {why}")
        keys.add(key)
    if len(keys) > 1:
        raise ValueError("configurations of one stack must share one stack_key (network shape, data shapes, "
                         f"batch size, epochs, optimizer apart from lr); got {len(keys)} keys")


def train_stacked(cfgs: list[DictConfig], run_dirs: list[str | Path], prune: list | None = None) -> list[Result]:
    """Train configurations that share a :func:`stack_key` together, each in its run dir; their results.

    Each member writes exactly what ``regbench.train.train(cfg, run_dir)`` writes (config.yaml,
    metrics.jsonl, result.json with ``"stacked": K``, checkpoints/last.pt and best.pt in the solo format),
    and resumes from its own last.pt; members already completed or diverged are skipped as solo skips
    them. More members than fit in one stack (:func:`_stack_size`: on a CUDA device measured by a trial step)
    are trained as several stacks.
    Locking the run dirs (``rundir.hold``) is the caller's job, as for ``train``. ``prune``: per member, its
    search trial's callback or None (``train``'s ``prune``).
    """
    if len(cfgs) != len(run_dirs):
        raise ValueError(f"{len(cfgs)} configs but {len(run_dirs)} run dirs")
    run_dirs = [Path(d) for d in run_dirs]
    if len(set(map(str, run_dirs))) != len(run_dirs):
        raise ValueError("two members of a stack share a run dir")
    if not cfgs:
        return []
    check_same_key(cfgs)
    results: list[Result | None] = [None] * len(cfgs)
    todo = []
    for i, (cfg, run_dir) in enumerate(zip(cfgs, run_dirs)):
        try:
            previous = Member.already_finished(cfg, run_dir)
        except UserError as e:
            results[i] = _refused(run_dir, e)
            continue
        if previous:
            results[i] = previous.as_skipped()
        else:
            todo.append(i)
    def build(i: int) -> Member | None:
        """Member ``i``, or None if it is refused (another configuration's checkpoint, a damaged one): its siblings
        train without it."""
        try:
            return build_member(cfgs[i], run_dirs[i], prune[i] if prune else None)
        except UserError as e:
            results[i] = _refused(run_dirs[i], e)
            return None

    first = next(((i, m) for i in todo if (m := build(i)) is not None), None)  # it sizes the stacks
    if first is None:
        return results
    built = dict([first])
    todo = [i for i in todo if results[i] is None]
    size = _stack_size(first[1], len(todo), cfgs)
    for begin in range(0, len(todo), size):
        chunk, members = [], []
        for i in todo[begin:begin + size]:
            member = built.pop(i, None) or build(i)
            if member is not None:
                chunk.append(i)
                members.append(member)
                share_data(members)
        if members:
            for i, result in zip(chunk, _train_members(members)):
                results[i] = result
    return results


def _stack_size(first: Member, runs: int, cfgs: list[DictConfig]) -> int:
    """Members per stack: on a CPU (or MPS) :data:`~regbench.stack.grouping.MAX_STACK_CPU`; on a CUDA device what a
    trial step of the ``first`` member measures to fit (:func:`regbench.stack.sizing.measured_stack_size`), at most
    ``runs`` (the runs to train) and ``stack=N``, the parameter estimate (:func:`max_stack_size`) if it cannot."""
    device = first.run.data.x_train.device
    if device.type != "cuda":
        return MAX_STACK_CPU

    def estimate() -> int:  # built only if the trial cannot run: a meta copy of the model and a forward pass
        return max_stack_size(sum(p.numel() for p in first.run.model.parameters()), _activations(first), device)

    caps = [int(c.stack) for c in cfgs if str(c.get("stack", "auto")).isdigit()]  # a sweep's chunks are already
    return measured_stack_size(first, min([runs, *caps]), estimate)                # at most N: search's are not


def _refused(run_dir: Path, e: Exception) -> Result:
    """A member that cannot train (its folder holds another configuration, or a damaged checkpoint): nothing of
    it is touched, and the stack trains without it."""
    log.error("%s: refused, the stack trains without it: %s", run_dir.name, e)
    return Result(Status.REFUSED, error=str(e))


def _activations(member: Member) -> int:
    """Activation values of one member's training batch (outputs of every leaf module), for the memory budget."""
    total = [0]
    model = copy.deepcopy(member.run.model).to("meta")
    hooks = [m.register_forward_hook(lambda mod, a, out: total.__setitem__(0, total[0] + out.numel()))
             for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(torch.empty(member.run.batch_size, *member.run.data.input_shape, device="meta"))
    for h in hooks:
        h.remove()
    return total[0]


def build_member(cfg: DictConfig, run_dir: Path, prune=None) -> Member:
    """A member exactly as solo ``train`` starts: built under its seed, then its checkpoint if any
    (:meth:`regbench.train.Lifecycle.begin`). Its trackers are opened when it ends (one W&B run per process at a
    time), continuing the tracker runs its checkpoint names."""
    return Member.begin(cfg, Path(run_dir), prune)


def _train_members(members: list[Member]) -> list[Result]:
    K = len(members)
    log.info("training %d runs stacked: %s", K, ", ".join(m.run.run_dir.name for m in members))
    for m in members:
        m.start_clock()
    stack: Stack | None = None
    try:
        while True:
            for m in members:
                if m.done and m.result is None:
                    m.finish(stacked=K)
            active = [m for m in members if not m.done]
            if not active:
                break
            epoch = min(m.state.epoch for m in active)
            group = [m for m in active if m.state.epoch == epoch]
            if stack is None or [id(m) for m in stack.members] != [id(m) for m in group]:
                if stack is not None:
                    stack.write_back()
                    stack = None  # freed before the next is built: two at once would not fit a stack sized to the device
                stack = Stack(group)
            epoch_start = time.perf_counter()
            running = stack.train_epoch().tolist()
            seconds = time.perf_counter() - epoch_start
            rows = _evaluate_and_select(stack, running)
            for m, row in zip(group, rows):
                m.add_train_time(seconds)
                m.record(row)
            # All members checkpoint together when one that trains on is due (after epoch 1, every
            # checkpoint_every_s), so that after a kill they resume at one epoch and train on as one stack. A member
            # that ends (early stopping) writes its own final files alone: the others' last.pt stay at the epoch
            # they share, from which they resume as one stack.
            due = [m for m in group if m.checkpoint_due()]
            if due:
                stack.write_back()
                _save_checkpoints(group if any(m.running for m in due) else due)
            for m in group:
                m.log_epoch()
    except Exception as e:  # a failure is recorded in each unfinished member's tracker run; an interruption (a
        for m in members:   # preemption's exit, Ctrl-C) is not: the requeued or re-run stack opens each run once, at its end
            if m.result is None:
                m.fail(e)
        raise
    return [m.result for m in members]


def _evaluate_and_select(stack: Stack, running: list[float]) -> list[dict]:
    """Solo's ``evaluate_and_select`` for every member of the stack, with one batched evaluation per split."""
    members = stack.members
    rows = [m.empty_row() for m in members]
    due = solo.train_eval_due(members[0].run.trainer, members[0].state.epoch)  # one epoch and cadence in a stack
    (val_loss, val_acc), *train = stack.evaluate("val", *(["train_eval"] if due else []))
    best, with_train = [], []
    for k, (m, row) in enumerate(zip(members, rows)):
        if not math.isfinite(running[k]):
            m.diverge()
            best.append(False)
            continue
        row["val_loss"], row["val_acc"] = val_loss[k], val_acc[k]
        best.append(m.select(row))
        if due or m.state.status != Status.RUNNING:  # as solo: the cadence's epochs and a member's last row
            with_train.append(k)
    if with_train:
        if due:
            (train_loss, train_acc), = train
        elif 2 * len(with_train) <= len(members):  # the few members that stop now: each alone costs less
            losses, accs = stack.evaluate_members("train_eval", with_train)
            train_loss, train_acc = dict(zip(with_train, losses)), dict(zip(with_train, accs))
        else:
            (train_loss, train_acc), = stack.evaluate("train_eval")
        for k in with_train:
            rows[k]["train_loss"], rows[k]["train_acc"] = train_loss[k], train_acc[k]
    if any(best):  # kept in memory, as solo does; the next checkpoint writes it
        stack.write_back(optimizer=False)
        for m, improved in zip(members, best):
            if improved:
                m.keep_best()
    return rows


def _save_checkpoints(members: list[Member]) -> None:
    """Solo's checkpoint files (best.pt if due, then last.pt) of every member, each with its own generators as
    ``rng``, written together: a kill leaves all members at the old epoch or all at the new one (but for the
    renames themselves), so they resume as one stack and end as an uninterrupted run would."""
    files = []
    for m in members:
        checkpoint.set_rng_state(m.rng)  # what solo's checkpoint records is the global state: make it the member's
        files += m.checkpoint_files()
    checkpoint.save_all(files)
