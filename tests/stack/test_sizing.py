"""Stack sizing on a CUDA device (issue #33): the arithmetic from measured peaks (:func:`fit_stack_size`), the
trial sizes (:func:`doubling`), and the trial step itself, which on a CPU measures nothing and must train nothing.

The CUDA measurement (peak memory stats, out-of-memory trials) needs a GPU; here the trial step runs on real
members on a CPU, and the tests check with real tensors that it leaves no trace.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from helpers import compose

from regbench import checkpoint
from regbench.stack import MAX_STACK_CPU
from regbench.stack import loop
from regbench.stack.data import share_data
from regbench.stack.engine import Stack
from regbench.stack import sizing
from regbench.stack.loop import build_member
from regbench.stack.sizing import MARGIN, doubling, fit_stack_size, trial_step

DIGITS = ["debug=tiny", "dataset=digits", "model=cnn", "model.channels=4", "model.width=16", "dataset.n_train=200",
          "trainer.max_epochs=2", "trainer.checkpoint_every_s=0"]
REGULARIZED = ["model.norm=batch", "regularizer=[dropout,mixup,weight_decay]", "scheduler=cosine"]


# ------------------------------------------------------------------------------------- the arithmetic

def test_the_size_is_what_fits_in_the_margin_of_the_free_memory_on_the_measured_line():
    peaks = {1: 1_100, 2: 2_100, 4: 4_100}  # 1,000 bytes a member, 100 for any stack
    assert MARGIN == 0.8
    assert fit_stack_size(peaks, free=10_000, cap=1024) == (7, 1_000.0)  # (8,000 - 100) // 1,000
    assert fit_stack_size(peaks, free=10_000, cap=1024, margin=0.5) == (4, 1_000.0)
    assert fit_stack_size(peaks, free=10_000, cap=5) == (5, 1_000.0)  # runs to train, 1024, stack=N
    assert fit_stack_size(peaks, free=10_000, cap=1024, failed=6) == (5, 1_000.0)  # below a size that ran out
    assert fit_stack_size(peaks, free=10_000, cap=1024, held=1_000) == (3, 2_000.0)  # solo copies outside the stack
    # the slope is of the two largest trials (the smallest ones are the least representative)
    assert fit_stack_size({1: 5_000, 2: 6_000, 4: 10_000}, free=100_000, cap=1024) == (39, 2_000.0)


def test_too_little_or_too_few_measurements_give_a_stack_of_one_or_the_trial_size():
    assert fit_stack_size({1: 5_000, 2: 9_000}, free=10_000, cap=1024) == (1, 4_000.0)
    assert fit_stack_size({1: 5_000, 2: 9_000}, free=5_000, cap=1024) == (1, 4_000.0)  # not even one: at least 1
    assert fit_stack_size({}, free=10_000, cap=1024, failed=1) == (1, None)  # K=1 ran out of memory
    assert fit_stack_size({1: 1_000}, free=10_000, cap=1024, failed=2) == (1, None)
    assert fit_stack_size({1: 1_000}, free=10_000, cap=1) == (1, None)
    # no growth measured (allocator rounding): the whole peak counts as the members'
    assert fit_stack_size({1: 1_000, 2: 1_000}, free=10_000, cap=1024) == (16, 500.0)


def test_trial_sizes_double_until_one_no_longer_fits():
    def trial(K):
        return 100 + 1_000 * K

    assert doubling(trial, cap=64, budget=5_000) == ({1: 1_100, 2: 2_100, 4: 4_100, 8: 8_100}, None)
    assert doubling(trial, cap=3, budget=5_000) == ({1: 1_100, 2: 2_100, 3: 3_100}, None)
    assert doubling(trial, cap=64, budget=500) == ({1: 1_100}, None)

    def running_out(K):
        if K >= 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return trial(K)

    peaks, failed = doubling(running_out, cap=64, budget=1e9)
    assert (peaks, failed) == ({1: 1_100, 2: 2_100}, 4)
    assert fit_stack_size(peaks, free=10**9, cap=64, failed=failed) == (3, 1_000.0)

    def broken(K):
        raise ValueError("not a memory error")

    with pytest.raises(ValueError):  # another error is not a size that does not fit: the caller falls back
        doubling(broken, cap=64, budget=1e9)


# ------------------------------------------------------------------------------------- the trial step trains nothing

def _members(root: Path, seeds=(0, 1)):
    members = []
    for i in seeds:
        members.append(build_member(compose(*DIGITS, *REGULARIZED, f"seed={i}"), root / f"m{i}"))
        share_data(members)
    return members


def _clone(value):
    """A deep copy with every tensor cloned (optimizer and scheduler state dicts, generator states)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    return copy.deepcopy(value)


def _assert_same(a, b, where="") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


def _snapshot(members) -> dict:
    return {f"m{k}": {"model": _clone(m.run.model.state_dict()), "optimizer": _clone(m.run.optimizer.state_dict()),
                      "scheduler": _clone(m.run.scheduler.state_dict()), "rng": _clone(m.rng),
                      "state": (m.state.epoch, m.state.step, copy.deepcopy(m.state.history), m.state.status),
                      "best": _clone(m.run.best)}
            for k, m in enumerate(members)}


def test_a_trial_step_changes_no_member_nor_torchs_generators_nor_files(tmp_path):
    members = _members(tmp_path)
    stack = Stack(members)
    stack.train_epoch()  # the members have optimizer state and a stepped schedule, as after a checkpoint
    stack.write_back()
    del stack
    before, files = _snapshot(members), _files(tmp_path)
    assert before["m0"]["optimizer"]["state"] and before["m0"]["state"][:2] == (1, members[0].run.steps_per_epoch)
    global_rng = _clone(checkpoint.rng_state())

    for K in (1, 3):  # more copies than members: a trial stack's size is its own
        assert trial_step(members[0], K) is None  # a CPU measures nothing
    assert trial_step(members[1], 2) is None

    _assert_same(_snapshot(members), before, "member")
    _assert_same(checkpoint.rng_state(), global_rng, "global rng")
    assert _files(tmp_path) == files

    copies = sizing._copies(members[0], 2)  # what a trial trains: one step of its copies
    Stack(copies).train_epoch()
    assert [c.state.step for c in copies] == [members[0].state.step + 1] * 2
    assert not torch.equal(copies[0].rng["torch"], members[0].rng["torch"])  # drawn from the copies' generators
    _assert_same(_snapshot(members), before, "member")


def test_a_stack_trained_after_a_trial_step_trains_as_one_without_it(tmp_path):
    """The strongest check that nothing changed: the next epoch, bit for bit, with and without a trial first."""
    runs = []
    for name, trial in (("plain", False), ("trial", True)):
        members = _members(tmp_path / name)
        if trial:
            trial_step(members[0], 2)
        stack = Stack(members)
        losses = stack.train_epoch()
        stack.write_back()
        runs.append((losses, [m.run.model.state_dict() for m in members], [m.rng for m in members]))
    (losses_a, weights_a, rng_a), (losses_b, weights_b, rng_b) = runs
    assert torch.equal(losses_a, losses_b)
    _assert_same(weights_a, weights_b, "weights")
    _assert_same(rng_a, rng_b, "rng")


def test_on_a_cpu_stacks_are_sized_as_before_without_a_trial(tmp_path):
    cfgs = [compose(*DIGITS, f"seed={i}") for i in range(3)]
    member = build_member(cfgs[0], tmp_path / "m0")
    assert loop._stack_size(member, 3, cfgs) == MAX_STACK_CPU
    cfgs = [compose(*DIGITS, f"seed={i}", "stack=2") for i in range(3)]  # stack=N: the sweep's plan applies it
    assert loop._stack_size(member, 3, cfgs) == MAX_STACK_CPU
