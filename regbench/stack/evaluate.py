"""A stack's evaluation: every member's mean cross-entropy and accuracy on a split, in eval mode (solo's
``evaluate``), by one of three paths (:func:`evaluate` picks one)."""

from __future__ import annotations

import torch

from regbench import train as solo
from regbench.loss import cross_entropy

EVAL_ROWS_CPU = 2048  # rows of all members in one batch of a stack's evaluation on a CPU (evaluate)


@torch.no_grad()
def evaluate(stack, *splits: str) -> list[tuple[list[float], list[float]]]:
    """Each split's (losses, accuracies) of the members of ``stack`` (:class:`regbench.stack.engine.Stack`),
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
    - a stack under vmap evaluates one member after another (:func:`evaluate_each`)."""
    batch = stack.members[0].run.trainer.eval_batch_size
    if stack.device.type != "cpu":
        return [evaluate_batched(stack, split, batch) for split in splits]
    if not stack.template.folded:
        return evaluate_each(stack, splits, batch)
    if stack.template.folded_conv:
        return [evaluate_batched(stack, split, min(batch, max(1, EVAL_ROWS_CPU // stack.K))) for split in splits]
    return [evaluate_batched(stack, split, batch, solo_sums=True) for split in splits]


@torch.no_grad()
def evaluate_batched(stack, split: str, batch: int, solo_sums: bool = False) -> tuple[list[float], list[float]]:
    """All members at once, ``batch`` rows of each at a time. With ``solo_sums`` each member's loss is summed
    as solo's ``evaluate_splits`` sums it (float32 per chunk, divided in double)."""
    x_table, x_index, x_shared = stack.data[f"x_{split}"]
    y_table, y_index, y_shared = stack.data[f"y_{split}"]
    n = x_table.shape[1]
    template = stack.template
    tensors = {**dict(zip(stack.param_names, stack.param_views(stack.P.detach()))), **stack.buffers}
    template.eval()
    loss_sum = torch.zeros(stack.K, device=stack.device)
    correct = torch.zeros(stack.K, device=stack.device, dtype=torch.long)
    for i in range(0, n, batch):
        if x_shared:
            logits = template.forward_shared(tensors, x_table[0, i:i + batch])
        else:
            logits = template.forward_each(tensors, x_table[x_index, i:i + batch])
        y = y_table[0, i:i + batch].expand(stack.K, -1) if y_shared else y_table[y_index, i:i + batch]
        if solo_sums:
            loss_sum += torch.stack([cross_entropy(out, t, reduction="sum") for out, t in zip(logits.float(), y)])
        else:
            loss_sum += cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(-1) == y).sum(1)
    template.train()
    losses = [v / n for v in loss_sum.double().tolist()] if solo_sums else (loss_sum / n).tolist()
    return losses, (correct.double() / n).tolist()


@torch.no_grad()
def evaluate_each(stack, splits: tuple[str, ...], batch: int, members: list[int] | None = None
                  ) -> list[tuple[list[float], list[float]]]:
    """:func:`evaluate` one member after another (of ``members``, indices into the stack; all by default): each
    member's weights are copied into a model with the original layers and solo's ``evaluate_splits`` runs it,
    bitwise what the member's solo run computes. On a CPU, for a stack under vmap, faster than vmap's batched
    layers; copying the weights costs less than functional_call's swap. For a few members of a larger stack
    (those that stop this epoch) it costs less than evaluating all of them batched."""
    module = stack.template.eval_module
    views = stack.param_views(stack.P.detach())
    params, buffers = dict(module.named_parameters()), dict(module.named_buffers())
    tables = [(*stack.data[f"x_{split}"][:2], *stack.data[f"y_{split}"][:2]) for split in splits]
    results = [([], []) for _ in splits]
    for k in range(stack.K) if members is None else members:
        for name, view in zip(stack.param_names, views):
            params[name].copy_(view[k])
        for name, b in stack.buffers.items():
            buffers[name].copy_(b[k])
        inputs = [(x_table[x_index[k]], y_table[y_index[k]]) for x_table, x_index, y_table, y_index in tables]
        for (losses, accs), (loss, acc) in zip(results, solo.evaluate_splits(module, inputs, batch)):
            losses.append(loss)
            accs.append(acc)
    return results
