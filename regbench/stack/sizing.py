"""How many members a stack on a CUDA device has, measured (issue #33): trial steps of stacks of K copies of the
first member, HFTA-style (K = 1, 2, 4, ... until a trial no longer fits), give the peak bytes per member; the stack
size is what fits in :data:`MARGIN` of the free memory, capped by the runs to train,
:data:`~regbench.stack.grouping.MAX_STACK_CUDA` and ``stack=N``.

- :func:`trial_step`: one training step (forward, backward, optimizer step, as :meth:`Stack.train_epoch` runs
  them) and one evaluation batch of a stack of K copies of a member; on CUDA the bytes they allocate at their
  peak. It trains nothing of the member: its copies share its model and optimizer, which a stack only reads,
  and have their own state, generators and no scheduler (the one thing :func:`~regbench.stack.optim.lr_table`
  steps); torch's global generators are restored. On a CPU it runs as well and measures nothing.
- :func:`doubling`: the trial sizes, 1, 2, 4, ... until one runs out of memory, exceeds the budget or reaches
  the cap.
- :func:`fit_stack_size`: the arithmetic, pure: from the peaks at the trial sizes, the free bytes, the margin and
  the cap, the size.
- :func:`measured_stack_size`: the three on a CUDA device, with the parameter estimate
  (:func:`~regbench.stack.grouping.max_stack_size`) as the fallback when the trial cannot run.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import logging
from typing import Callable

import torch

from regbench import checkpoint
from regbench.stack.engine import Member, Stack
from regbench.stack.grouping import MAX_STACK_CUDA

log = logging.getLogger("regbench")

MARGIN = 0.8  # of the free memory a stack may take at its peak: the rest for the allocator's fragmentation,
#               the members' data where it differs (label noise, input corruption) and the stack's rebuild
HELD_PER_PARAM = 4  # copies of each parameter a member holds outside its stack: solo weights, Adam's two
#                     moments (written back at a checkpoint), the best epoch's weights


def fit_stack_size(peaks: dict[int, int], free: int, cap: int, failed: int | None = None, held: int = 0,
                   margin: float = MARGIN) -> tuple[int, float | None]:
    """(members per stack, bytes per member or None) from a trial.

    ``peaks``: each trial size K that ran → the bytes its step allocated at its peak over what was allocated
    before it; ``free``: the bytes the device could allocate before it; ``failed``: the trial size that ran out
    of memory, if one did; ``held``: bytes each member holds outside the stack (added per member); ``cap``: at most
    that many. The size is the largest K whose peak, on the line through the two largest trial sizes (slope: bytes
    per member, plus ``held``), is within ``margin * free``; below ``failed``; at least 1, at most ``cap``. With one
    trial size (the next did not fit, or the cap is 1) it is that size; with none (K=1 did not fit), 1."""
    ks = sorted(peaks)
    if len(ks) < 2:
        return (max(1, min(cap, ks[-1])) if ks else 1), None
    a, b = ks[-2], ks[-1]
    slope = (peaks[b] - peaks[a]) / (b - a)
    if slope <= 0:  # no growth measured (allocator rounding): count the whole peak as the members'
        slope = peaks[b] / b
    fixed = peaks[b] - b * slope  # what a stack of any size allocates
    per = max(slope + held, 1.0)
    size = int((margin * free - fixed) // per)
    if failed is not None:
        size = min(size, failed - 1)
    return max(1, min(size, cap)), per


def doubling(trial: Callable[[int], int], cap: int, budget: float) -> tuple[dict[int, int], int | None]:
    """Trial sizes K = 1, 2, 4, ... (the last one ``cap``) until one runs out of memory (it is ``failed``), its peak
    exceeds ``budget`` or it reaches ``cap``: (K → peak bytes of ``trial(K)``, failed or None). Memory an
    out-of-memory trial held is freed after it (its traceback gone) before the next."""
    peaks: dict[int, int] = {}
    failed, K = None, 1
    while True:
        try:
            peaks[K] = trial(K)
        except torch.cuda.OutOfMemoryError:
            failed = K
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if failed is not None or peaks[K] > budget or K >= cap:
            return peaks, failed
        K = min(2 * K, cap)


def trial_step(member: Member, K: int) -> int | None:
    """One training step and one evaluation batch of a stack of ``K`` copies of ``member``, the work of
    :meth:`Stack.train_epoch` (data order, draws, forward, backward, the regularizers' forms, the optimizer step)
    and :meth:`Stack.evaluate` at their batch sizes; on CUDA the bytes allocated at their peak over what was
    allocated before, elsewhere None.

    Nothing of ``member`` changes (weights, buffers, optimizer state and lr, scheduler, state, generators, files):
    the copies read its model and optimizer, and have their own run state, generator states, no scheduler and one
    step an epoch; torch's (and numpy's, Python's) global generators are restored after."""
    device = member.run.data.x_train.device
    cuda = device.type == "cuda"
    saved, level = checkpoint.rng_state(), log.level
    log.setLevel(logging.WARNING)  # a trial stack's "trains under vmap" is the real stack's to say
    try:
        if cuda:
            torch.cuda.synchronize(device)
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        stack = Stack(_copies(member, K))
        stack.train_epoch()
        stack.evaluate("val")
        if not cuda:
            return None
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    finally:
        log.setLevel(level)
        checkpoint.set_rng_state(saved)


def _copies(member: Member, K: int) -> list[Member]:
    """``K`` trial members of ``member``'s model, optimizer and data (one step an epoch, one evaluation batch of
    val), each with its own run state and generator states and no scheduler."""
    run = member.run
    data = dataclasses.replace(run.data, x_val=run.data.x_val[:run.trainer.eval_batch_size],
                               y_val=run.data.y_val[:run.trainer.eval_batch_size])
    copies = []
    for _ in range(K):
        trial = copy.copy(member)
        trial.run = dataclasses.replace(run, data=data, scheduler=None, steps_per_epoch=1, forward=None, best=None,
                                        prune=None)
        trial.state = copy.deepcopy(member.state)
        trial.rng = copy.deepcopy(member.rng)
        copies.append(trial)
    return copies


def measured_stack_size(member: Member, cap: int, estimate: Callable[[], int]) -> int:
    """Members per stack on ``member``'s CUDA device, at most ``cap``: measured by :func:`doubling` trials of
    :func:`trial_step`, fitted by :func:`fit_stack_size` to :data:`MARGIN` of the free memory; ``estimate()`` (the
    parameter estimate, made only then) if the trial cannot run. One INFO line says the bytes per member and the size."""
    device = member.run.data.x_train.device
    cap = max(1, min(cap, MAX_STACK_CUDA))
    if cap == 1:
        return 1
    gc.collect()
    torch.cuda.empty_cache()
    free = (torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device)
            - torch.cuda.memory_allocated(device))
    held = HELD_PER_PARAM * sum(p.numel() * p.element_size() for p in member.run.model.parameters())
    try:
        peaks, failed = doubling(lambda K: trial_step(member, K), cap, MARGIN * free)
    except Exception as e:  # noqa: BLE001 - the estimate still sizes the stacks; the real stack reports its error
        size = max(1, min(estimate(), cap))
        log.warning("stack sizing: the trial step failed (%s: %s); sized by the parameter estimate: %d",
                    type(e).__name__, e, size)
        return size
    size, per = fit_stack_size(peaks, free, cap, failed, held)
    log.info("stack size %d on %s: %s bytes per member measured (trial stacks %s%s; %.2f GiB free, margin %.0f%%, "
             "cap %d)", size, device, "no" if per is None else f"{per:,.0f}", sorted(peaks),
             f", {failed} out of memory" if failed else "", free / 2**30, 100 * MARGIN, cap)
    return size
