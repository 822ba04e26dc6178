"""A stack's one network: the first member's model with the stack's layers (:mod:`regbench.stack.folded`) in place
of its own, on the meta device, and the two ways of calling it with the members' stacked tensors."""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from regbench.stack.folded import (FoldedBatchNorm, FoldedConv1d, FoldedConv2d, FoldedLinear, MaskLayer,
                                   UnfoldConv1d, attribute_slots, channels_last, conv_norms, convertible_conv,
                                   fold_reason, pool_before_relu, set_submodule)
from regbench.stack.grouping import is_random_slot

log = logging.getLogger("regbench")


class Template:
    """The template of K members' ``models`` (their parameters ``param_names`` and buffers ``buffer_names``) for
    data on ``device`` with examples of ``input_shape``.

    - ``random_slots``: path → (mode, each member's module there) of its dropout and noise layers, which became
      :class:`MaskLayer` slots (``"mul"``: dropout, ``"add"``: noise);
    - ``folded``: its members' rows are folded into one batch without vmap (``fold`` asks for it; ``fold_reason``
      says why not), with ``channels_last`` 2-D maps and ``folded_conv`` layers;
    - ``forward_each(tensors, x)``: logits ``[K, B, classes]`` of each member's batch ``x [K, B, ...]`` with its own
      stacked ``tensors`` (parameters, buffers and masks by name); ``forward_shared``: of one batch ``x [B, ...]``;
    - ``trace_model``: a meta-device copy of a member's model, ``eval_module``: a real one (evaluation one member
      at a time)."""

    def __init__(self, models: list[nn.Module], device: torch.device, input_shape: tuple, param_names: list[str],
                 buffer_names: list[str], fold: bool):
        self.K = K = len(models)
        template = copy.deepcopy(models[0])
        self.random_slots = _mask_slots(template, models)
        if device.type == "cpu":
            for path, module in list(template.named_modules()):
                if path and convertible_conv(module):
                    set_submodule(template, path, UnfoldConv1d(module))
        self.trace_model = copy.deepcopy(models[0]).to("meta").eval()
        norms = conv_norms(self.trace_model, input_shape)
        self.fold_reason = fold_reason(template, buffer_names, norms) if fold else "vmap asked for"
        self.folded = self.fold_reason is None
        if self.folded:
            _fold(template, K)
        elif fold:
            log.info("a stack of %d trains under vmap: %s", K, self.fold_reason)
        # a 2-D CNN's maps are channels last in memory, the input and masks too (mixed layouts slow elementwise ops)
        self.channels_last = self.folded and any(type(m) is FoldedConv2d for m in template.modules())
        self.folded_conv = self.folded and any(type(m) in (FoldedConv1d, FoldedConv2d) for m in template.modules())
        self.module = template.to("meta")
        self.eval_module = copy.deepcopy(models[0])  # its own layers, for evaluation one member at a time
        if self.folded:
            self.forward_each = self._folded_forward([*param_names, *buffer_names,
                                                      *(f"{p}.mask" for p in self.random_slots)])
            self.forward_shared = lambda tensors, x: self.forward_each(tensors, x.expand(K, *x.shape))
        else:
            def call(tensors, x):
                return torch.func.functional_call(self.module, tensors, (x,))

            self.forward_each = torch.func.vmap(call, in_dims=(0, 0), randomness="error")
            self.forward_shared = torch.func.vmap(call, in_dims=(0, None), randomness="error")

    def train(self) -> None:
        self.module.train()

    def eval(self) -> None:
        self.module.eval()

    def _folded_forward(self, names: list[str]):
        bind = attribute_slots(self.module, names)
        template, as_channels_last = self.module, self.channels_last

        def rows(t):  # [K, B, ...] → [K*B, ...]
            t = t.flatten(0, 1)
            return channels_last(t) if as_channels_last and t.dim() == 4 else t

        def folded(tensors, x):  # x [K, B, ...], a mask [K, B, ...]: the rows of all members as one batch
            for module, attr, name in bind:  # functional_call's job, without its bookkeeping (0.3 ms a step)
                t = tensors.get(name)  # evaluation passes no masks: the mask layers are then the identity
                setattr(module, attr, rows(t) if t is not None and attr == "mask" else t)
            out = template(rows(x))
            return out.view(*x.shape[:2], *out.shape[1:])

        return folded


def _mask_slots(template: nn.Module, models: list[nn.Module]) -> dict[str, tuple[str, list[nn.Module]]]:
    """Make the template's dropout and noise layers :class:`MaskLayer` slots; path → (mode, each member's module)."""
    slots = {}
    for path, _ in models[0].named_modules():
        if not path:
            continue
        at = [m.get_submodule(path) for m in models]
        if not all(is_random_slot(a) for a in at) or all(isinstance(a, nn.Identity) for a in at):
            continue
        kinds = {type(a) for a in at if not isinstance(a, nn.Identity)}
        if len(kinds) > 1:
            raise ValueError(f"members differ in the kind of layer {path}: {sorted(k.__name__ for k in kinds)}")
        mode = "mul" if kinds == {nn.Dropout} else "add"
        slots[path] = (mode, at)
        set_submodule(template, path, MaskLayer(mode))
    return slots


def _fold(template: nn.Module, K: int) -> None:
    """Replace the template's layers by their folded forms, for the K members' rows as one batch."""
    for path, module in list(template.named_modules()):
        if type(module) is nn.Linear:
            set_submodule(template, path, FoldedLinear(module))
        elif type(module) is UnfoldConv1d:
            set_submodule(template, path, FoldedConv1d(module))
        elif type(module) is nn.Conv2d:
            set_submodule(template, path, FoldedConv2d(module, K))
        elif type(module) in (nn.BatchNorm1d, nn.BatchNorm2d):
            set_submodule(template, path, FoldedBatchNorm(module, K))
    pool_before_relu(template)
