"""The training objective, written once: solo training, evaluation and stacked training call :func:`cross_entropy`."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of ``logits`` ``[..., B, C]`` against class indices ``[..., B]`` or probability rows
    ``[..., B, C]`` (after mixup or label smoothing), reduced over the batch (``mean``, ``sum`` or ``none``).
    Leading dimensions are kept: a stack of K members gives K losses, each computed by the same kernel, in the
    same order, as the member's solo run computes its own (2-D logits are handed to ``F.cross_entropy`` as they are)."""
    if logits.dim() == 2:
        return F.cross_entropy(logits, y, reduction=reduction)
    lead, b = logits.shape[:-2], logits.shape[-2]
    rows = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1, *y.shape[len(lead) + 1:]),
                           reduction="none").view(*lead, b)
    if reduction == "mean":
        return rows.mean(-1)
    if reduction == "sum":
        return rows.sum(-1)
    return rows
