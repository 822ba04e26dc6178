"""Exponential moving average of the weights (Polyak & Juditsky 1992; the EMA of Tensorflow's
``ExponentialMovingAverage`` and timm's ``ModelEmaV2``).

A shadow copy of the model is updated after every optimizer step,
    shadow ← decay · shadow + (1 − decay) · model,
over every floating-point entry of the state dict (weights and buffers such as BatchNorm's running
statistics; integer buffers are copied). Evaluation, early stopping and the final test use the
shadow. Its state goes into every checkpoint, ``last.pt`` and ``best.pt``, so a resumed run
continues the same average and the selected epoch is evaluated with its own average.
``decay: 0`` makes the shadow the model itself: no copy is kept.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from regbench.errors import check_range
from regbench.regularizers.base import Regularizer


class EMA(Regularizer):
    """Polyak averaging with a constant decay, the shadow starting at the initial weights."""

    solo_only = ("evaluation swaps in a shadow model (eval_model) and its state is a second set of weights; no stacked form yet")

    def __init__(self, decay: float = 0.999):
        check_range("decay", decay, 0, 1, high_inclusive=False)
        self.decay = decay
        self.model: nn.Module | None = None
        self.shadow: nn.Module | None = None
        self.updates = 0
        self._start: dict[int, torch.Tensor] = {}

    def setup(self, model, *, input_shape, num_classes):
        self.model = model
        # The average starts at the weights training starts from. The copy itself is made when first
        # needed, so that it has the model's final structure (weight_noise, even when listed after ema,
        # parametrizes the kernels in its own setup); the starting values are kept here per tensor,
        # which a parametrization moves into the model's new structure without replacing.
        if self.decay > 0:
            self._start = {id(t): t.detach().clone() for t in _tensors(model)}

    @torch.no_grad()
    def _shadow(self) -> nn.Module:
        if self.shadow is None:
            if self.model is None:
                raise RuntimeError("EMA.setup() must run before the EMA is used")
            shadow = copy.deepcopy(self.model).eval().requires_grad_(False)
            for t, s in zip(_tensors(self.model), _tensors(shadow)):
                if id(t) in self._start:
                    s.copy_(self._start[id(t)])
            self.shadow, self._start = shadow, {}
        return self.shadow

    @torch.no_grad()
    def after_step(self, model):
        if self.decay == 0:
            return
        shadow = self._shadow().state_dict()
        averaged, current = [], []
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                averaged.append(shadow[key])
                current.append(value)
            else:
                shadow[key].copy_(value)
        # One fused call over all float tensors (as timm's ModelEmaV3): s + (1 − d)(w − s) = d·s + (1 − d)·w.
        torch._foreach_lerp_(averaged, current, 1.0 - self.decay)
        self.updates += 1

    def eval_model(self, model):
        if self.decay == 0:
            return model
        return self._shadow()

    def state_dict(self) -> dict:
        if self.decay == 0:
            return {}
        return {"shadow": {k: v.clone() for k, v in self._shadow().state_dict().items()}, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        if self.decay == 0 or not state:
            return
        self._shadow().load_state_dict(state["shadow"])
        self.updates = state["updates"]

    def describe(self) -> str:
        return f"{self.name}: evaluation with an exponential moving average of the weights, decay {self.decay}"


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    """Parameters then buffers, in the same order for a model and its deep copy."""
    return [*model.parameters(), *model.buffers()]
