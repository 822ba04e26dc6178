"""Max-norm constraint (Srivastava et al. 2014, "Dropout", §5.1; Srebro & Shraibman 2005).

After each optimizer step, every unit's incoming weight vector (a row of a linear weight, a
filter of a conv kernel) whose L2 norm exceeds ``c`` is scaled back onto the ball of radius c:
projected gradient descent on ‖wᵢ‖ ≤ c. Srivastava et al. pair it with dropout and a large
learning rate; c is typically 3 to 4. Biases and norm-layer gains are free.

The weights projected are those L2 and weight decay act on (kernels of rank ≥ 2). Under weight
normalization (``norm=weight``, w = g·v/‖v‖) a unit's norm is |gᵢ|, so g is what gets clipped;
the direction v is left alone, its scale does not change w.
"""

from __future__ import annotations

import math

import torch

from regbench.errors import check_range
from regbench.regularizers.base import Regularizer, Stacked, decay_parameters

_WEIGHT_NORM_DIRECTION = "parametrizations.weight.original1"


def max_norm_(tensors, c):
    """Per member, torch.renorm's formula on member-first tensors: each unit's incoming weights (a slice along the
    first dimension after the member's) scaled back to norm ≤ c[k]."""
    for v in tensors:
        norms = torch.linalg.vector_norm(v.flatten(2), 2, dim=2)  # [K, units]
        cc = c.to(v.device, v.dtype)[:, None]
        factor = torch.where(norms > cc, cc / (norms + 1e-7), torch.ones_like(norms))
        v.mul_(factor.view(*factor.shape, *[1] * (v.ndim - 2)))


class MaxNorm(Regularizer):
    """‖wᵢ‖₂ ≤ c for every unit i, enforced after each step (and once at setup)."""

    stacked = Stacked("after_step", max_norm_, number="c", identity=math.inf)

    def __init__(self, c: float = 3.0):
        check_range("c", c, 0, low_inclusive=False, allow_inf=True)  # inf: no constraint
        self.c = float(c)
        self.params: list[torch.nn.Parameter] = []
        self.covered: list[str] = []

    def setup(self, model, *, input_shape, num_classes):
        named = [(n, p) for n, p in decay_parameters(model) if not n.endswith(_WEIGHT_NORM_DIRECTION)]
        self.covered = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.after_step(model)  # start feasible, as projected gradient descent does

    @torch.no_grad()
    def after_step(self, model):
        if math.isinf(self.c):
            return
        for p in self.params:
            # renorm: each slice along dim 0 (one unit's incoming weights) scaled to norm ≤ c.
            p.copy_(torch.renorm(p, 2, 0, self.c))

    def describe(self) -> str:
        return f"{self.name}: per-unit weight norm ≤ {self.c} on {len(self.covered)} tensors: {', '.join(self.covered)}"
