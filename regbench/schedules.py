"""Learning-rate schedules: a factor on the optimizer's lr, a pure function of the step.

Each ``conf/scheduler/<name>.yaml`` points at one of these classes. Every schedule starts with a linear
warmup over ``warmup_epochs`` (0: none); one ``LambdaLR`` keeps the rate a function of the step, so
resuming restores it exactly. A new schedule is a subclass overriding :meth:`Schedule.decay` and a YAML.
"""

from __future__ import annotations

import math

from regbench.errors import check_int, check_range


class Schedule:
    def __init__(self, warmup_epochs: int = 0):
        check_int("warmup_epochs", warmup_epochs, 0)
        self.warmup_epochs = warmup_epochs

    def decay(self, epoch: int, progress: float) -> float:
        """The factor after warmup, at ``epoch`` and ``progress`` ∈ [0, 1] through the post-warmup steps."""
        return 1.0

    def lr_scheduler(self, optimizer, steps_per_epoch: int, max_epochs: int):
        """A per-step LambdaLR, or None when the rate never changes (the bare loop's speed)."""
        import torch

        warmup = self.warmup_epochs * steps_per_epoch
        total = max_epochs * steps_per_epoch
        if type(self).decay is Schedule.decay and warmup == 0:
            return None
        self.base_lr = optimizer.param_groups[0]["lr"]

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return self.decay(step // steps_per_epoch, (step - warmup) / max(1, total - warmup))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Constant(Schedule):
    """The optimizer's lr throughout (after the warmup, if any)."""


class Step(Schedule):
    """lr × gamma every ``step_size`` epochs."""

    def __init__(self, step_size: int = 30, gamma: float = 0.1, warmup_epochs: int = 0):
        super().__init__(warmup_epochs)
        check_int("step_size", step_size, 1)
        check_range("gamma", gamma, 0, 1, low_inclusive=False)
        self.step_size, self.gamma = step_size, gamma

    def decay(self, epoch: int, progress: float) -> float:
        return self.gamma ** (epoch // self.step_size)


class Exponential(Schedule):
    """lr × gamma each epoch (Zhang et al. 2017: 0.95)."""

    def __init__(self, gamma: float = 0.95, warmup_epochs: int = 0):
        super().__init__(warmup_epochs)
        check_range("gamma", gamma, 0, 1, low_inclusive=False)
        self.gamma = gamma

    def decay(self, epoch: int, progress: float) -> float:
        return self.gamma ** epoch


class Cosine(Schedule):
    """Cosine decay from lr to ``min_lr`` over the run, per step (Loshchilov & Hutter 2017, without restarts)."""

    def __init__(self, min_lr: float = 0.0, warmup_epochs: int = 0):
        super().__init__(warmup_epochs)
        check_range("min_lr", min_lr, 0)
        self.min_lr = min_lr

    def decay(self, epoch: int, progress: float) -> float:
        floor = self.min_lr / self.base_lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
