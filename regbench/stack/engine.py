"""One stack: K members' parameters as one flat ``[K, N]`` leaf, trained an epoch at a time together.

:class:`Stack` holds the flat parameters and the stacked buffers and runs an epoch; its parts are each in their own
module: the template and its forward functions (:mod:`regbench.stack.template`, its layers in
:mod:`regbench.stack.folded`), the optimizer on the flat buffer with each member's lr (:mod:`regbench.stack.optim`),
the regularizers' stacked forms by hook (:func:`regbench.stack.forms.member_forms`: each regularizer's ``stacked``
attribute, written in its own module), each member's batches and masks from its own generator
(:mod:`regbench.stack.draws`), the data tables (:mod:`regbench.stack.data`) and evaluation
(:mod:`regbench.stack.evaluate`). :meth:`Stack.write_back` writes each member's weights and optimizer state back
into its solo objects.
"""

from __future__ import annotations

import torch

from regbench import train as solo
from regbench.loss import cross_entropy
from regbench.stack.data import gather_rows, tables
from regbench.stack.draws import Draws
from regbench.stack.evaluate import evaluate, evaluate_each
from regbench.stack.forms import member_forms
from regbench.stack.optim import FlatOptimizer, lr_table
from regbench.stack.template import Template


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


class Stack:
    """K members' parameters as one flat leaf ``[K, N]``, their buffers stacked, one optimizer over them.

    Its parts: ``template`` (:class:`~regbench.stack.template.Template`: the one network and its forward
    functions), ``optimizer`` (:class:`~regbench.stack.optim.FlatOptimizer`), ``forms`` (the regularizers' stacked
    forms by hook: :func:`~regbench.stack.forms.member_forms`), ``draws`` (:class:`~regbench.stack.draws.Draws`:
    each member's random numbers) and ``data`` (:func:`~regbench.stack.data.tables`: the members' splits, whose
    equal tensors :func:`~regbench.stack.data.share_data` made one)."""

    def __init__(self, members: list[Member], fold: bool = True):
        """``fold``: train a template that folds without vmap (see :func:`~regbench.stack.folded.fold_reason`);
        False keeps vmap."""
        self.members = members
        self.K = len(members)
        first = members[0].run
        self.device = first.data.x_train.device
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
        self.template = Template(models, self.device, tuple(first.data.input_shape), self.param_names,
                                 self.buffer_names, fold)
        self.optimizer = FlatOptimizer([m.run for m in members], self.P)
        self.forms = member_forms(members)
        self.draws = Draws(members, self.template.random_slots, self.template.trace_model, self.device)
        self.data = tables(members)

    @property
    def folded(self) -> bool:
        return self.template.folded

    @property
    def fold_reason(self) -> str | None:
        return self.template.fold_reason

    def param_views(self, P=None):
        P = self.P if P is None else P
        return [v.view(self.K, *s) for v, s in zip(torch.split(P, self.sizes, 1), self.shapes)]

    def train_epoch(self) -> torch.Tensor:
        """One epoch for every member; the members' mean training losses [K] (like solo's running loss)."""
        members, K = self.members, self.K
        n = len(members[0].run.data.x_train)
        B, steps = members[0].run.batch_size, members[0].run.steps_per_epoch
        perms = self.draws.permutations(n)
        batches = [(i * B, min(n, (i + 1) * B)) for i in range(steps)]
        batches = [(a, b) for i, (a, b) in enumerate(batches) if not (b - a < 2 and i > 0)]
        lrs = lr_table(members, len(batches))  # [steps, K] in float64, the lr each member's optimizer holds at each step
        x_table, x_index, x_shared = self.data["x_train"]
        y_table, y_index, y_shared = self.data["y_train"]
        forward, forms = self.template.forward_each, self.forms
        autocast = members[0].run.autocast  # trainer.precision=bf16: the forward pass under autocast, as solo's
        loss_sum = torch.zeros(K, device=self.device)
        self.template.train()
        for s, (a, b) in enumerate(batches):
            idx = perms[:, a:b]
            xb = gather_rows(x_table[0], idx) if x_shared else x_table[x_index[:, None], idx]
            yb = gather_rows(y_table[0], idx) if y_shared else y_table[y_index[:, None], idx]
            xb, yb, masks = self.draws.batch(xb, yb)
            views = self.param_views()
            tensors = {**dict(zip(self.param_names, views)), **self.buffers, **masks}
            with autocast():
                logits = forward(tensors, xb)
            loss = cross_entropy(logits.float(), yb)
            total = loss
            for form, values, covered in forms.get("penalty", ()):
                total = total + form.apply(self._covered(views, covered), values.to(self.device, loss.dtype))
            self.P.grad = None
            total.sum().backward()
            with torch.no_grad():
                lr = lrs[s]
                for form, values, _ in forms.get("after_backward", ()):
                    form.apply(self.P.grad, values)
                for form, values, covered in forms.get("before_step", ()):
                    form.apply(self._covered(self.param_views(self.P.detach()), covered), values, lr)
                self.optimizer.step(self.P.detach(), self.P.grad, lr)
                for form, values, covered in forms.get("after_step", ()):
                    form.apply(self._covered(self.param_views(self.P.detach()), covered), values)
                loss_sum += loss.detach()
        for m in members:
            m.state.step += len(batches)
            m.state.epoch += 1
        return loss_sum / steps

    def _covered(self, views, covered):
        if covered is None:  # a regularizer without a `covered` list acts on every parameter
            return list(views)
        by_name = dict(zip(self.param_names, views))
        return [by_name[n] for n in covered]

    def evaluate(self, *splits: str) -> list[tuple[list[float], list[float]]]:
        """Every member's mean cross-entropy and accuracy on each split (:func:`regbench.stack.evaluate.evaluate`)."""
        return evaluate(self, *splits)

    def evaluate_members(self, split: str, members: list[int]) -> tuple[list[float], list[float]]:
        """The mean cross-entropy and accuracy on ``split`` of the members ``members`` (indices) only, one after
        another as their solo runs compute them (:func:`regbench.stack.evaluate.evaluate_each`)."""
        return evaluate_each(self, (split,), self.members[0].run.trainer.eval_batch_size, members)[0]

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
            if optimizer:
                self.optimizer.write_back(k, m.run.optimizer, params, self.sizes)
