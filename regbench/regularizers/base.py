"""The hooks through which a regularizer plugs into training.

The training loop never names a regularizer: it calls each hook on every active regularizer,
in the order the user listed them (``regularizer=[mixup,label_smoothing]``). Every hook is a
no-op by default, so a regularizer implements only the ones it needs:

==========================  ==============================================================
``check(input_shape, K)``   before anything runs: raise ConfigError if the data does not fit
``model_options()``         keyword options the model is built with (dropout, norm, noise)
``setup(model, ...)``       once, after the model is built (choose parameters, copy weights)
``transform_batch(x, y)``   training batches only: augment inputs, soften targets
``penalty(model)``          a term added to the training loss (L1, L2)
``after_backward(model)``   gradients are ready (clipping)
``before_step(model, opt)`` just before the optimizer step (decoupled weight decay)
``after_step(model)``       just after it (max-norm constraints, EMA)
``eval_model(model)``       the model to evaluate (EMA weights)
``state_dict()``            state that a checkpoint must carry for exact resume
==========================  ==============================================================

Targets ``y`` are class indices until a regularizer needs probability vectors; it then calls
:func:`soft_targets`. The loss is one cross-entropy that accepts either, so mixup, cutmix and
label smoothing are mere target transforms.

Constructors validate their arguments with :func:`regbench.errors.check_range`, which the
builder turns into a one-line error naming the full key (``regularizer.dropout.p``).

Randomness comes from torch's global generators (``torch.rand(..., device=x.device)``), which
the trainer seeds and saves in every checkpoint, so a resumed run draws the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
import torch.nn.functional as F


@dataclass(frozen=True)
class Stacked:
    """How K members' copies of a regularizer act at once when their runs train as one stack (:mod:`regbench.stack`).

    ``hook`` is the one hook the regularizer overrides besides ``check``/``setup``/``transform_batch``; ``number`` the
    attribute holding a member's setting (a strength, a norm bound) and ``identity`` the value that makes it do
    nothing, which members without the regularizer get. ``apply`` works on member-first tensors, by hook:

    - ``penalty``: ``apply(tensors, numbers) -> [K]`` losses, ``tensors`` the covered weights as ``[K, ...]``;
    - ``after_backward``: ``apply(grad, numbers)`` in place, ``grad`` the flat gradients ``[K, N]``;
    - ``before_step``: ``apply(tensors, numbers, lr)`` in place, ``lr`` each member's ``[K]``;
    - ``after_step``: ``apply(tensors, numbers)`` in place.

    ``numbers`` is ``[K]`` (float64). The covered weights are the regularizer's ``covered`` names (set in ``setup``),
    or every parameter without that attribute. Write the formula once, member-first, and let the solo hook call it
    on ``[p[None] for p in params]`` where its bits allow (tests/stack checks a form against its solo hook)."""

    hook: str
    apply: Callable
    number: str
    identity: float


class Regularizer:
    """Base class: subclasses override the hooks they need. ``name`` is the config key."""

    name: str = "regularizer"
    #: Its form in a stack of runs (:class:`Stacked`), if it overrides a hook besides check/setup/transform_batch.
    stacked: ClassVar[Stacked | None] = None
    #: Why it trains alone when its runs could otherwise stack (one line for the log), if it cannot stack.
    solo_only: ClassVar[str | None] = None

    def check(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        pass

    def model_options(self) -> dict:
        return {}

    def setup(self, model: nn.Module, *, input_shape: tuple[int, ...], num_classes: int) -> None:
        pass

    def transform_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        return None

    def after_backward(self, model: nn.Module) -> None:
        pass

    def before_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        pass

    def after_step(self, model: nn.Module) -> None:
        pass

    def eval_model(self, model: nn.Module) -> nn.Module:
        return model

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def describe(self) -> str:
        """One line for the log saying what this regularizer does to this run."""
        return self.name

    # Regularizers that override a hook are the only ones the loop calls it on, which keeps the
    # per-step cost of an inactive hook at zero.
    @classmethod
    def overrides(cls, hook: str) -> bool:
        return getattr(cls, hook) is not getattr(Regularizer, hook)


def soft_targets(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class indices → one-hot float rows; probability rows pass through unchanged."""
    if y.dtype.is_floating_point:
        return y
    return F.one_hot(y, num_classes).to(torch.float32)


def decay_parameters(model: nn.Module, exclude_bias_and_norm: bool = True) -> list[tuple[str, nn.Parameter]]:
    """The parameters that L1, L2 and weight decay act on.

    With ``exclude_bias_and_norm`` only weights of rank ≥ 2 (linear and conv kernels) are
    included: biases and the gains of norm layers are left free, as is common practice
    (nanoGPT's ``configure_optimizers``, timm's ``param_groups_weight_decay``).
    """
    return [
        (name, p)
        for name, p in model.named_parameters()
        if p.requires_grad and (not exclude_bias_and_norm or (p.ndim >= 2 and not _is_norm_param(model, name)))
    ]


def _is_norm_param(model: nn.Module, name: str) -> bool:
    module = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    return isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))
