"""Fused 2-D conv stacks (issue #33): K members' Conv2d as one grouped convolution (or, for an image's first
layer, one batched matmul of receptive-field rows), BatchNorm2d and a CNN head's BatchNorm1d with each member's
own batch and running statistics, Linear as bmm.

Each fused layer is checked against K solo layers (forward, backward, running statistics) to float tolerance; a
fused stack against vmap and against solo runs, real training on digits; and a killed fused BatchNorm stack
resumes exactly.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from helpers import compose, kill_stack_mid_training, read_metrics
from torch import nn

from regbench import checkpoint
from regbench import stack as S
from regbench import train as solo
from regbench.stack.data import share_data
from regbench.stack.engine import Stack
from regbench.stack.folded import FoldedBatchNorm, FoldedConv2d, FoldedLinear, channels_last, pool_before_relu
from regbench.stack.loop import build_member

K, B = 3, 5
DIGITS = ["debug=tiny", "dataset=digits", "model=cnn", "dataset.n_train=200", "trainer.max_epochs=2",
          "trainer.checkpoint_every_s=0", "model.channels=4", "model.width=16"]
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


def _bind(fused: nn.Module, solos: list[nn.Module], names=("weight", "bias")) -> dict:
    """The solo layers' parameters stacked ``[K, ...]`` as leaves, set on the fused layer as plain attributes (as the
    engine binds each member's views)."""
    stacked = {}
    for name in names:
        values = [getattr(m, name) for m in solos]
        if values[0] is None:
            continue
        stacked[name] = torch.stack([v.detach() for v in values]).requires_grad_(True)
        delattr(fused, name)
        setattr(fused, name, stacked[name])
    return stacked


def _against_solo(fused, solos, stacked, x_each):
    """Forward and backward of the fused layer on the members' rows folded into one batch against each solo layer on
    its own rows: outputs, input gradients and parameter gradients to float tolerance."""
    x_each = [x.clone().requires_grad_(True) for x in x_each]
    expected = [m(x) for m, x in zip(solos, x_each)]
    grads_out = [torch.randn_like(e) for e in expected]
    torch.autograd.backward(expected, grads_out)

    x = torch.cat([x.detach() for x in x_each])
    if x.dim() == 4:
        x = channels_last(x)  # a fused conv's maps are channels last
    x.requires_grad_(True)
    out = fused(x)
    torch.testing.assert_close(out, torch.cat(expected).detach(), rtol=1e-5, atol=1e-5)
    out.backward(torch.cat(grads_out))
    torch.testing.assert_close(x.grad, torch.cat([x.grad for x in x_each]), rtol=1e-5, atol=1e-5)
    for name, value in stacked.items():
        torch.testing.assert_close(value.grad, torch.stack([getattr(m, name).grad for m in solos]),
                                   rtol=1e-4, atol=1e-5, msg=name)
    return out


# ---------------------------------------------------------------------------------------- each fused layer

@pytest.mark.parametrize("c_in,c_out,kernel,stride,padding,bias", [
    (1, 4, 3, 1, 1, True),    # an image's first layer: rows × weights, the bias as a column of ones
    (1, 4, 3, 2, 0, False),
    (3, 5, 3, 1, 1, True),    # a CIFAR image's first layer
    (6, 8, 3, 1, 1, False),   # grouped convolution
    (6, 8, 3, 2, 1, True),
    (6, 4, 1, 2, 0, False),   # a residual net's 1×1 projection
    (4, 6, (3, 1), 1, (1, 0), True)])
def test_fused_conv2d_is_k_solo_convolutions(c_in, c_out, kernel, stride, padding, bias):
    torch.manual_seed(0)
    solos = [nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=bias) for _ in range(K)]
    fused = FoldedConv2d(nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=bias), K)
    assert fused.as_rows == (c_in * fused.kernel_size[0] * fused.kernel_size[1] <= 32)
    stacked = _bind(fused, solos)
    out = _against_solo(fused, solos, stacked, [torch.randn(B, c_in, 7, 6) for _ in range(K)])
    assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("shape", [(B, 6, 4, 3), (B, 6)])
def test_fused_batchnorm_keeps_each_members_statistics(shape):
    """BatchNorm2d on maps and BatchNorm1d on a CNN head's features: each member's output and gradients from its own
    batch statistics, and its own running mean, variance and count, over several steps and in eval mode."""
    torch.manual_seed(0)
    kind = nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d
    solos = [kind(shape[1]) for _ in range(K)]
    for m in solos:
        nn.init.uniform_(m.weight, 0.5, 1.5)
        nn.init.uniform_(m.bias, -0.5, 0.5)
    fused = FoldedBatchNorm(kind(shape[1]), K)
    stacked = _bind(fused, solos)
    buffers = {name: torch.stack([getattr(m, name) for m in solos]).clone()
               for name in ("running_mean", "running_var", "num_batches_tracked")}
    for name, value in buffers.items():
        delattr(fused, name)
        setattr(fused, name, value)
    for step in range(3):
        for value in stacked.values():
            value.grad = None
        for m in solos:
            m.zero_grad()
        x_each = [torch.randn(*shape) * (k + 1) + k for k in range(K)]  # members' batches of other scales
        _against_solo(fused, solos, stacked, x_each)
        for name, value in buffers.items():
            torch.testing.assert_close(value, torch.stack([getattr(m, name) for m in solos]), rtol=1e-5, atol=1e-6,
                                       msg=f"{name} after step {step}")
    assert len({tuple(v.tolist()) for v in buffers["running_mean"]}) == K
    fused.eval()
    for m in solos:
        m.eval()
    x_each = [torch.randn(*shape) for _ in range(K)]
    with torch.no_grad():
        expected = torch.cat([m(x) for m, x in zip(solos, x_each)])
        x = torch.cat(x_each)
        torch.testing.assert_close(fused(channels_last(x) if x.dim() == 4 else x), expected, rtol=1e-5, atol=1e-6)


def test_fused_linear_is_k_solo_linears_on_a_cnn_head():
    torch.manual_seed(0)
    solos = [nn.Linear(12, 5) for _ in range(K)]
    fused = FoldedLinear(nn.Linear(12, 5))
    stacked = _bind(fused, solos)
    _against_solo(fused, solos, stacked, [torch.randn(B, 12) for _ in range(K)])


def test_relu_after_the_pool_is_bitwise_the_same_forward_and_backward():
    """pool_before_relu moves a ReLU past the max-pool after it. On maps with ties (blank image regions give a
    conv's bias, equal in a whole window, and negative windows) the outputs and the gradients of the input and of
    the weights are bit for bit the original order's; a dropout slot between them keeps the original order."""
    torch.manual_seed(0)
    original = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Identity(), nn.ReLU(), nn.Identity()),
                             nn.MaxPool2d(2), nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU()), nn.MaxPool2d(2))
    with torch.no_grad():
        original[0][0].bias.copy_(torch.tensor([0.5, -0.5, 0.0, 0.25]))
    moved = copy.deepcopy(original)
    pool_before_relu(moved)
    assert [type(m) for m in moved[0]] == [nn.Conv2d, nn.Identity, nn.Identity, nn.Identity]
    assert [type(m) for m in moved[1]] == [nn.MaxPool2d, nn.ReLU] and [type(m) for m in moved[3]] == [nn.MaxPool2d, nn.ReLU]
    x = torch.randn(6, 1, 8, 8)
    x[:, :, :4] = 0  # blank rows: ties in every window there
    grads = []
    for net in (original, moved):
        net.zero_grad()
        xi = x.clone().requires_grad_(True)
        out = net(xi)
        out.backward(torch.arange(out.numel(), dtype=out.dtype).view_as(out) / out.numel())
        grads.append((out.detach(), xi.grad, *(p.grad for p in net.parameters())))
    for a, b in zip(*grads):
        assert torch.equal(a, b)
    with_dropout = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Dropout(0.1)), nn.MaxPool2d(2))
    pool_before_relu(with_dropout)
    assert type(with_dropout[0][1]) is nn.ReLU and type(with_dropout[1]) is nn.MaxPool2d


# ------------------------------------------------------------------------------------------ fused stacks

def _members(tmp_path, *overrides, seeds=(0, 1, 2), lrs=None, prefix="m"):
    lrs = lrs or [None] * len(seeds)
    cfgs = [compose(*DIGITS, f"seed={s}", *overrides, *([f"optimizer.lr={lr}"] if lr else []))
            for s, lr in zip(seeds, lrs)]
    return cfgs, _built(cfgs, tmp_path, prefix)


def _built(cfgs, tmp_path, prefix):
    """The members as ``train_stacked`` builds them: each from its config, equal data shared."""
    members = []
    for i, c in enumerate(cfgs):
        members.append(build_member(c, tmp_path / f"{prefix}{i}"))
        share_data(members)
    return members


def test_a_cnn_stack_fuses_and_starts_from_each_members_solo_weights(tmp_path):
    cfgs, members = _members(tmp_path, "model.norm=batch", "model.dropout=0.2", "model.input_dropout=0.1")
    stack = Stack(members)
    assert stack.folded and stack.fold_reason is None
    assert sum(type(m) is FoldedConv2d for m in stack.template.module.modules()) == 2
    assert sum(type(m) is FoldedBatchNorm for m in stack.template.module.modules()) == 3  # two maps', the head's
    views = stack.param_views(stack.P.detach())
    for k, cfg in enumerate(cfgs):
        model = solo.build_run(cfg, tmp_path / f"solo{k}").model
        for view, p in zip(views, model.parameters()):
            assert torch.equal(view[k], p.detach())
        for name, b in model.named_buffers():
            assert torch.equal(stack.buffers[name][k], b)


def test_layers_without_a_fused_form_fall_back_to_vmap_and_say_why(tmp_path, caplog):
    _, members = _members(tmp_path, "model.norm=group", seeds=(0, 1))
    with caplog.at_level("INFO", logger="regbench"):
        stack = Stack(members)
    assert not stack.folded and "GroupNorm" in stack.fold_reason
    assert "trains under vmap" in caplog.text and "GroupNorm" in caplog.text
    other = [compose(*DIGITS[:2], *DIGITS[4:6], f"seed={s}", "model=logistic") for s in (0, 1)]
    stack = Stack(_built(other, tmp_path, "a"))
    assert not stack.folded and "rows_independent" in stack.fold_reason


def test_a_fused_batchnorm_stack_trains_as_under_vmap(tmp_path):
    """Weights, losses, each member's running statistics and evaluation follow vmap's to float rounding. The bias of
    the Linear before the head's BatchNorm is left out: its true gradient is zero, so Adam steps it by ±lr on
    rounding noise, differently in any two summation orders (vmap's and solo's too)."""
    results = {}
    for fold in (True, False):
        _, members = _members(tmp_path, "model.norm=batch", "model.dropout=0.2", "model.input_dropout=0.1",
                              prefix=f"{fold}")
        stack = Stack(members, fold=fold)
        assert stack.folded == fold
        losses = torch.stack([stack.train_epoch() for _ in range(2)])
        results[fold] = (dict(zip(stack.param_names, stack.param_views(stack.P.detach()))), losses,
                         dict(stack.buffers), stack.evaluate("val"))
    (p_fold, loss_fold, buf_fold, val_fold), (p_vmap, loss_vmap, buf_vmap, val_vmap) = results[True], results[False]
    for name in p_fold:
        if name != "hidden.0.bias":
            torch.testing.assert_close(p_fold[name], p_vmap[name], rtol=0, atol=1e-4, msg=name)
    torch.testing.assert_close(loss_fold, loss_vmap, rtol=1e-5, atol=0)
    for name in buf_fold:
        if not name.startswith("hidden.1.running_mean"):  # the noisy bias above shifts the mean it normalizes
            torch.testing.assert_close(buf_fold[name], buf_vmap[name], rtol=1e-4, atol=1e-5, msg=name)
    assert len({tuple(v.tolist()) for v in buf_fold["features.0.1.running_mean"]}) == 3
    # the evaluation normalizes with the head's noisy running mean: its losses agree loosely (eval mode exactly:
    # test_fused_batchnorm_keeps_each_members_statistics)
    assert val_fold[0][0] == pytest.approx(val_vmap[0][0], rel=2e-2)


@pytest.mark.parametrize("model", [
    ["model=resnet18", "model.width=4", "model.norm=batch", "regularizer=[dropout]"],  # projection shortcuts
    ["model=resnet18", "model.width=4", "model.preact=true", "model.norm=batch"],
    ["model=wide_resnet", "model.depth=10", "model.widen_factor=1", "model.noise_std=0.05"],
    ["model=alexnet_small", "model.channels=8"],  # local response norm, adaptive max-pool
    ["model=inception_small", "optimizer=sgd", "optimizer.lr=0.01"]])  # concatenated branches (SGD: Adam turns
    # the rounding noise of a near-zero gradient into ±lr steps, in any two summation orders)
def test_residual_and_branching_image_nets_fuse_and_train_as_under_vmap(model, tmp_path):
    """The other 2-D image nets fold too (their blocks declare rows_independent): two members' weights, losses
    and validation after an epoch follow vmap's to float rounding."""
    results = {}
    for fold in (True, False):
        cfgs = [compose(*DIGITS[:5], "dataset.n_train=120", *model, f"seed={s}") for s in (0, 1)]
        stack = Stack(_built(cfgs, tmp_path, f"{fold}"), fold=fold)
        assert stack.folded == fold, stack.fold_reason
        results[fold] = (stack.train_epoch(), stack.param_views(stack.P.detach()), stack.evaluate("val")[0])
    (loss_f, p_f, val_f), (loss_v, p_v, val_v) = results[True], results[False]
    torch.testing.assert_close(loss_f, loss_v, rtol=1e-4, atol=0)
    for a, b in zip(p_f, p_v):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-4)
    assert val_f[0] == pytest.approx(val_v[0], rel=1e-3) and val_f[1] == val_v[1]


@pytest.mark.parametrize("overrides", [
    ["regularizer=[dropout,weight_decay]", "regularizer.dropout.input_p=0.1"],
    ["model.norm=batch", "optimizer=sgd", "optimizer.momentum=0.9", "scheduler=cosine", "regularizer=[mixup]"]])
def test_fused_stack_members_match_their_solo_runs(overrides, tmp_path):
    """Per-member lr and schedule, dropout masks and mixup from each member's own generator: each stacked member's
    metrics, result and checkpoint (weights and running statistics) are its solo run's to float tolerance."""
    lr = 0.05 if "optimizer=sgd" in overrides else 0.01
    cfgs = [compose(*DIGITS, f"seed={s}", *overrides, f"optimizer.lr={lr / (1 + 2 * s)}") for s in range(2)]
    assert len({S.stack_key(c) for c in cfgs}) == 1
    stacked = S.train_stacked(cfgs, [tmp_path / f"stack{k}" for k in range(2)])
    for k, cfg in enumerate(cfgs):
        alone = solo.train(cfg, tmp_path / f"solo{k}")
        assert stacked[k]["stacked"] == 2 and stacked[k]["status"] == alone["status"] == "completed"
        for key in METRICS:  # an accuracy may differ by one example of the 100+ in a split (a near-tie)
            tolerance = {"abs": 1.01 / 100} if key.endswith("acc") else {"rel": 1e-4, "abs": 1e-5}
            assert stacked[k][key] == pytest.approx(alone[key], **tolerance), key
        for a, b in zip(read_metrics(tmp_path / f"stack{k}"), read_metrics(tmp_path / f"solo{k}"), strict=True):
            assert a["lr"] == b["lr"] and a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        mine = checkpoint.load(tmp_path / f"stack{k}" / "checkpoints" / "last.pt")["model"]
        theirs = checkpoint.load(tmp_path / f"solo{k}" / "checkpoints" / "last.pt")["model"]
        assert mine.keys() == theirs.keys()
        for name in theirs:
            if name not in ("hidden.0.bias", "hidden.1.running_mean"):  # see the test above
                torch.testing.assert_close(mine[name], theirs[name], rtol=1e-3, atol=1e-4, msg=name)


@pytest.mark.parametrize("overrides", [
    [*DIGITS, "trainer.precision=bf16", "model.norm=batch", "regularizer=[dropout]"],
    [*DIGITS, "trainer.channels_last=true", "trainer.precision=bf16"],
    ["debug=tiny", "model=cnn1d", "model.channels=8", "dataset.n_train=200", "trainer.max_epochs=2",
     "trainer.checkpoint_every_s=0", "trainer.precision=bf16"]])
def test_bf16_autocast_and_channels_last_train_inside_a_stack(overrides, tmp_path):
    """A stack's forward pass runs under bf16 autocast as solo's does (the fused BatchNorm in float32, as autocast runs
    nn.BatchNorm), channels last is the fused 2-D stack's own layout: the members stack, and each one's training
    losses and test metrics follow its solo run's to bf16 rounding."""
    cfgs = [compose(f"seed={s}", *overrides) for s in range(2)]
    assert S.why_not_stackable(cfgs[0]) is None and len({S.stack_key(c) for c in cfgs}) == 1
    assert S.stack_key(cfgs[0]) != S.stack_key(compose("seed=0", *overrides, "trainer.precision=32"))
    stacked = S.train_stacked(cfgs, [tmp_path / f"stack{k}" for k in range(2)])
    for k, cfg in enumerate(cfgs):
        alone = solo.train(cfg, tmp_path / f"solo{k}")
        assert stacked[k]["stacked"] == 2 and stacked[k]["precision"] == alone["precision"] == "bf16"
        for a, b in zip(read_metrics(tmp_path / f"stack{k}"), read_metrics(tmp_path / f"solo{k}"), strict=True):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=2e-2)
        assert stacked[k]["test_acc"] == pytest.approx(alone["test_acc"], abs=0.03)


def test_float16_and_compile_still_train_alone_and_say_why():
    assert "loss scaler" in S.why_not_stackable(compose(*DIGITS, "trainer.precision=16"))
    assert "not compiled" in S.why_not_stackable(compose(*DIGITS, "trainer.compile=true"))


# ------------------------------------------------------------------------------------------ kill and resume

KILL_ARGS = ["debug=tiny", "dataset=digits", "model=cnn", "model.norm=batch", "model.channels=8", "model.width=32",
             "regularizer=[dropout]", "trainer.max_epochs=14", "dataset.n_train=1000",
             "trainer.checkpoint_every_s=0", "trainer.early_stopping.patience=null"]
def test_a_killed_fused_batchnorm_stack_resumes_exactly(tmp_path):
    """SIGKILL mid-training, then the same stack again: every member continues from its own last.pt (weights,
    running statistics, optimizer state, generators) and ends bit for bit as an uninterrupted stack."""
    configs = [compose(*KILL_ARGS, f"seed={s}") for s in range(3)]
    assert Stack(_built(configs, tmp_path, "probe")).folded
    reference = S.train_stacked(configs, [tmp_path / f"ref{s}" for s in range(3)])

    killed = tmp_path / "killed"
    kill_stack_mid_training(killed, KILL_ARGS)

    resumed = S.train_stacked(configs, [killed / f"m{s}" for s in range(3)])
    for s in range(3):
        for key in (*METRICS, "best_epoch", "epochs_run", "steps"):
            assert resumed[s][key] == reference[s][key], key
        strip = [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(killed / f"m{s}")]
        assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(tmp_path / f"ref{s}")]
        mine = checkpoint.load(Path(killed / f"m{s}" / "checkpoints" / "last.pt"))
        theirs = checkpoint.load(Path(tmp_path / f"ref{s}" / "checkpoints" / "last.pt"))
        for name, value in theirs["model"].items():  # running statistics included
            assert torch.equal(mine["model"][name], value), name


STOPPING_ARGS = [*KILL_ARGS[:6], "trainer.max_epochs=40", "dataset.n_train=1000", "trainer.checkpoint_every_s=0",
                 "trainer.early_stopping.patience=2", "optimizer.lr=0.03"]


def test_a_stack_killed_after_a_member_stopped_early_resumes_exactly(tmp_path):
    """A member that stops early writes its final files alone; the others keep the last.pt of the epoch they share.
    Killed after one member has ended and before the others have, the stack resumes (the ended member skipped, the
    others from their shared epoch as one stack) and every member ends bit for bit as the uninterrupted stack."""
    configs = [compose(*STOPPING_ARGS, f"seed={s}") for s in range(3)]
    reference = S.train_stacked(configs, [tmp_path / f"ref{s}" for s in range(3)])
    assert len({r["epochs_run"] for r in reference}) > 1, "the members must stop at different epochs"

    killed = tmp_path / "killed"
    kill_stack_mid_training(killed, STOPPING_ARGS,
                            until=lambda root: any((root / f"m{s}" / "result.json").exists() for s in range(3)))
    assert not all((killed / f"m{s}" / "result.json").exists() for s in range(3)), "killed too late"

    resumed = S.train_stacked(configs, [killed / f"m{s}" for s in range(3)])
    for s in range(3):
        for key in (*METRICS, "best_epoch", "epochs_run", "steps"):
            assert resumed[s][key] == reference[s][key], (s, key)
        strip = [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(killed / f"m{s}")]
        assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(tmp_path / f"ref{s}")]
