"""Real training on tiny data: every model learns, early stopping restores its best epoch, divergence is recorded."""

from __future__ import annotations


import pytest
import torch
from helpers import read_metrics, read_result, tiny

from regbench.config import CONFIG_DIR, options
from regbench.train import build_run, evaluate_splits, train

MODELS_1D = ("logistic", "mlp", "cnn1d", "mlp_1x512", "mlp_3x512")


def models_for(dataset):
    shape = {"mnist1d": 1, "digits": 2}[dataset]
    from omegaconf import OmegaConf

    out = []
    for p in [CONFIG_DIR / "model" / f"{o}.yaml" for o in options("model")]:
        target = OmegaConf.load(p)._target_
        one_d = p.stem in MODELS_1D or target.endswith((".MLP", ".Logistic", ".CNN1d"))
        if (shape == 1) == one_d or target.endswith((".MLP", ".Logistic")):
            out.append(p.stem)
    return out


@pytest.mark.parametrize("model", models_for("mnist1d"))
def test_each_1d_model_trains_on_mnist1d(model, tmp_path):
    result = train(tiny(f"model={model}", "dataset.n_train=300", "trainer.max_epochs=3", "optimizer.lr=3e-3",
                        "trainer.train_eval_every=1"), tmp_path)
    assert result["status"] == "completed"
    rows = read_metrics(tmp_path)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]  # it learns: the training loss falls epoch over epoch
    assert result["steps"] == 3 * 3
    # The result is the selected epoch's checkpoint: its validation numbers are that epoch's row.
    selected = rows[result["best_epoch"] - 1]
    assert (result["val_loss"], result["val_acc"]) == pytest.approx((selected["val_loss"], selected["val_acc"]), abs=1e-6)


@pytest.mark.parametrize("model", [m for m in models_for("digits") if m not in ("logistic",)])
def test_each_model_trains_on_digits(model, tmp_path):
    overrides = ["dataset=digits", f"model={model}", "dataset.n_train=120", "trainer.max_epochs=1", "trainer.batch_size=60"]
    if model in ("resnet18", "wide_resnet"):
        overrides += ["model.width=4"] if model == "resnet18" else ["model.widen_factor=1", "model.depth=10"]
    result = train(tiny(*overrides), tmp_path)
    assert result["status"] == "completed" and result["steps"] == 2


def test_results_files(tmp_path):
    result = train(tiny("model=mlp"), tmp_path)
    on_disk = read_result(tmp_path)
    assert on_disk == result
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "best_epoch", "epochs_run",
                "steps", "wall_time_s", "steps_per_s", "seed", "run_id", "regbench_version"):
        assert key in on_disk, key
    assert (tmp_path / "config.yaml").exists()
    assert (tmp_path / "checkpoints" / "last.pt").exists() and (tmp_path / "checkpoints" / "best.pt").exists()
    row = read_metrics(tmp_path)[0]
    assert set(row) >= {"epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"}


def test_early_stopping_stops_and_restores_best(tmp_path):
    # min_delta=1 makes any later improvement too small: stop after epoch 1 + patience + 1, keep epoch 1.
    cfg = tiny("model=mlp", "trainer.max_epochs=20", "trainer.early_stopping.patience=2",
               "trainer.early_stopping.min_delta=1.0")
    result = train(cfg, tmp_path)
    rows = read_metrics(tmp_path)
    assert result["epochs_run"] == 4 and len(rows) == 4
    assert result["best_epoch"] == 1 and result["selected"] == "best"
    assert result["val_acc"] == pytest.approx(rows[0]["val_acc"], abs=1e-12)
    assert result["val_acc"] != rows[-1]["val_acc"] or result["val_loss"] == pytest.approx(rows[0]["val_loss"])


def test_early_stopping_follows_the_best_val_epoch(tmp_path):
    result = train(tiny("model=mlp", "trainer.max_epochs=8", "trainer.early_stopping.patience=100"), tmp_path)
    rows = read_metrics(tmp_path)
    best = max(rows, key=lambda r: r["val_acc"])  # first epoch with the highest accuracy
    assert result["best_epoch"] == best["epoch"]
    assert result["val_loss"] == pytest.approx(best["val_loss"], rel=1e-6)


def test_without_early_stopping_the_last_epoch_is_kept(tmp_path):
    result = train(tiny("model=mlp", "trainer.max_epochs=3", "trainer.early_stopping.patience=null"), tmp_path)
    assert result["selected"] == "last" and result["best_epoch"] == 3 and result["epochs_run"] == 3
    assert result["val_loss"] == pytest.approx(read_metrics(tmp_path)[-1]["val_loss"], rel=1e-6)


def test_divergence_is_recorded_not_raised(tmp_path):
    result = train(tiny("model=mlp", "optimizer=sgd", "optimizer.lr=1e12", "trainer.max_epochs=5"), tmp_path)
    assert result["status"] == "diverged"
    assert read_result(tmp_path)["status"] == "diverged"
    assert result["test_acc"] is None and result["epochs_run"] < 5


def test_completed_run_is_not_retrained(tmp_path):
    cfg = tiny("model=mlp")
    first = train(cfg, tmp_path)
    mtime = (tmp_path / "checkpoints" / "last.pt").stat().st_mtime_ns
    again = train(cfg, tmp_path)
    assert again["skipped"] and again["test_acc"] == first["test_acc"]
    assert (tmp_path / "checkpoints" / "last.pt").stat().st_mtime_ns == mtime


def test_same_seed_same_numbers_other_seed_others(tmp_path):
    a = train(tiny("model=mlp", "regularizer=[dropout]"), tmp_path / "a")
    b = train(tiny("model=mlp", "regularizer=[dropout]"), tmp_path / "b")
    c = train(tiny("model=mlp", "regularizer=[dropout]", "seed=1"), tmp_path / "c")
    assert a["val_loss"] == b["val_loss"] and a["test_loss"] == b["test_loss"]
    assert c["val_loss"] != a["val_loss"]


def test_another_config_in_the_same_dir_is_refused(tmp_path):
    from regbench.errors import UserError

    train(tiny("model=mlp"), tmp_path)
    with pytest.raises(UserError, match="another configuration"):
        train(tiny("model=mlp", "seed=3"), tmp_path)
    assert read_result(tmp_path)["seed"] == 0


def _lr_trace(scheduler: str, steps: int) -> list[float]:
    """The learning rate at each of ``steps`` steps of SGD(lr=0.1), 10 steps per epoch, 100 epochs."""
    from helpers import compose

    from regbench import build

    cfg = compose(f"scheduler={scheduler}", "optimizer=sgd", "optimizer.lr=0.1")
    opt = build.build_optimizer(cfg.optimizer, torch.nn.Linear(2, 2))
    sched = build.build_scheduler(cfg.scheduler, opt, steps_per_epoch=10, max_epochs=100)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
    return lrs


@pytest.mark.parametrize("scheduler,factor", [("exponential", lambda e: 0.95 ** e), ("step", lambda e: 0.1 ** (e // 30)),
                                              ("constant", lambda e: 1.0)])
def test_schedules_follow_their_definition(scheduler, factor):
    lrs = _lr_trace(scheduler, 1000)
    for epoch in (0, 1, 35, 99):
        assert lrs[epoch * 10] == pytest.approx(0.1 * factor(epoch)), epoch


def test_cosine_and_warmup_schedules():
    lrs = _lr_trace("cosine", 1000)
    assert lrs[0] == pytest.approx(0.1) and lrs[500] == pytest.approx(0.05, rel=1e-2) and lrs[-1] < 1e-4
    lrs = _lr_trace("warmup", 60)  # 5 warmup epochs of 10 steps
    assert lrs[0] == pytest.approx(0.1 / 51) and lrs[25] < lrs[49] and lrs[50] == pytest.approx(0.1)


def test_per_epoch_train_metrics_use_the_subset_the_result_names(tmp_path):
    common = ("model=mlp", "dataset.n_train=300", "trainer.max_epochs=2", "trainer.early_stopping.patience=null")
    subset = train(tiny(*common, "trainer.train_eval_size=120"), tmp_path / "subset")
    whole = train(tiny(*common, "trainer.train_eval_size=null"), tmp_path / "whole")
    assert subset["train_eval_examples"] == 120 and whole["train_eval_examples"] == 300
    # The same training (the subset changes what is measured, not what is trained) ...
    assert subset["test_loss"] == whole["test_loss"] and subset["train_acc"] == whole["train_acc"]
    # ... the curve of the whole split is the result's number for the last epoch, the subset's is its own.
    last_whole, last_subset = read_metrics(tmp_path / "whole")[-1], read_metrics(tmp_path / "subset")[-1]
    assert last_whole["train_acc"] == whole["train_acc"]
    correct = last_subset["train_acc"] * 120
    assert abs(correct - round(correct)) < 1e-9  # a count out of the 120 examples of the subset


def test_train_metrics_follow_the_cadence_the_result_names(tmp_path):
    common = ("model=mlp", "dataset.n_train=300", "trainer.max_epochs=7")
    sparse = train(tiny(*common, "trainer.train_eval_every=3", "trainer.early_stopping.patience=null"), tmp_path / "sparse")
    rows = read_metrics(tmp_path / "sparse")
    assert sparse["train_eval_every"] == 3
    assert [r["epoch"] for r in rows if r["train_acc"] is not None] == [1, 3, 6, 7]  # the first, every 3rd, the last
    assert all(r["val_acc"] is not None for r in rows)  # validation (early stopping's) every epoch
    # What is logged, not what is trained: the same run id, the same weights as evaluating every epoch
    every = train(tiny(*common, "trainer.train_eval_every=1", "trainer.early_stopping.patience=null"), tmp_path / "every")
    assert every["run_id"] == sparse["run_id"] and every["test_loss"] == sparse["test_loss"]
    assert [r["train_acc"] for r in rows if r["train_acc"] is not None] == [
        r["train_acc"] for r in read_metrics(tmp_path / "every") if r["epoch"] in (1, 3, 6, 7)]
    # A run that stops early has its train metrics at the epoch it stopped (min_delta=2: nothing improves after epoch 1)
    stopped = train(tiny(*common, "trainer.train_eval_every=5", "trainer.early_stopping.patience=1",
                         "trainer.early_stopping.min_delta=2"), tmp_path / "stopped")
    assert stopped["epochs_run"] == 3
    assert [r["epoch"] for r in read_metrics(tmp_path / "stopped") if r["train_acc"] is not None] == [1, 3]


def test_splits_evaluated_together_each_get_their_own_numbers(tmp_path):
    run = build_run(tiny("model=mlp", "regularizer=[dropout]"), tmp_path)
    data = run.data
    splits = [(data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test)]
    run.model.train()
    together = evaluate_splits(run.model, splits, 7)  # batches of 7: several per split, and a remainder
    assert run.model.training  # back in the mode it was in
    run.model.eval()
    with torch.no_grad():
        for (x, y), (loss, acc) in zip(splits, together, strict=True):
            logits = run.model(x)  # eval mode: dropout off, so one pass gives the same numbers
            assert loss == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
            assert acc == (logits.argmax(1) == y).sum().item() / len(y)
