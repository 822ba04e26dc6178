"""A stack's random numbers: each member's data order, batch transforms and dropout/noise masks, drawn from its own
generator state in the order its solo run draws them (so on a CPU a member draws exactly its solo run's numbers)."""

from __future__ import annotations

import torch
from torch import nn

from regbench.models.layers import TrainingNoise
from regbench.regularizers.base import soft_targets
from regbench.stack.folded import input_shapes


class DeviceRng:
    """Swap a member's generator state in and out of torch's generator for the data's device."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"
        self.index = (device.index if device.index is not None else torch.cuda.current_device()) if self.cuda else None

    def enter(self, rng: dict) -> None:
        if self.cuda:
            torch.cuda.set_rng_state(rng["cuda"][self.index], self.device)
        else:
            torch.set_rng_state(rng["torch"])

    def leave(self, rng: dict) -> None:
        if self.cuda:
            rng["cuda"][self.index] = torch.cuda.get_rng_state(self.device)
        else:
            rng["torch"] = torch.get_rng_state()


class Draws:
    """The members' draws, each from its member's ``rng`` (:class:`regbench.stack.engine.Member`).

    ``random_slots``: path → (mode, each member's module there) of the template's dropout and noise slots
    (:class:`regbench.stack.template.Template`); ``trace_model``: a meta-device copy of a member's model, to find
    the shape each slot is called with."""

    def __init__(self, members: list, random_slots: dict, trace_model: nn.Module, device: torch.device):
        self.members = members
        self.random_slots = random_slots
        self.trace_model = trace_model
        self.device = device
        self.rng = DeviceRng(device)
        self.transforms = any(m.run.hooks["transform_batch"] for m in members)
        self._shapes = {}  # batch size → [(path, shape)] of the random slots in call order

    def permutations(self, n: int) -> torch.Tensor:
        """Each member's data order for one epoch, ``[K, n]`` (solo's ``randperm`` at the epoch's start)."""
        perms = []
        for m in self.members:
            self.rng.enter(m.rng)
            perms.append(torch.randperm(n, device=self.device))
            self.rng.leave(m.rng)
        return torch.stack(perms)

    def batch(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Each member's augmentations and dropout/noise masks for one step's batch ``[K, B, ...]``: the batch as
        transformed, and the masks by ``"<slot path>.mask"``."""
        slots = self.slot_shapes(xb.shape[1:]) if self.random_slots else []
        if not self.transforms and not slots:
            return xb, yb, {}
        xs, ys, masks = [], [], {path: [] for path, _ in slots}
        for k, m in enumerate(self.members):
            if not slots and not m.run.hooks["transform_batch"]:  # nothing to draw: its generator stays as it is
                xs.append(xb[k])
                ys.append(yb[k])
                continue
            self.rng.enter(m.rng)
            try:
                x, y = xb[k], yb[k]
                for reg in m.run.hooks["transform_batch"]:
                    x, y = reg.transform_batch(x, y)
                for path, shape in slots:
                    masks[path].append(self._mask(self.random_slots[path], k, shape))
            finally:
                self.rng.leave(m.rng)
            xs.append(x)
            ys.append(y)
        if self.transforms:
            if any(y.dtype.is_floating_point for y in ys):
                ys = [soft_targets(y, self.members[0].run.data.num_classes) for y in ys]
            xb, yb = torch.stack(xs), torch.stack(ys)
        return xb, yb, {f"{path}.mask": torch.stack(v) for path, v in masks.items()}

    def slot_shapes(self, batch: torch.Size) -> list[tuple[str, tuple]]:
        """(path, shape) of each random slot in the order a forward pass calls it, for one member's batch."""
        if batch not in self._shapes:
            calls = input_shapes(self.trace_model, tuple(batch), self.random_slots)
            if len({p for p, _ in calls}) != len(calls):
                raise ValueError("a dropout or noise layer is called twice in one forward pass; no stacked form")
            self._shapes[batch] = calls
        return self._shapes[batch]

    def _mask(self, slot, k, shape):
        mode, modules = slot
        module = modules[k]
        if isinstance(module, nn.Dropout) and module.p > 0:
            p = module.p
            if p == 1:
                return torch.zeros(shape, device=self.device)
            return torch.empty(shape, device=self.device).bernoulli_(1 - p).div_(1 - p)  # F.dropout's own draw
        if isinstance(module, TrainingNoise) and module.std != 0:
            return torch.randn(shape, device=self.device) * module.std  # TrainingNoise's own draw
        return torch.ones(shape, device=self.device) if mode == "mul" else torch.zeros(shape, device=self.device)
