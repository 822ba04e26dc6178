"""Penalties on the weights: L2 and L1 through the loss, and decoupled weight decay.

Under plain SGD, L2 with λ and weight decay with λ give the same update
(w ← w − η(∇L + λw) = (1 − ηλ)w − η∇L). Under Adam they differ: the L2 gradient is divided by
Adam's adaptive scale, the decoupled decay is not (Loshchilov & Hutter 2019, "Decoupled Weight
Decay Regularization": Adam + L2 vs AdamW).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from regbench.errors import check_range
from regbench.regularizers.base import Regularizer, Stacked, decay_parameters

log = logging.getLogger("regbench")


class _WeightPenalty(Regularizer):
    def __init__(self, strength: float, exclude_bias_and_norm: bool = True):
        check_range("strength", strength, 0)
        self.strength, self.exclude_bias_and_norm = strength, exclude_bias_and_norm
        self.params: list[nn.Parameter] = []
        self.covered: list[str] = []

    def setup(self, model, *, input_shape, num_classes):
        named = decay_parameters(model, self.exclude_bias_and_norm)
        self.covered = [n for n, _ in named]
        self.params = [p for _, p in named]
        total = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log.info("%s (strength %g) covers %d of %d parameter tensors, %d of %d weights%s", self.name, self.strength,
                 len(self.params), len(list(model.parameters())), sum(p.numel() for p in self.params), total,
                 " (biases and norm gains excluded)" if self.exclude_bias_and_norm else "")

    def describe(self) -> str:
        return f"{self.name}: strength {self.strength} on {len(self.covered)} tensors: {', '.join(self.covered)}"


def l2_penalty(tensors, strength):
    """λ/2 · Σ‖w‖², per member: ``tensors`` member-first ``[K, ...]``, ``strength`` ``[K]``."""
    return 0.5 * strength * sum(v.pow(2).flatten(1).sum(1) for v in tensors)


def l1_penalty(tensors, strength):
    """λ · Σ‖w‖₁, per member (member-first tensors)."""
    return strength * sum(v.abs().flatten(1).sum(1) for v in tensors)


def decay_(tensors, strength, lr):
    """Decoupled decay w ← (1 − lr·λ) w in place, per member: lr and λ ``[K]`` float64, their product in double and
    one cast to float32, as the solo hook's Python floats are."""
    factor = (1.0 - lr * strength).to(torch.float32)
    for v in tensors:
        v.mul_(factor.to(v.device).view(-1, *[1] * (v.ndim - 1)))


class L2(_WeightPenalty):
    """λ/2 · ‖w‖² added to the loss (Tikhonov; Krogh & Hertz 1992). Its gradient is λw."""

    stacked = Stacked("penalty", l2_penalty, number="strength", identity=0.0)

    def penalty(self, model):
        if self.strength == 0:
            return torch.zeros(())
        return 0.5 * self.strength * sum(p.pow(2).sum() for p in self.params)


class L1(_WeightPenalty):
    """λ · ‖w‖₁ added to the loss (Tibshirani 1996): a constant pull to zero that makes weights sparse."""

    stacked = Stacked("penalty", l1_penalty, number="strength", identity=0.0)

    def penalty(self, model):
        if self.strength == 0:
            return torch.zeros(())
        return self.strength * sum(p.abs().sum() for p in self.params)


class WeightDecay(_WeightPenalty):
    """Decoupled weight decay: w ← (1 − η_t·λ) w before each optimizer step, η_t the scheduled lr.

    With ``optimizer=adam`` this is exactly AdamW; with SGD it equals L2 (Loshchilov & Hutter 2019).
    """

    stacked = Stacked("before_step", decay_, number="strength", identity=0.0)

    @torch.no_grad()
    def before_step(self, model, optimizer):
        if self.strength == 0:
            return
        lr = optimizer.param_groups[0]["lr"]
        torch._foreach_mul_(self.params, 1.0 - lr * self.strength)
