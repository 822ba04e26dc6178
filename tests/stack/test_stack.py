"""Stacked training (regbench.stack) against the solo loop: same start, same steps, same run dirs.

Every test composes real configs (debug=tiny, shrunk further) and trains real models on MNIST-1D.
On CPU a stacked member draws exactly the random numbers its solo run draws, so stacked and solo
runs agree to float tolerance (batched kernels sum in another order), and a killed stack resumes exactly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import compose, kill_stack_mid_training, read_metrics, read_result

from regbench import checkpoint
from regbench import stack as S
from regbench.stack.data import share_data, tables
from regbench.stack.engine import Stack
from regbench.stack.evaluate import EVAL_ROWS_CPU, evaluate_batched, evaluate_each
from regbench.stack.folded import ConvRows, conv_rows
from regbench.stack.loop import build_member
from regbench import train as solo

TINY = ["debug=tiny", "trainer.max_epochs=2", "dataset.n_train=200", "trainer.checkpoint_every_s=0"]
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


def cfgs(*overrides, seeds=(0, 1), lrs=None):
    lrs = lrs or [None] * len(seeds)
    return [compose(*TINY, f"seed={s}", *overrides, *([f"optimizer.lr={lr}"] if lr else [])) for s, lr in zip(seeds, lrs)]


def members_of(configs, root: Path, prefix: str = "") -> list:
    """The members of ``configs`` as ``train_stacked`` builds them: each from its config, equal data shared."""
    members = []
    for i, c in enumerate(configs):
        members.append(build_member(c, root / f"{prefix}{i}"))
        share_data(members)
    return members


def weights(run_dir: Path) -> dict:
    return checkpoint.load(Path(run_dir) / "checkpoints" / "last.pt")["model"]


def strip(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


# ------------------------------------------------------------------------------------- keys

def test_stack_key_ignores_numbers_and_separates_shapes():
    base = compose(*TINY, "model=mlp", "regularizer=[dropout,weight_decay]")
    numbers = compose(*TINY, "model=mlp", "regularizer=[dropout,weight_decay]", "seed=3", "optimizer.lr=0.003",
                      "regularizer.dropout.p=0.1", "regularizer.weight_decay.strength=0.01", "dataset.label_noise=0.2",
                      "scheduler=cosine", "trainer.early_stopping.patience=3")
    assert S.stack_key(base) is not None
    assert S.stack_key(base) == S.stack_key(numbers)
    # members may differ in which regularizers they have, unless one changes the network or a setting
    assert S.stack_key(base) == S.stack_key(compose(*TINY, "model=mlp", "regularizer=[mixup,l2]"))
    assert S.stack_key(base) != S.stack_key(compose(*TINY, "model=mlp", "regularizer=[batchnorm]"))
    assert S.stack_key(base) != S.stack_key(compose(*TINY, "model=mlp", "regularizer=[weight_decay]",
                                                    "regularizer.weight_decay.exclude_bias_and_norm=false"))
    for other in (["model.width=50"], ["trainer.batch_size=50"], ["trainer.max_epochs=3"], ["optimizer=sgd"],
                  ["dataset.n_train=150"]):
        changed = compose(*TINY, "model=mlp", "regularizer=[dropout,weight_decay]", *other)
        assert S.stack_key(changed) != S.stack_key(base), other


def test_regularizers_without_a_stacked_form_fall_back_with_a_reason():
    for reg, word in (("ema", "shadow"), ("weight_noise", "parametrization")):
        cfg = compose(*TINY, "model=mlp", f"regularizer=[{reg}]")
        assert S.stack_key(cfg) is None
        assert word in S.why_not_stackable(cfg)
    assert "optimizer" in S.why_not_stackable(compose(*TINY, "optimizer=rmsprop"))
    assert "resume=best" in S.why_not_stackable(compose(*TINY, "resume=best"))
    for reg in ("dropout", "batchnorm", "layernorm", "groupnorm", "instancenorm", "weight_decay", "l1", "l2",
                "signal_shift", "augment_signal", "mixup", "label_smoothing", "grad_clip", "max_norm", "noise"):
        assert S.why_not_stackable(compose(*TINY, "model=cnn1d", f"regularizer=[{reg}]")) is None, reg


def test_train_stacked_refuses_configs_of_different_keys(tmp_path):
    mixed = [compose(*TINY, "model=mlp"), compose(*TINY, "model=mlp", "model.width=50")]
    with pytest.raises(ValueError, match="stack_key"):
        S.train_stacked(mixed, [tmp_path / "a", tmp_path / "b"])
    assert not (tmp_path / "a").exists()


# ------------------------------------------------------------------------- equivalence with solo

def test_initial_weights_are_bitwise_those_of_solo(tmp_path):
    configs = cfgs("model=cnn1d", "regularizer=[batchnorm]", seeds=(0, 5))
    stack = Stack(members_of(configs, tmp_path))
    views = stack.param_views(stack.P.detach())
    for k, cfg in enumerate(configs):
        model = solo.build_run(cfg, tmp_path / f"solo{k}").model
        for view, p in zip(views, model.parameters()):
            assert torch.equal(view[k], p.detach())
        for name, b in model.named_buffers():
            assert torch.equal(stack.buffers[name][k], b)
    assert not torch.equal(views[0][0], views[0][1])  # two seeds, two initializations


def test_members_hold_one_copy_of_equal_data_and_their_own_of_the_rest(tmp_path):
    """Members of one dataset share its tensors (one copy in memory, one row of each stack table); a member whose
    labels differ (label noise) trains and is evaluated on its own."""
    configs = [compose(*TINY, f"seed={s}", "model=mlp", f"dataset.label_noise={noise}")
               for s, noise in ((0, 0.0), (1, 0.3), (2, 0.0))]
    members = members_of(configs, tmp_path)
    data = [m.run.data for m in members]
    assert data[1].x_train is data[0].x_train and data[2].x_train is data[0].x_train
    assert data[2].y_train is data[0].y_train and not torch.equal(data[1].y_train, data[0].y_train)
    found = tables(members)
    assert found["x_train"].shared and found["x_val"].shared and found["x_train"].rows.shape[0] == 1
    assert not found["y_train"].shared and found["y_train"].index.tolist() == [0, 1, 0]
    for k, m in enumerate(members):
        for split, mine in (("y_train", m.run.data.y_train), ("x_train_eval", m.run.train_subset()[0]),
                            ("y_train_eval", m.run.train_subset()[1])):
            table = found[split]
            assert torch.equal(table.rows[table.index[k]], mine), (split, k)


@pytest.mark.parametrize("model,regularizers,folded", [
    ("cnn1d", "[layernorm,dropout]", False), ("cnn1d", "[batchnorm,dropout]", True), ("cnn1d", "[dropout]", True),
    ("mlp", "[batchnorm,dropout]", False), ("mlp", "[dropout]", True)])
def test_batched_and_per_member_evaluation_agree(model, regularizers, folded, tmp_path):
    """A stack evaluates batched, but on a CPU one member after another under vmap: both paths run here, for stacks
    under vmap and for stacks whose members' rows are folded into one batch (a CNN's BatchNorm included), and agree
    to float rounding. Under vmap (member by member, solo's own ``evaluate_splits``) and for a folded MLP (batched,
    each member's loss summed as solo sums it) a stack's evaluation gives each member's solo numbers bit for bit."""
    configs = cfgs(f"model={model}", f"regularizer={regularizers}", "dataset.label_noise=0.5", seeds=(0, 1, 2))
    stack = Stack(members_of(configs, tmp_path))
    assert stack.folded == folded
    stack.train_epoch()  # BatchNorm's running statistics move away from their start
    splits = ("train_eval", "val")
    batch = configs[0].trainer.eval_batch_size
    got = stack.evaluate(*splits)
    stack.write_back(optimizer=False)  # each member's solo model now holds its stacked weights
    exact = not folded or model == "mlp"
    for split, (losses, accs) in zip(splits, got, strict=True):
        for k, m in enumerate(stack.members):  # against the solo loop's own evaluation of that member
            x, y = m.run.train_subset() if split == "train_eval" else (m.run.data.x_val, m.run.data.y_val)
            solo_numbers = solo.evaluate(m.run.eval_model(), x, y, batch)
            if exact:
                assert (losses[k], accs[k]) == solo_numbers, (split, k)
            else:
                assert (losses[k], accs[k]) == pytest.approx(solo_numbers, rel=1e-5), (split, k)
    if folded and model == "cnn1d":  # which path: on a CPU in batches of at most EVAL_ROWS_CPU rows of all members
        assert got == [evaluate_batched(stack, split, min(batch, EVAL_ROWS_CPU // 3)) for split in splits]
    for split, each in zip(splits, evaluate_each(stack, splits, 64), strict=True):
        for a, b in zip(each, evaluate_batched(stack, split, 64), strict=True):
            assert a == pytest.approx(b, rel=1e-5)
        assert len(set(each[0])) == 3  # three members, three different results


@pytest.mark.parametrize("model", ["mlp", "cnn1d"])
def test_folded_stack_trains_bit_for_bit_as_under_vmap(model, tmp_path):
    """A plain MLP's or 1-D CNN's stack folds its members into one batch instead of vmap: the same arithmetic,
    so the same bits (and the studies measured under vmap keep their numbers)."""
    configs = cfgs(f"model={model}", "regularizer=[dropout,weight_decay]", "regularizer.dropout.input_p=0.1",
                   seeds=(0, 1, 2))
    results = {}
    for fold in (True, False):
        stack = Stack(members_of(configs, tmp_path, f"{fold}"), fold=fold)
        assert stack.folded == fold
        losses = torch.stack([stack.train_epoch() for _ in range(2)])
        results[fold] = (stack.P.detach().clone(), losses, evaluate_batched(stack, "val", 64))
    assert torch.equal(results[True][0], results[False][0]) and torch.equal(results[True][1], results[False][1])
    assert results[True][2] == results[False][2]


def test_folded_batchnorm_trains_as_under_vmap(tmp_path):
    """A 1-D CNN's BatchNorm stack folds too, each member's statistics kept apart: its weights, losses, running
    statistics and evaluation follow vmap's to float rounding (layouts differ, so not bit for bit). An MLP's
    BatchNorm stack stays under vmap."""
    configs = cfgs("model=cnn1d", "regularizer=[batchnorm,dropout]", "regularizer.dropout.input_p=0.1", seeds=(0, 1, 2))
    results = {}
    for fold in (True, False):
        stack = Stack(members_of(configs, tmp_path, f"{fold}"), fold=fold)
        assert stack.folded == fold
        losses = torch.stack([stack.train_epoch() for _ in range(2)])
        results[fold] = (stack.P.detach().clone(), losses, dict(stack.buffers), evaluate_batched(stack, "val", 64))
    (p_fold, loss_fold, buf_fold, val_fold), (p_vmap, loss_vmap, buf_vmap, val_vmap) = results[True], results[False]
    torch.testing.assert_close(p_fold, p_vmap, rtol=0, atol=1e-5)
    torch.testing.assert_close(loss_fold, loss_vmap, rtol=1e-5, atol=0)
    assert buf_fold.keys() == buf_vmap.keys() and any(k.endswith("running_var") for k in buf_fold)
    for name in buf_fold:  # per member: the members' statistics differ, and each matches its own
        torch.testing.assert_close(buf_fold[name], buf_vmap[name], rtol=1e-5, atol=1e-6)
    assert len({tuple(v.tolist()) for v in buf_fold["features.0.1.running_mean"]}) == 3
    for a, b in zip(val_fold, val_vmap, strict=True):
        assert a == pytest.approx(b, rel=1e-5)
    mlp = cfgs("model=mlp", "regularizer=[batchnorm]", seeds=(0, 1))
    assert not Stack(members_of(mlp, tmp_path, "mlp")).folded


def test_conv_rows_have_unfolds_gradient_bit_for_bit():
    """The folded 1-D convolution's receptive-field rows: pad → unfold → permute → reshape, whose backward is
    replaced by strided adds summed in unfold's order, so gradients are bitwise autograd's for every shape."""
    torch.manual_seed(0)
    for k, s, p, length in [(1, 1, 0, 9), (3, 2, 1, 19), (3, 2, 1, 10), (5, 2, 1, 40), (3, 1, 1, 12), (7, 1, 3, 16),
                            (4, 3, 0, 20), (9, 2, 2, 33), (5, 3, 2, 9)]:
        x = torch.randn(3, 4, length, requires_grad=True)
        expected = conv_rows(x, k, s, p)
        rows = ConvRows.apply(x, k, s, p)
        assert torch.equal(rows, expected)
        g = torch.randn_like(rows)
        assert torch.equal(torch.autograd.grad(rows, x, g)[0], torch.autograd.grad(expected, x, g)[0]), (k, s, p)


# Every stacked regularizer against its solo form; SGD's first step is -lr·gradient, so equal weights after
# it mean equal gradients. Members differ in seed and lr (and strengths), so per-member rates are checked too.
CASES = {
    "adam-dropout-weight_decay-l1": ["model=mlp", "regularizer=[dropout,weight_decay,l1]", "regularizer.l1.strength=1e-3"],
    "sgd-batchnorm-mixup-label_smoothing-l2-grad_clip": [
        "model=mlp", "regularizer=[batchnorm,mixup,label_smoothing,l2,grad_clip]", "optimizer=sgd",
        "optimizer.momentum=0.9", "optimizer.nesterov=true", "regularizer.grad_clip.max_norm=0.5", "scheduler=cosine"],
    "sgd-cnn1d-layernorm-augment_signal-max_norm-noise-l1": [
        "model=cnn1d", "regularizer=[layernorm,augment_signal,max_norm,noise,l1]", "optimizer=sgd",
        "regularizer.max_norm.c=0.5", "regularizer.l1.strength=1e-3", "scheduler=warmup"],
    "adam-cnn1d-batchnorm-dropout-signal_shift": ["model=cnn1d", "regularizer=[batchnorm,dropout,signal_shift]",
                                                  "regularizer.dropout.input_p=0.1"],
    "adam-cnn1d-folded-dropout-noise-weight_decay-mixup": [  # no normalization: the members' rows fold
        "model=cnn1d", "regularizer=[dropout,noise,weight_decay,mixup]", "regularizer.dropout.input_p=0.1"],
}


@pytest.mark.parametrize("case", CASES)
def test_first_steps_match_solo(case, tmp_path):
    lr = 0.05 if "sgd" in case else 0.01
    assert_stack_matches_solo(cfgs(*CASES[case], seeds=(0, 1), lrs=(lr, lr / 3)), tmp_path)


def test_members_with_different_regularizers_stack_and_match_solo(tmp_path):
    """A member without a penalty, decay, clipping or max-norm trains with the number that does nothing;
    augmentations, mixup and label smoothing run per member, dropout is a mask drawn per member."""
    sets = {"none": [], "[weight_decay]": [], "[dropout,l2]": [],
            "[signal_shift,grad_clip,max_norm]": ["regularizer.grad_clip.max_norm=0.5", "regularizer.max_norm.c=0.5"],
            "[mixup,l1]": ["regularizer.l1.strength=1e-3"], "[label_smoothing,weight_decay]": []}
    configs = [compose(*TINY, "model=mlp", f"seed={k}", f"regularizer={r}", *more) for k, (r, more) in enumerate(sets.items())]
    assert len({S.stack_key(c) for c in configs}) == 1
    assert_stack_matches_solo(configs, tmp_path)


def assert_stack_matches_solo(configs, tmp_path):
    K = len(configs)
    stacked = S.train_stacked(configs, [tmp_path / f"stack{k}" for k in range(K)])
    for k, cfg in enumerate(configs):
        alone = solo.train(cfg, tmp_path / f"solo{k}")
        assert stacked[k]["stacked"] == K and stacked[k]["status"] == "completed"
        assert stacked[k]["run_id"] == alone["run_id"] and stacked[k]["steps"] == alone["steps"] == 4
        for key in METRICS:  # an accuracy may differ by one example (splits here hold 100+):
            # a near-tie flips under float32 reassociation (seen on an AMD EPYC)
            tolerance = {"abs": 1.01 / 100} if key.endswith("acc") else {"rel": 1e-5, "abs": 1e-6}
            assert stacked[k][key] == pytest.approx(alone[key], **tolerance), key
        for a, b in zip(strip(read_metrics(tmp_path / f"stack{k}")), strip(read_metrics(tmp_path / f"solo{k}"))):
            assert a.keys() == b.keys() and a["lr"] == b["lr"]
            for key in ("train_loss", "val_loss"):
                assert a[key] == pytest.approx(b[key], rel=1e-5), key
        mine, theirs = weights(tmp_path / f"stack{k}"), weights(tmp_path / f"solo{k}")
        assert mine.keys() == theirs.keys()
        for name in theirs:
            torch.testing.assert_close(mine[name], theirs[name], rtol=1e-4, atol=1e-6, msg=name)
        assert weights(tmp_path / "stack0") is not None
    first = weights(tmp_path / "stack0")
    assert any(not torch.equal(first[n], v) for n, v in weights(tmp_path / "stack1").items())


# ------------------------------------------------------------------------------- per-member control

def test_one_member_diverges_one_stops_early_and_their_sibling_is_untouched(tmp_path):
    common = ["model=mlp", "trainer.max_epochs=5"]
    configs = [compose(*TINY, *common, "seed=0"),
               compose(*TINY, *common, "seed=1", "optimizer.lr=1e12"),
               compose(*TINY, *common, "seed=2", "trainer.early_stopping.patience=0",
                       "trainer.early_stopping.min_delta=2")]  # no epoch after the first can improve by 2
    dirs = [tmp_path / f"m{k}" for k in range(3)]
    results = S.train_stacked(configs, dirs)
    assert [r["status"] for r in results] == ["completed", "diverged", "completed"]
    assert results[0]["epochs_run"] == 5 and results[2]["epochs_run"] == 2
    assert results[1]["test_acc"] is None and read_metrics(dirs[1])[-1]["train_loss"] is None
    assert results[2]["selected"] == "best" and results[2]["best_epoch"] == 1
    alone = solo.train(configs[0], tmp_path / "solo0")
    for key in METRICS:
        assert results[0][key] == pytest.approx(alone[key], rel=1e-5), key
    assert all(r["stacked"] == 3 for r in results)
    rerun = S.train_stacked(configs, dirs)  # finished members are not retrained
    assert all(r.get("skipped") for r in rerun)


def test_members_log_train_metrics_at_solo_cadence_and_at_their_own_stop(tmp_path):
    common = ["model=mlp", "trainer.max_epochs=4", "trainer.train_eval_every=3"]
    configs = [compose(*TINY, *common, "seed=0"),
               compose(*TINY, *common, "seed=1", "trainer.early_stopping.patience=0",
                       "trainer.early_stopping.min_delta=2")]  # stops at epoch 2, between two cadence epochs
    S.train_stacked(configs, [tmp_path / "m0", tmp_path / "m1"])
    for k, (cfg, epochs) in enumerate(zip(configs, ([1, 3, 4], [1, 2]))):
        solo.train(cfg, tmp_path / f"solo{k}")
        stacked, alone = read_metrics(tmp_path / f"m{k}"), read_metrics(tmp_path / f"solo{k}")
        assert [r["epoch"] for r in stacked if r["train_acc"] is not None] == epochs
        assert [r["epoch"] for r in alone if r["train_acc"] is not None] == epochs
        for a, b in zip(stacked, alone, strict=True):
            assert (a["train_acc"], a["val_acc"]) == pytest.approx((b["train_acc"], b["val_acc"]), abs=1e-6)


# ------------------------------------------------------------------------------------ kill and resume

KILL_ARGS = ["debug=tiny", "model=mlp", "regularizer=[dropout,mixup]", "trainer.max_epochs=8", "dataset.n_train=1000",
             "trainer.checkpoint_every_s=0"]
def test_sigkill_then_rerun_resumes_every_member_and_a_member_resumes_solo(tmp_path):
    configs = [compose(*KILL_ARGS, f"seed={s}") for s in range(3)]
    reference = S.train_stacked(configs, [tmp_path / f"ref{s}" for s in range(3)])

    killed = tmp_path / "killed"
    kill_stack_mid_training(killed, KILL_ARGS)

    alone = solo.train(configs[0], killed / "m0")  # a stacked member's checkpoint continues in the solo loop
    assert "stacked" not in alone
    resumed = S.train_stacked(configs, [killed / f"m{s}" for s in range(3)])
    assert resumed[0].get("skipped")
    for s in (1, 2):  # the stack resumed: exact
        for key in (*METRICS, "best_epoch", "epochs_run", "steps"):
            assert resumed[s][key] == reference[s][key], key
        assert strip(read_metrics(killed / f"m{s}")) == strip(read_metrics(tmp_path / f"ref{s}"))
    for key in METRICS:  # solo after stacked: the same random draws, float tolerance
        assert alone[key] == pytest.approx(reference[0][key], rel=1e-4), key


# ------------------------------------------------------------------------------------------- W&B

def test_wandb_offline_one_run_per_member(tmp_path):
    configs = [compose(*TINY, "model=mlp", "logger=wandb", f"seed={s}", "regularizer=[dropout]") for s in range(2)]
    results = S.train_stacked(configs, [tmp_path / f"m{s}" for s in range(2)])
    # Each member's run is finished; W&B's service writes its offline file behind that call and flushes it at the
    # latest when the process ends (where a user's `wandb sync` reads it). This process goes on: end the service.
    import wandb

    wandb.teardown()
    ids, requirements = set(), set()
    for s, result in enumerate(results):
        (offline,) = (tmp_path / f"m{s}" / "wandb").glob("offline-run-*")
        (log,) = offline.glob("run-*.wandb")
        data = log.read_bytes()
        for name in (b"train_loss", b"val_acc", b"test_acc", b"dropout"):
            assert name in data, name
        assert result["logger_id"] == offline.name.rsplit("-", 1)[1] == read_result(tmp_path / f"m{s}")["logger_id"]
        ids.add(result["logger_id"])
        requirements.add((offline / "files" / "requirements.txt").read_text())
    assert len(ids) == 2
    (listed,) = requirements  # every member's run records the installed packages (listed once per process)
    assert "torch==" in listed
