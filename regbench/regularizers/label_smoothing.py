"""Label smoothing (Szegedy et al. 2016, "Rethinking the Inception architecture", §7).

Training targets become (1 − ε)·y + ε/K: every class, the true one included, gets ε/K, so the
true class gets 1 − ε + ε/K (the convention of the paper and of ``F.cross_entropy``'s
``label_smoothing``). It is a target transform: the loss stays the one soft-target cross-entropy.
Rows already soft (after mixup or cutmix) are smoothed the same way and still sum to 1.
"""

from __future__ import annotations

import torch

from regbench.errors import check_range
from regbench.regularizers.base import Regularizer, soft_targets


class LabelSmoothing(Regularizer):
    """Mix each training target with the uniform distribution over the K classes, weight ε."""

    def __init__(self, eps: float = 0.1):
        check_range("eps", eps, 0, 1, high_inclusive=False)
        self.eps = eps
        self.num_classes: int | None = None

    def setup(self, model, *, input_shape, num_classes):
        self.num_classes = num_classes

    def transform_batch(self, x: torch.Tensor, y: torch.Tensor):
        if self.eps == 0:
            return x, y
        if self.num_classes is None:
            raise RuntimeError("LabelSmoothing.setup() must run before transform_batch()")
        return x, soft_targets(y, self.num_classes) * (1.0 - self.eps) + self.eps / self.num_classes

    def describe(self) -> str:
        return f"{self.name}: targets (1 − {self.eps})·y + {self.eps}/K"
