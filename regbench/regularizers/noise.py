"""Noise injection in the network: on hidden activations, or on the weights.

- ``noise``: N(0, σ²) added to every hidden activation in training, the identity at eval
  (Poole, Sohl-Dickstein & Ganguli 2014, "Analyzing noise in autoencoders and deep networks";
  the model option ``noise_std``, placed after each activation by :mod:`regbench.models.layers`).
  Input noise is the augmentation ``gaussian_noise`` / ``signal_noise`` instead.
- ``weight_noise``: N(0, σ²) added to every linear and conv kernel for each training forward
  (An 1996, "The effects of adding noise during backpropagation training on a generalization
  performance"; Graves 2011). The gradient taken at w + ε updates the clean w.
"""

from __future__ import annotations

from torch import nn

from regbench.errors import check_range
from regbench.models.layers import TrainingNoise
from regbench.regularizers.base import Regularizer

KERNELS = (nn.Linear, nn.Conv1d, nn.Conv2d)


class ActivationNoise(Regularizer):
    """Asks the model for ``noise_std=std``; std = 0 builds no noise layer at all."""

    def __init__(self, std: float = 0.1):
        check_range("std", std, 0)
        self.std = std

    def model_options(self) -> dict:
        return {"noise_std": self.std}

    def describe(self) -> str:
        return f"{self.name}: N(0, {self.std}²) added to hidden activations in training"


class WeightNoise(Regularizer):
    """Gaussian weight noise, drawn afresh for each training forward (one draw per batch).

    Implemented as a parametrization of each kernel (``torch.nn.utils.parametrize``), so nothing
    is added to the stored weights and nothing has to be undone: the optimizer, L2 and weight
    decay, max-norm and checkpoints all see the clean weights, and evaluation (eval mode) uses
    them too. On a weight-normalized layer the noise is added to the effective weight g·v/‖v‖.
    """

    solo_only = ("its noise is a parametrization drawn inside the forward pass, which cannot draw from each member's own generator under vmap")

    def __init__(self, std: float = 0.01):
        check_range("std", std, 0)
        self.std = std
        self.covered: list[str] = []

    def setup(self, model, *, input_shape, num_classes):
        if self.std == 0:
            return
        for name, module in list(model.named_modules()):
            if isinstance(module, KERNELS):
                nn.utils.parametrize.register_parametrization(module, "weight", TrainingNoise(self.std))
                self.covered.append(f"{name}.weight" if name else "weight")

    def describe(self) -> str:
        return f"{self.name}: N(0, {self.std}²) added to {len(self.covered)} kernels for each training forward"
