"""One stack: K members' parameters as one flat ``[K, N]`` leaf, trained an epoch at a time together.

:class:`Stack` builds the template (vmap over ``functional_call``, or folded: see :mod:`regbench.stack.folded`),
steps the optimizer on the flat buffer with each member's lr, applies the regularizers' stacked forms by hook
(each regularizer's ``stacked`` attribute, written in its own module), draws each member's batches and masks
from its own generator, evaluates, and writes each member's weights and optimizer state back into its solo
objects.
"""

from __future__ import annotations

import copy
import logging
import warnings

import torch
from torch import nn

from regbench import train as solo
from regbench.loss import cross_entropy
from regbench.models.layers import TrainingNoise
from regbench.regularizers.base import soft_targets
from regbench.stack.data import gather_rows, tables
from regbench.stack.folded import (FoldedBatchNorm, FoldedConv1d, FoldedConv2d, FoldedLinear, MaskLayer,
                                   UnfoldConv1d, attribute_slots, channels_last, conv_norms, convertible_conv,
                                   fold_reason, input_shapes, set_submodule)
from regbench.stack.forms import form_of
from regbench.stack.grouping import is_random_slot


log = logging.getLogger("regbench")

EVAL_ROWS_CPU = 2048  # rows of all members in one batch of a stack's evaluation on a CPU (Stack.evaluate)


class Member(solo.Lifecycle):
    """One run in a stack: its lifecycle (:class:`regbench.train.Lifecycle`: its solo objects, where it is, its
    trackers and result), and the generator states a solo run would hold now (``checkpoint.rng_state()``'s format),
    which the stack swaps in and out of torch's while it draws this member's batches and masks."""

    def __init__(self, run: solo.Run, state: solo.RunState):
        from regbench.checkpoint import rng_state

        super().__init__(run, state)
        self.rng = rng_state()  # made right after its start: a resume restored them, a fresh start seeded them

    @property
    def where(self) -> str:
        return f"{self.run.run_dir.name}: "

    @property
    def done(self) -> bool:
        return not self.running


class _DeviceRng:
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



class Stack:
    """K members' parameters as one flat leaf ``[K, N]``, their buffers stacked, one optimizer over them."""

    def __init__(self, members: list[Member], fold: bool = True):
        """``fold``: train a template that folds without vmap (see :func:`fold_reason`); False keeps vmap."""
        self.members = members
        self.K = len(members)
        first = members[0].run
        self.device = first.data.x_train.device
        self.rng = _DeviceRng(self.device)
        models = [m.run.model for m in members]
        self.param_names = [n for n, _ in first.model.named_parameters()]
        self.shapes = [p.shape for p in first.model.parameters()]
        self.sizes = [p.numel() for p in first.model.parameters()]
        self.buffer_names = [n for n, _ in first.model.named_buffers()]
        with torch.no_grad():
            self.P = torch.stack([torch.cat([p.detach().reshape(-1) for p in m.parameters()]) for m in models])
        self.P.requires_grad_(True)
        self.buffers = {n: torch.stack([dict(m.named_buffers())[n].detach() for m in models]).clone()
                        for n in self.buffer_names}
        self._build_template(models, fold)
        self._init_optimizer()
        self._init_regularizers()
        self._batches = {}  # batch size → [(path, shape)] of the random slots in call order
        self.data = tables(members)  # the members' splits, their equal tensors one since share_data

    # ----- construction
    def _build_template(self, models, fold: bool):
        template = copy.deepcopy(models[0])
        self.random_slots = {}  # path → (mode, [member module at that path])
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
            self.random_slots[path] = (mode, at)
            set_submodule(template, path, MaskLayer(mode))
        if self.device.type == "cpu":
            for path, module in list(template.named_modules()):
                if path and convertible_conv(module):
                    set_submodule(template, path, UnfoldConv1d(module))
        self.trace_model = copy.deepcopy(models[0]).to("meta").eval()
        norms = conv_norms(self.trace_model, tuple(self.members[0].run.data.input_shape))
        self.fold_reason = fold_reason(template, self.buffer_names, norms) if fold else "vmap asked for"
        self.folded = self.fold_reason is None
        if self.folded:
            for path, module in list(template.named_modules()):
                if type(module) is nn.Linear:
                    set_submodule(template, path, FoldedLinear(module))
                elif type(module) is UnfoldConv1d:
                    set_submodule(template, path, FoldedConv1d(module))
                elif type(module) is nn.Conv2d:
                    set_submodule(template, path, FoldedConv2d(module, self.K))
                elif type(module) in (nn.BatchNorm1d, nn.BatchNorm2d):
                    set_submodule(template, path, FoldedBatchNorm(module, self.K))
        elif fold:
            log.info("a stack of %d trains under vmap: %s", self.K, self.fold_reason)
        # a 2-D CNN's maps are channels last in memory, the input and masks too (mixed layouts slow elementwise ops)
        self.channels_last = self.folded and any(type(m) is FoldedConv2d for m in template.modules())
        self.folded_conv = self.folded and any(type(m) in (FoldedConv1d, FoldedConv2d) for m in template.modules())
        self.template = template.to("meta")
        self.eval_module = copy.deepcopy(models[0])  # its own layers, for evaluation one member at a time (_evaluate_each)

        if self.folded:
            bind = attribute_slots(self.template, [*self.param_names, *self.buffer_names,
                                                    *(f"{p}.mask" for p in self.random_slots)])

            def rows(t):  # [K, B, ...] → [K*B, ...]
                t = t.flatten(0, 1)
                return channels_last(t) if self.channels_last and t.dim() == 4 else t

            def folded(tensors, x):  # x [K, B, ...], a mask [K, B, ...]: the rows of all members as one batch
                for module, attr, name in bind:  # functional_call's job, without its bookkeeping (0.3 ms a step)
                    t = tensors.get(name)  # evaluation passes no masks: the mask layers are then the identity
                    setattr(module, attr, rows(t) if t is not None and attr == "mask" else t)
                out = self.template(rows(x))
                return out.view(*x.shape[:2], *out.shape[1:])

            self._forward_each = folded
            self._forward_shared = lambda tensors, x: folded(tensors, x.expand(self.K, *x.shape))
        else:
            def call(tensors, x):
                return torch.func.functional_call(self.template, tensors, (x,))

            self._forward_each = torch.func.vmap(call, in_dims=(0, 0), randomness="error")
            self._forward_shared = torch.func.vmap(call, in_dims=(0, None), randomness="error")

    def _init_optimizer(self):
        runs = [m.run for m in self.members]
        cfg_opt = runs[0].cfg.optimizer
        self.opt_kind = "sgd" if cfg_opt._target_ == "torch.optim.SGD" else "adam"
        group = runs[0].optimizer.param_groups[0]
        self.hyper = {k: group[k] for k in ("betas", "eps", "momentum", "dampening", "nesterov") if k in group}
        states = [r.optimizer.state for r in runs]
        params = [list(r.model.parameters()) for r in runs]

        def gather(key):
            return torch.stack([torch.cat([st[p][key].reshape(-1) for p in ps]) for st, ps in zip(states, params)])

        started = [bool(st) for st in states]
        if any(started) and not all(started):
            raise ValueError("members of one stack must all have optimizer state or none")
        self.opt_step = 0
        self._scratch = None
        if self.opt_kind == "adam":
            if all(started):
                steps = {float(states[k][params[k][0]]["step"]) for k in range(self.K)}
                if len(steps) != 1:
                    raise ValueError(f"members of one stack are at different optimizer steps: {sorted(steps)}")
                self.opt_step = int(steps.pop())
                self.exp_avg, self.exp_avg_sq = gather("exp_avg"), gather("exp_avg_sq")
            else:
                self.exp_avg, self.exp_avg_sq = torch.zeros_like(self.P), torch.zeros_like(self.P)
        else:
            self.momentum_buffer = None
            if self.hyper["momentum"] != 0 and all(started):
                bufs = [states[k][params[k][0]].get("momentum_buffer") for k in range(self.K)]
                if all(b is not None for b in bufs):
                    self.momentum_buffer = gather("momentum_buffer")

    def _init_regularizers(self):
        """One stacked form per regularizer slot (its kind, and which of that kind) any member has; a member
        without it gets the number that does nothing (strength 0, an infinite max norm)."""
        self.forms = {}  # hook → [(its Stacked form, numbers [K], names of the covered params or None: all)]
        slots: dict[tuple, list] = {}  # (class, i-th of that class) → each member's regularizer or None
        for k, m in enumerate(self.members):
            seen: dict[type, int] = {}
            for reg in m.run.regs:
                if form_of(reg) is not None:
                    slot = (type(reg), seen.get(type(reg), 0))
                    seen[type(reg)] = slot[1] + 1
                    slots.setdefault(slot, [None] * self.K)[k] = reg
        for (cls, _), regs in slots.items():
            form = form_of(cls)
            values = torch.tensor([form.identity if r is None else float(getattr(r, form.number)) for r in regs],
                                  dtype=torch.float64)
            reg = next(r for r in regs if r is not None)
            self.forms.setdefault(form.hook, []).append((form, values, getattr(reg, "covered", None)))
        self.transforms = any(m.run.hooks["transform_batch"] for m in self.members)

    # ----- views
    def param_views(self, P=None):
        P = self.P if P is None else P
        return [v.view(self.K, *s) for v, s in zip(torch.split(P, self.sizes, 1), self.shapes)]

    # ----- random slots
    def _slot_shapes(self, batch: torch.Size) -> list[tuple[str, tuple]]:
        """(path, shape) of each random slot in the order a forward pass calls it, for one member's batch."""
        if batch not in self._batches:
            calls = input_shapes(self.trace_model, tuple(batch), self.random_slots)
            if len({p for p, _ in calls}) != len(calls):
                raise ValueError("a dropout or noise layer is called twice in one forward pass; no stacked form")
            self._batches[batch] = calls
        return self._batches[batch]

    # ----- one epoch
    def train_epoch(self) -> torch.Tensor:
        """One epoch for every member; the members' mean training losses [K] (like solo's running loss)."""
        members, K = self.members, self.K
        n = len(members[0].run.data.x_train)
        B, steps = members[0].run.batch_size, members[0].run.steps_per_epoch
        perms = []
        for m in members:
            self.rng.enter(m.rng)
            perms.append(torch.randperm(n, device=self.device))
            self.rng.leave(m.rng)
        perms = torch.stack(perms)
        batches = [(i * B, min(n, (i + 1) * B)) for i in range(steps)]
        batches = [(a, b) for i, (a, b) in enumerate(batches) if not (b - a < 2 and i > 0)]
        lrs = self._lr_table(len(batches))  # [steps, K] in float64, the lr each member's optimizer holds at each step
        x_table, x_index, x_shared = self.data["x_train"]
        y_table, y_index, y_shared = self.data["y_train"]
        loss_sum = torch.zeros(K, device=self.device)
        self.template.train()
        for s, (a, b) in enumerate(batches):
            idx = perms[:, a:b]
            xb = gather_rows(x_table[0], idx) if x_shared else x_table[x_index[:, None], idx]
            yb = gather_rows(y_table[0], idx) if y_shared else y_table[y_index[:, None], idx]
            xb, yb, masks = self._draws(xb, yb)
            views = self.param_views()
            tensors = {**dict(zip(self.param_names, views)), **self.buffers, **masks}
            logits = self._forward_each(tensors, xb)
            loss = cross_entropy(logits, yb)
            total = loss
            for form, values, covered in self.forms.get("penalty", ()):
                total = total + form.apply(self._covered(views, covered), values.to(self.device, loss.dtype))
            self.P.grad = None
            total.sum().backward()
            with torch.no_grad():
                lr = lrs[s]
                for form, values, _ in self.forms.get("after_backward", ()):
                    form.apply(self.P.grad, values)
                for form, values, covered in self.forms.get("before_step", ()):
                    form.apply(self._covered(self.param_views(self.P.detach()), covered), values, lr)
                self._optimizer_step(lr)
                for form, values, covered in self.forms.get("after_step", ()):
                    form.apply(self._covered(self.param_views(self.P.detach()), covered), values)
                loss_sum += loss.detach()
        for m in members:
            m.state.step += len(batches)
            m.state.epoch += 1
        return loss_sum / steps

    def _lr_table(self, steps: int) -> torch.Tensor:
        """Each member's lr at each step of this epoch, read from its own optimizer as its own schedule sets it
        (so a schedule is exactly solo's); the member's scheduler ends the epoch where solo's would."""
        table = []
        for m in self.members:
            opt, sched = m.run.optimizer, m.run.scheduler
            col = []
            for _ in range(steps):
                col.append(opt.param_groups[0]["lr"])
                if sched is not None:
                    with warnings.catch_warnings():  # "step() before optimizer.step()": this optimizer never steps
                        warnings.simplefilter("ignore", UserWarning)
                        sched.step()
            table.append(col)
        return torch.tensor(table, dtype=torch.float64).t()

    def _draws(self, xb, yb):
        """Each member's augmentations and dropout/noise masks, from its own generator in solo's order."""
        slots = self._slot_shapes(xb.shape[1:]) if self.random_slots else []
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


    def _covered(self, views, covered):
        if covered is None:  # a regularizer without a `covered` list acts on every parameter
            return list(views)
        by_name = dict(zip(self.param_names, views))
        return [by_name[n] for n in covered]

    def _optimizer_step(self, lr: torch.Tensor):
        """One optimizer step on the flat stack, torch's single-tensor formulas with a per-member lr."""
        P, g = self.P.detach(), self.P.grad
        self.opt_step += 1
        if self.opt_kind == "adam":
            beta1, beta2 = self.hyper["betas"]
            self.exp_avg.lerp_(g, 1 - beta1)
            self.exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            step = float(self.opt_step)
            bias_correction1 = 1 - beta1 ** step
            bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
            step_size = (-(lr / bias_correction1)).to(P.device, P.dtype)  # solo's -(lr / bc1) in double, then cast
            if self._scratch is None:  # two [K, N] buffers kept across steps: fresh ones cost page faults every step
                self._scratch = (torch.empty_like(P), torch.empty_like(P))
            denom, update = self._scratch
            torch.sqrt(self.exp_avg_sq, out=denom).div_(bias_correction2_sqrt).add_(self.hyper["eps"])
            P.addcdiv_(torch.mul(self.exp_avg, step_size[:, None], out=update), denom)
        else:
            momentum, dampening, nesterov = self.hyper["momentum"], self.hyper["dampening"], self.hyper["nesterov"]
            d_p = g
            if momentum != 0:
                if self.momentum_buffer is None:
                    self.momentum_buffer = torch.clone(d_p).detach()
                else:
                    self.momentum_buffer.mul_(momentum).add_(d_p, alpha=1 - dampening)
                d_p = d_p.add(self.momentum_buffer, alpha=momentum) if nesterov else self.momentum_buffer
            P.add_(d_p * (-lr).to(P.dtype).to(P.device)[:, None])

    # ----- evaluation
    @torch.no_grad()
    def evaluate(self, *splits: str) -> list[tuple[list[float], list[float]]]:
        """Every member's mean cross-entropy and accuracy on each split, in eval mode (solo's ``evaluate``),
        batched. On a CPU:

        - a folded MLP stack runs all members' rows through its batched matmuls in solo's chunks and sums each
          member's loss as solo does, so its numbers are each member's solo evaluation bit for bit (a batched
          matmul plus bias gives ``F.linear``'s bits here; a test checks): a 16-member MNIST-1D MLP stack's
          validation split takes 3.2-3.4 ms instead of 6.4-7.2 ms member by member;
        - a folded CNN stack takes at most :data:`EVAL_ROWS_CPU` rows of all members at a time, so that a
          layer's activations stay in cache (an 18-member cnn1d stack's validation and training subsets, 399
          and 1,000 examples each, take 41-45 ms instead of 54-60 ms in batches of 2,000 a member; 8 members'
          validation split 5.4-6.2 ms instead of 10.2-10.4 ms member by member); the accuracies are solo's, a
          loss can differ in its last bits (another convolution kernel, another order of summation);
        - a stack under vmap evaluates one member after another (:meth:`_evaluate_each`)."""
        batch = self.members[0].run.trainer.eval_batch_size
        if self.device.type != "cpu":
            return [self._evaluate_batched(split, batch) for split in splits]
        if not self.folded:
            return self._evaluate_each(splits, batch)
        if self.folded_conv:
            return [self._evaluate_batched(split, min(batch, max(1, EVAL_ROWS_CPU // self.K))) for split in splits]
        return [self._evaluate_batched(split, batch, solo_sums=True) for split in splits]

    @torch.no_grad()
    def _evaluate_batched(self, split: str, batch: int, solo_sums: bool = False) -> tuple[list[float], list[float]]:
        """All members at once, ``batch`` rows of each at a time. With ``solo_sums`` each member's loss is summed
        as solo's ``evaluate_splits`` sums it (float32 per chunk, divided in double)."""
        x_table, x_index, x_shared = self.data[f"x_{split}"]
        y_table, y_index, y_shared = self.data[f"y_{split}"]
        n = x_table.shape[1]
        tensors = {**dict(zip(self.param_names, self.param_views(self.P.detach()))), **self.buffers}
        self.template.eval()
        loss_sum = torch.zeros(self.K, device=self.device)
        correct = torch.zeros(self.K, device=self.device, dtype=torch.long)
        for i in range(0, n, batch):
            if x_shared:
                logits = self._forward_shared(tensors, x_table[0, i:i + batch])
            else:
                logits = self._forward_each(tensors, x_table[x_index, i:i + batch])
            y = y_table[0, i:i + batch].expand(self.K, -1) if y_shared else y_table[y_index, i:i + batch]
            if solo_sums:
                loss_sum += torch.stack([cross_entropy(out, t, reduction="sum") for out, t in zip(logits.float(), y)])
            else:
                loss_sum += cross_entropy(logits.float(), y, reduction="sum")
            correct += (logits.argmax(-1) == y).sum(1)
        self.template.train()
        losses = [v / n for v in loss_sum.double().tolist()] if solo_sums else (loss_sum / n).tolist()
        return losses, (correct.double() / n).tolist()

    @torch.no_grad()
    def _evaluate_each(self, splits: tuple[str, ...], batch: int) -> list[tuple[list[float], list[float]]]:
        """:meth:`evaluate` one member after another: each member's weights are copied into a model with the
        original layers and solo's ``evaluate_splits`` runs it, bitwise what the member's solo run computes. On
        a CPU, for a stack under vmap, faster than vmap's batched layers; copying the weights costs less than
        functional_call's swap."""
        views = self.param_views(self.P.detach())
        params, buffers = dict(self.eval_module.named_parameters()), dict(self.eval_module.named_buffers())
        tables = [(*self.data[f"x_{split}"][:2], *self.data[f"y_{split}"][:2]) for split in splits]
        results = [([], []) for _ in splits]
        for k in range(self.K):
            for name, view in zip(self.param_names, views):
                params[name].copy_(view[k])
            for name, b in self.buffers.items():
                buffers[name].copy_(b[k])
            inputs = [(x_table[x_index[k]], y_table[y_index[k]]) for x_table, x_index, y_table, y_index in tables]
            for (losses, accs), (loss, acc) in zip(results, solo.evaluate_splits(self.eval_module, inputs, batch)):
                losses.append(loss)
                accs.append(acc)
        return results

    # ----- back to the members' solo objects
    @torch.no_grad()
    def write_back(self, optimizer: bool = True) -> None:
        """Copy each member's weights, buffers and (unless ``optimizer=False``: a best snapshot needs the weights
        only) optimizer state into its own model and optimizer (solo format)."""
        views = self.param_views(self.P.detach())
        for k, m in enumerate(self.members):
            params = list(m.run.model.parameters())
            for p, v in zip(params, views):
                p.copy_(v[k])
            for name, b in m.run.model.named_buffers():
                b.copy_(self.buffers[name][k])
            opt = m.run.optimizer
            if self.opt_step == 0 or not optimizer:
                continue
            offsets = [0]
            for s in self.sizes:
                offsets.append(offsets[-1] + s)
            for j, p in enumerate(params):
                cols = slice(offsets[j], offsets[j + 1])
                if self.opt_kind == "adam":
                    opt.state[p] = {"step": torch.tensor(float(self.opt_step)),
                                    "exp_avg": self.exp_avg[k, cols].view(p.shape).clone(),
                                    "exp_avg_sq": self.exp_avg_sq[k, cols].view(p.shape).clone()}
                elif self.hyper["momentum"] != 0:  # torch's SGD keeps no state without momentum
                    opt.state[p] = {"momentum_buffer": self.momentum_buffer[k, cols].view(p.shape).clone()}
