"""Gradient clipping by global norm (Pascanu, Mikolov & Bengio 2013, "On the difficulty of training
recurrent neural networks").

After backward, if the norm of all gradients taken as one vector exceeds ``max_norm``, every
gradient is scaled by max_norm/norm: the direction is kept, the step length is bounded.
``max_norm=inf`` disables it.
"""

from __future__ import annotations

import math

import torch

from regbench.errors import check_range
from regbench.regularizers.base import Regularizer


class GradClip(Regularizer):
    """``torch.nn.utils.clip_grad_norm_`` over every parameter, after each backward."""

    def __init__(self, max_norm: float = 1.0):
        check_range("max_norm", max_norm, 0, low_inclusive=False, allow_inf=True)  # inf: no clipping
        self.max_norm = float(max_norm)

    def after_backward(self, model):
        if math.isinf(self.max_norm):
            return
        torch.nn.utils.clip_grad_norm_(model.parameters(), self.max_norm)

    def describe(self) -> str:
        return f"{self.name}: global gradient norm clipped to {self.max_norm}"
