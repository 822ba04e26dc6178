"""Normalization layers as regularizers: ``regularizer=[batchnorm]`` is the with/without-BN ablation.

Each one only asks the model for ``norm=<kind>`` (the model option ``model.norm`` that
:mod:`regbench.models.layers` builds), so every model in the zoo gets the layer where its
architecture puts it. Two of them at once (``[batchnorm,layernorm]``) disagree on ``model.norm``
and the builder raises a ConfigError.

- ``batchnorm``: Ioffe & Szegedy (2015), batch statistics in training, running ones at eval.
- ``layernorm``: Ba, Kiros & Hinton (2016), each example normalized over all its features.
- ``groupnorm``: Wu & He (2018), each example over groups of channels (32 where the width allows).
- ``instancenorm``: Ulyanov, Vedaldi & Lempitsky (2016), each example and channel over positions;
  conv models only.
- ``weightnorm``: Salimans & Kingma (2016), w = g·v/‖v‖ for every linear and conv layer.
"""

from __future__ import annotations

from regbench.regularizers.base import Regularizer


class _Normalization(Regularizer):
    kind = "none"
    paper = ""

    def model_options(self) -> dict:
        return {"norm": self.kind}

    def describe(self) -> str:
        return f"{self.name}: model built with norm={self.kind} ({self.paper})"


class BatchNorm(_Normalization):
    """Batch normalization (Ioffe & Szegedy 2015)."""

    kind, paper = "batch", "Ioffe & Szegedy 2015"


class LayerNorm(_Normalization):
    """Layer normalization (Ba et al. 2016)."""

    kind, paper = "layer", "Ba et al. 2016"


class GroupNorm(_Normalization):
    """Group normalization (Wu & He 2018)."""

    kind, paper = "group", "Wu & He 2018"


class InstanceNorm(_Normalization):
    """Instance normalization (Ulyanov et al. 2016); needs a conv model."""

    kind, paper = "instance", "Ulyanov et al. 2016"


class WeightNorm(_Normalization):
    """Weight normalization (Salimans & Kingma 2016)."""

    kind, paper = "weight", "Salimans & Kingma 2016"
