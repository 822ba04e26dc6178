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
from regbench.regularizers.base import Regularizer, Stacked


def clip_(grad, max_norm):
    """Per member, clip_grad_norm_'s formula on flat gradients ``[K, N]``: scaled by max_norm / (‖g‖ + 1e-6) when that
    is below 1; an infinite bound (a member without clipping) leaves its row as it is."""
    total = torch.linalg.vector_norm(grad, 2, dim=1)
    coef = (max_norm.to(grad.device, grad.dtype) / (total + 1e-6)).clamp(max=1.0)
    coef = torch.where(torch.isinf(max_norm.to(grad.device)), torch.ones_like(coef), coef)
    grad.mul_(coef[:, None])


class GradClip(Regularizer):
    """``torch.nn.utils.clip_grad_norm_`` over every parameter, after each backward."""

    stacked = Stacked("after_backward", clip_, number="max_norm", identity=math.inf)

    def __init__(self, max_norm: float = 1.0):
        check_range("max_norm", max_norm, 0, low_inclusive=False, allow_inf=True)  # inf: no clipping
        self.max_norm = float(max_norm)

    def after_backward(self, model):
        if math.isinf(self.max_norm):
            return
        torch.nn.utils.clip_grad_norm_(model.parameters(), self.max_norm)

    def describe(self) -> str:
        return f"{self.name}: global gradient norm clipped to {self.max_norm}"
