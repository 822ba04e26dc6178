"""Which regularizers stack, read off the regularizers themselves.

A regularizer that only transforms batches (augmentations, mixup, label smoothing's targets) or asks the model
for layers (dropout, noise slots) stacks as it is: each member calls its own hooks, its masks drawn per member.
One that acts on the weights or the step declares its stacked form as the class attribute ``stacked``
(:class:`regbench.regularizers.base.Stacked`: the hook, the member's number, the number that does nothing, and
the member-first formula), written in its own module beside the solo hook; :class:`regbench.stack.engine.Stack`
calls it by hook. One that cannot stack says why in ``solo_only``; any other that overrides a weight or step
hook trains alone, with that reason in the log.
"""

from __future__ import annotations

import functools

import torch

from regbench.regularizers.base import Regularizer, Stacked

#: Hooks that need a stacked form; ``transform_batch`` never does (it is called per member).
_FORM_HOOKS = ("penalty", "after_backward", "before_step", "after_step", "eval_model")


def form_of(reg_or_cls) -> Stacked | None:
    cls = reg_or_cls if isinstance(reg_or_cls, type) else type(reg_or_cls)
    return cls.stacked if cls.solo_only is None else None


def member_forms(members: list) -> dict[str, list[tuple[Stacked, torch.Tensor, list[str] | None]]]:
    """A stack's forms by hook: one per regularizer slot (its kind, and which of that kind) any of its ``members``
    (:class:`regbench.stack.engine.Member`) has, with each member's number ``[K]`` (float64; a member without it gets
    the number that does nothing: strength 0, an infinite max norm) and the names of the params it covers (None:
    all)."""
    K = len(members)
    slots: dict[tuple, list] = {}  # (class, i-th of that class) → each member's regularizer or None
    for k, m in enumerate(members):
        seen: dict[type, int] = {}
        for reg in m.run.regs:
            if form_of(reg) is not None:
                slot = (type(reg), seen.get(type(reg), 0))
                seen[type(reg)] = slot[1] + 1
                slots.setdefault(slot, [None] * K)[k] = reg
    forms: dict[str, list] = {}
    for (cls, _), regs in slots.items():
        form = form_of(cls)
        values = torch.tensor([form.identity if r is None else float(getattr(r, form.number)) for r in regs],
                              dtype=torch.float64)
        reg = next(r for r in regs if r is not None)
        forms.setdefault(form.hook, []).append((form, values, getattr(reg, "covered", None)))
    return forms


@functools.cache
def catalog_forms() -> dict[type, str]:
    """The regularizer classes of regbench's own catalog (``conf/regularizer/``) that have a stacked form, each with
    the name of its config file (whose settings a member without it is keyed with)."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from regbench.config import CONFIG_DIR

    found: dict[type, str] = {}
    for path in sorted((CONFIG_DIR / "regularizer").glob("*.yaml")):
        for name, node in (OmegaConf.to_container(OmegaConf.load(path)) or {}).items():
            target = node.get("_target_") if isinstance(node, dict) else None
            if not target:
                continue
            try:
                cls = get_class(target)
            except Exception:
                continue
            if form_of(cls) is not None and cls not in found:
                found[cls] = path.stem
    return found


def regularizer_reason(reg: Regularizer) -> str | None:
    """Why this regularizer cannot train stacked, or None if it can."""
    cls = type(reg)
    if cls.solo_only is not None:
        return f"regularizer {reg.name}: {cls.solo_only}"
    form = form_of(cls)
    needs = [h for h in _FORM_HOOKS if reg.overrides(h) and (form is None or h != form.hook)]
    if needs:
        return f"regularizer {reg.name} ({cls.__name__}) overrides {', '.join(needs)}, which has no stacked form"
    if reg.overrides("state_dict"):
        return f"regularizer {reg.name} ({cls.__name__}) keeps state between steps; no stacked form"
    return None
