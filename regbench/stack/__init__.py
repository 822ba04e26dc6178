"""Stacked training: K runs of one network shape train together as one batched model (issue #10).

An ablation study is many small runs of the same network, and for small models a step costs mostly
per-step overhead (Python, dispatch), not arithmetic. Here K configurations that :func:`stack_key`
puts together train as one set of stacked parameters ``[K, N]`` (``torch.func.vmap`` over
``functional_call``, or for a plain MLP, a 1-D CNN or a 2-D image net (``cnn``, ``alexnet_small``,
``inception_small``, ``resnet18``, ``wide_resnet``), with or without BatchNorm, the members' rows folded into one
batch with one batched matmul or grouped convolution per layer; one flat buffer per stack
so the optimizer is a handful of ops per step), while each member stays its own run:

- **Same start.** Each member is built by :func:`regbench.train.build_run` under its own seed, exactly as
  a solo run is, and then stacked: its initial weights are bitwise those of its solo run.
- **Its own random numbers.** Each member keeps its own copy of the generator state a solo run would
  use (saved as the ``rng`` of its checkpoint). Its data order (``randperm``), its augmentation and
  mixup draws (the regularizers' own ``transform_batch``, called on its slice of the batch) and the
  dropout masks and activation noise of its model are drawn from that state in the order a solo
  run draws them. So on CPU a member draws exactly the numbers its solo run draws, and a stacked
  member's checkpoint resumes solo (and the reverse) with the same random stream. (On CUDA,
  ``F.dropout`` uses a fused Philox kernel, so dropout masks differ from solo's there, but each
  member still draws from its own generator, independently of its siblings.)
- **Exact per-member rates.** Adam/AdamW and SGD (with momentum, nesterov, dampening) are
  re-implemented on the flat stacked buffer with the lr of each member (and its schedule) as a
  ``[K, 1]`` tensor, following torch's single-tensor formulas op for op; a member's optimizer state
  is written into its checkpoint in torch's own ``state_dict`` format.
- **Per-member control.** Metrics, early stopping, best checkpoint, divergence (a non-finite training
  loss ends that member as ``diverged``), ``result.json`` (with ``"stacked": K``) and the final test
  evaluation are per member (the final evaluation is :meth:`regbench.train.Lifecycle.finish` itself). A member
  that ends leaves the stack; the others go on, so it no longer changes.
- **Faults.** Every member writes ``checkpoints/last.pt`` in the solo format, all together when one is due
  (after the first epoch, at the end, every ``trainer.checkpoint_every_s``). After a
  kill, members resume from their own checkpoints; if the kill fell between two members' checkpoint
  writes, the members behind train alone in a smaller stack until all are at the same epoch.

Floating point: batched kernels (bmm, the unfolded 1-D convolution used on CPU, grouped 2-D convolutions) sum in another order
than the solo kernels, so stacked and solo runs agree to float tolerance, not bit for bit; a stacked
run killed and resumed is exact on CPU.

Trackers: the loggers (W&B, TensorBoard, MLflow) of a stack's members are opened one at a time, when the member ends: its
run receives the member's whole history and summary then (W&B allows one open run per process).

Memory: a stack holds K copies of the parameters, their gradients and optimizer state, and K batches
of activations. On CPU a stack has at most :data:`MAX_STACK_CPU` members; on a CUDA device as many as a
measured trial step fits in 80% of the free memory (:mod:`~regbench.stack.sizing`; the estimate
:func:`max_stack_size` where the trial cannot run). Larger lists are split into stacks trained one after
the other.

The package: :mod:`~regbench.stack.grouping` (which configurations stack), :mod:`~regbench.stack.forms`
(which regularizers stack: each declares its ``stacked`` form in its own module), :mod:`~regbench.stack.loop`
(members as runs: control, checkpoints, results) and :mod:`~regbench.stack.engine` (one stack: its flat
parameters and its epoch), whose parts are :mod:`~regbench.stack.template` (the one network, its layers in
:mod:`~regbench.stack.folded`), :mod:`~regbench.stack.optim` (the optimizer on the flat parameters),
:mod:`~regbench.stack.draws` (each member's random numbers), :mod:`~regbench.stack.data` (the members' data, one
copy of what they share) and :mod:`~regbench.stack.evaluate`.
"""

from regbench.stack.forms import regularizer_reason
from regbench.stack.grouping import MAX_STACK_CPU, key_text, max_stack_size, stack_key, stack_keys, why_not_stackable
from regbench.stack.loop import train_stacked

__all__ = ["MAX_STACK_CPU", "key_text", "max_stack_size", "regularizer_reason", "stack_key", "stack_keys",
           "train_stacked", "why_not_stackable"]
