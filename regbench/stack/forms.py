"""What each regularizer does in a stack: its stacked form, or why it trains alone.

A form is the hook where the regularizer acts (a penalty added to the loss, or a step around the optimizer's:
clipping after backward, decoupled decay before the step, max-norm after it), the member's number it reads, and
the number that makes it do nothing, so that members with and without it share one stack. The non-penalty hooks
are carried out by :class:`regbench.stack.engine.Stack` on the flat parameters. A regularizer that only
transforms batches (augmentations, mixup, label smoothing's targets) needs no form: each member calls its own
``transform_batch``. A new regularizer that overrides another hook trains solo, with the reason in the log,
until it has an entry here.
"""

from __future__ import annotations

import math

from regbench.regularizers.base import Regularizer


def _penalty_l2(reg, views, strength):
    return 0.5 * strength * sum(v.pow(2).flatten(1).sum(1) for v in views)


def _penalty_l1(reg, views, strength):
    return strength * sum(v.abs().flatten(1).sum(1) for v in views)


def regularizer_forms() -> tuple[dict, dict]:
    """(stacked forms keyed by class, reasons keyed by class for those that train solo).

    A form is (hook, penalty function, the attribute holding the member's number, the number that makes it
    do nothing, its config): a member without the regularizer trains with that number, exactly as without."""
    from regbench.regularizers import drop_path, ema, grad_clip, max_norm, noise, penalties

    forms = {
        penalties.L2: ("penalty", _penalty_l2, "strength", 0.0, "l2"),
        penalties.L1: ("penalty", _penalty_l1, "strength", 0.0, "l1"),
        penalties.WeightDecay: ("before_step", None, "strength", 0.0, "weight_decay"),
        grad_clip.GradClip: ("after_backward", None, "max_norm", math.inf, "grad_clip"),
        max_norm.MaxNorm: ("after_step", None, "c", math.inf, "max_norm"),
    }
    reasons = {
        ema.EMA: "evaluation swaps in a shadow model (eval_model) and its state is a second set of weights; "
                 "no stacked form yet",
        noise.WeightNoise: "its noise is a parametrization drawn inside the forward pass, which cannot draw "
                           "from each member's own generator under vmap",
        drop_path.DropPath: "torchvision's StochasticDepth draws inside the forward pass; no stacked form yet "
                            "(and only residual models use it)",
    }
    return forms, reasons


#: Hooks that need a stacked form; ``transform_batch`` never does (it is called per member).
_FORM_HOOKS = ("penalty", "after_backward", "before_step", "after_step", "eval_model")


def regularizer_reason(reg: Regularizer) -> str | None:
    """Why this regularizer cannot train stacked, or None if it can."""
    forms, reasons = regularizer_forms()
    cls = type(reg)
    if cls in reasons:
        return f"regularizer {reg.name}: {reasons[cls]}"
    if cls in forms:
        return None
    needs = [h for h in _FORM_HOOKS if reg.overrides(h)]
    if needs:
        return f"regularizer {reg.name} ({cls.__name__}) overrides {', '.join(needs)}, which has no stacked form"
    if reg.overrides("state_dict"):
        return f"regularizer {reg.name} ({cls.__name__}) keeps state between steps; no stacked form"
    return None
