"""Sample-mixing regularizers: mixup and CutMix, as transforms of inputs and soft targets.

Both pair every sample with one from a random permutation of the batch (as timm's ``Mixup``)
and return targets as probability rows, convex combinations of the pair's targets that sum
to 1, so the loss stays one soft-target cross-entropy. Targets already softened by an earlier
regularizer (label smoothing) are mixed as they are.
"""

from __future__ import annotations

import torch

from regbench.errors import check_range
from regbench.regularizers import augment as A
from regbench.regularizers.base import soft_targets


class _Mixing(A.Augmentation):
    """Shared by mixup and CutMix: α of the Beta(α, α) mixing distribution, and the class count."""

    def __init__(self, alpha: float):
        check_range("alpha", alpha, 0)
        self.alpha = alpha
        self.num_classes: int | None = None

    def setup(self, model, *, input_shape, num_classes):
        self.num_classes = num_classes  # to turn class indices into one-hot rows

    def _targets(self, y: torch.Tensor) -> torch.Tensor:
        if self.num_classes is None and not y.dtype.is_floating_point:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before transform_batch()")
        return soft_targets(y, self.num_classes)


class Mixup(_Mixing):
    """mixup (Zhang et al. 2018): train on λ·(xᵢ, yᵢ) + (1 − λ)·(xⱼ, yⱼ) with λ ~ Beta(α, α).

    One λ per batch, as in the paper; α = 0 disables it. Small α keeps λ near 0 or 1 (mostly
    clean samples); α = 1 draws λ uniformly.
    """

    def __init__(self, alpha: float = 0.2):
        super().__init__(alpha)

    def transform_batch(self, x, y):
        if self.alpha == 0:
            return x, y
        lam = A.beta(self.alpha, 1, x.device).to(x.dtype)
        perm = torch.randperm(len(x), device=x.device)
        return A.batch_mixup(x, self._targets(y), lam, perm)

    def describe(self):
        return f"{self.name}: mixup with λ ~ Beta({self.alpha}, {self.alpha})"


class CutMix(_Mixing):
    """CutMix (Yun et al. 2019): paste a box of area ≈ 1 − λ from a partner, λ ~ Beta(α, α).

    The box lies wholly inside the sample (the reference code clips it at the border instead,
    which biases λ upwards) and the targets use λ corrected to its exact area in whole pixels.
    Works on images (C, H, W) and on 1-D signals (C, L), where the box is a segment. One box for
    the whole batch (the paper), or one per sample with ``per_sample``.
    """

    ranks = (2, 3)
    layout = "(C, L) or (C, H, W)"

    def __init__(self, alpha: float = 1.0, per_sample: bool = False):
        super().__init__(alpha)
        self.per_sample = bool(per_sample)

    def transform_batch(self, x, y):
        if self.alpha == 0:
            return x, y
        lam = A.beta(self.alpha, len(x) if self.per_sample else 1, x.device)
        perm = torch.randperm(len(x), device=x.device)
        x, y, _ = A.batch_cutmix(x, self._targets(y), lam, perm)
        return x, y

    def describe(self):
        boxes = "a box per sample" if self.per_sample else "one box per batch"
        return f"{self.name}: cutmix with λ ~ Beta({self.alpha}, {self.alpha}), {boxes}"
