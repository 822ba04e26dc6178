"""Dropout (Srivastava et al. 2014), inverted as in PyTorch: at training time each hidden unit is
zeroed with probability p and survivors are scaled by 1/(1−p), so evaluation uses the network as is."""

from __future__ import annotations

from regbench.errors import check_range
from regbench.regularizers.base import Regularizer


class Dropout(Regularizer):
    def __init__(self, p: float = 0.5, input_p: float = 0.0):
        check_range("p", p, 0, 1, high_inclusive=False)
        check_range("input_p", input_p, 0, 1, high_inclusive=False)
        self.p, self.input_p = p, input_p

    def model_options(self) -> dict:
        return {"dropout": self.p, "input_dropout": self.input_p}

    def describe(self) -> str:
        return f"dropout: p={self.p} on hidden units, {self.input_p} on inputs"
