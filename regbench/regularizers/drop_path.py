"""Stochastic depth (Huang et al. 2016, "Deep networks with stochastic depth").

In training each residual branch is dropped per sample, so the block passes its input through
unchanged; surviving branches are scaled by 1/(1 − pᵢ) and the network is used whole at eval.
``p`` is the rate of the last block, earlier blocks drop linearly less (the paper's rule, built
by :func:`regbench.models.residual.residual_trunk`). Only residual models have branches to drop
(resnet18, wide_resnet); any other model raises a ConfigError when it is built.
"""

from __future__ import annotations

from regbench.errors import check_range
from regbench.regularizers.base import Regularizer


class DropPath(Regularizer):
    """Asks the model for ``drop_path=p``; p = 0 builds no DropPath layer at all."""

    solo_only = ("torchvision's StochasticDepth draws inside the forward pass; no stacked form yet (and only residual models use it)")

    def __init__(self, p: float = 0.1):
        check_range("p", p, 0, 1, high_inclusive=False)
        self.p = p

    def model_options(self) -> dict:
        return {"drop_path": self.p}

    def describe(self) -> str:
        return f"{self.name}: stochastic depth, last block dropped with p={self.p}, earlier ones linearly less"
