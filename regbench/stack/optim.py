"""A stack's optimizer: Adam/AdamW or SGD on the flat ``[K, N]`` parameters, each member with its own lr.

torch's single-tensor formulas op for op, with the lr as a ``[K]`` tensor read from each member's own optimizer
as its own schedule sets it (:func:`lr_table`); the state goes back into each member's optimizer in torch's format
(:meth:`FlatOptimizer.write_back`), so its checkpoint resumes solo.
"""

from __future__ import annotations

import warnings

import torch


class FlatOptimizer:
    """The members' optimizer state as ``[K, N]`` tensors (Adam's moments, SGD's momentum buffer), gathered from
    their solo optimizers (``runs``: :class:`regbench.train.Run`), which must all have state or none."""

    def __init__(self, runs: list, P: torch.Tensor):
        self.K = len(runs)
        cfg_opt = runs[0].cfg.optimizer
        self.kind = "sgd" if cfg_opt._target_ == "torch.optim.SGD" else "adam"
        group = runs[0].optimizer.param_groups[0]
        self.hyper = {k: group[k] for k in ("betas", "eps", "momentum", "dampening", "nesterov") if k in group}
        states = [r.optimizer.state for r in runs]
        params = [list(r.model.parameters()) for r in runs]

        def gather(key):
            return torch.stack([torch.cat([st[p][key].reshape(-1) for p in ps]) for st, ps in zip(states, params)])

        started = [bool(st) for st in states]
        if any(started) and not all(started):
            raise ValueError("members of one stack must all have optimizer state or none")
        self.steps = 0  # the optimizer's step count, which Adam's bias correction reads
        self._scratch = None
        if self.kind == "adam":
            if all(started):
                steps = {float(states[k][params[k][0]]["step"]) for k in range(self.K)}
                if len(steps) != 1:
                    raise ValueError(f"members of one stack are at different optimizer steps: {sorted(steps)}")
                self.steps = int(steps.pop())
                self.exp_avg, self.exp_avg_sq = gather("exp_avg"), gather("exp_avg_sq")
            else:
                self.exp_avg, self.exp_avg_sq = torch.zeros_like(P), torch.zeros_like(P)
        else:
            self.momentum_buffer = None
            if self.hyper["momentum"] != 0 and all(started):
                bufs = [states[k][params[k][0]].get("momentum_buffer") for k in range(self.K)]
                if all(b is not None for b in bufs):
                    self.momentum_buffer = gather("momentum_buffer")

    def step(self, P: torch.Tensor, g: torch.Tensor, lr: torch.Tensor) -> None:
        """One step of ``P`` (detached) with gradient ``g``, ``lr`` each member's in float64 ``[K]``."""
        self.steps += 1
        if self.kind == "adam":
            beta1, beta2 = self.hyper["betas"]
            self.exp_avg.lerp_(g, 1 - beta1)
            self.exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            step = float(self.steps)
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

    def write_back(self, k: int, optimizer: torch.optim.Optimizer, params: list, sizes: list[int]) -> None:
        """Member ``k``'s state into its own ``optimizer`` over ``params`` (of ``sizes`` elements, in the flat
        buffer's order), in torch's format; nothing before the first step."""
        if self.steps == 0:
            return
        start = 0
        for p, size in zip(params, sizes):
            cols = slice(start, start + size)
            start += size
            if self.kind == "adam":
                optimizer.state[p] = {"step": torch.tensor(float(self.steps)),
                                      "exp_avg": self.exp_avg[k, cols].view(p.shape).clone(),
                                      "exp_avg_sq": self.exp_avg_sq[k, cols].view(p.shape).clone()}
            elif self.hyper["momentum"] != 0:  # torch's SGD keeps no state without momentum
                optimizer.state[p] = {"momentum_buffer": self.momentum_buffer[k, cols].view(p.shape).clone()}


def lr_table(members: list, steps: int) -> torch.Tensor:
    """Each member's lr at each of an epoch's ``steps``, ``[steps, K]`` in float64, read from its own optimizer as
    its own schedule sets it (so a schedule is exactly solo's); the member's scheduler ends the epoch where solo's
    would."""
    table = []
    for m in members:
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
