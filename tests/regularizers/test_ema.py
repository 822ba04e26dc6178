"""EMA: the evaluated weights are the exponential average of the trained ones, and a resumed run continues it exactly."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F
from helpers import compose, read_metrics, tiny

from regbench import build, checkpoint
from regbench.errors import ConfigError
from regbench.train import train


def setup(*overrides):
    cfg = compose("model=mlp", "regularizer=[ema]", *overrides)
    regs = build.build_regularizers(cfg.regularizer)
    torch.manual_seed(0)
    model = build.build_model(cfg.model, (1, 40), 10, regs)
    for reg in regs:
        reg.setup(model, input_shape=(1, 40), num_classes=10)
    return model, next(r for r in regs if r.name == "ema")


def test_eval_weights_are_the_exponential_average():
    # BatchNorm too, so the running statistics (buffers) are averaged with the weights.
    d = 0.8
    model, ema = setup("regularizer=[batchnorm,ema]", f"regularizer.ema.decay={d}")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    expected = {k: v.clone() for k, v in model.state_dict().items()}  # the average starts at the initial weights
    for _ in range(5):
        loss = F.cross_entropy(model(torch.randn(32, 1, 40)), torch.randint(0, 10, (32,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.after_step(model)
        for k, v in model.state_dict().items():
            expected[k] = d * expected[k] + (1 - d) * v if v.dtype.is_floating_point else v.clone()
    shadow = ema.eval_model(model)
    assert shadow is not model and not shadow.training
    for k, v in shadow.state_dict().items():
        assert torch.allclose(v, expected[k], atol=1e-6), k
    assert shadow.state_dict()["hidden.0.1.num_batches_tracked"] == 5
    assert not torch.allclose(shadow.state_dict()["hidden.0.0.weight"], model.state_dict()["hidden.0.0.weight"])
    x = torch.randn(4, 1, 40)
    with torch.no_grad():
        assert not torch.allclose(shadow(x), model.eval()(x))


@pytest.mark.parametrize("order", ["ema,weight_noise", "weight_noise,ema"])
def test_average_starts_at_the_initial_weights_whatever_the_order(order):
    # weight_noise re-parametrizes the kernels in its setup; the average must still start at w₀.
    model, ema = setup(f"regularizer=[{order}]", "regularizer.ema.decay=0.5", "regularizer.weight_noise.std=0.1")
    w0 = {k: v.clone() for k, v in model.state_dict().items()}
    assert "hidden.0.0.parametrizations.weight.original" in w0
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    F.cross_entropy(model(torch.randn(32, 1, 40)), torch.randint(0, 10, (32,))).backward()
    opt.step()
    ema.after_step(model)
    for k, v in ema.eval_model(model).state_dict().items():
        assert torch.allclose(v, 0.5 * w0[k] + 0.5 * model.state_dict()[k]), k


def test_decay_zero_evaluates_the_model_itself():
    model, ema = setup("regularizer.ema.decay=0")
    ema.after_step(model)
    assert ema.eval_model(model) is model and ema.state_dict() == {} and ema.shadow is None


def test_decay_must_be_below_one():
    with pytest.raises(ConfigError, match=r"^regularizer\.ema\.decay=1\.0 is out of range \[0, 1\)"):
        setup("regularizer.ema.decay=1.0")


RUN = ("model=mlp", "regularizer=[ema,dropout]", "regularizer.ema.decay=0.9", "trainer.early_stopping.patience=null")


def test_resume_continues_the_average_exactly(tmp_path):
    full = train(tiny(*RUN, "trainer.max_epochs=4"), tmp_path / "full")
    # The state after epoch 2 of the same run (a constant schedule does not depend on max_epochs),
    # then the 4-epoch command resumed from it, as after a kill.
    train(tiny(*RUN, "trainer.max_epochs=2"), tmp_path / "half")
    for name, keep_ema in (("resumed", True), ("resumed_without_ema", False)):
        ckpt = checkpoint.load(tmp_path / "half" / "checkpoints" / "last.pt")
        assert set(ckpt["regularizers"]["ema"]) == {"shadow", "updates"} and ckpt["regularizers"]["ema"]["updates"] == 4
        ckpt["state"]["run_id"] = full["run_id"]  # as the 4-epoch run's own checkpoint after a kill at epoch 2
        if not keep_ema:
            del ckpt["regularizers"]["ema"]  # what a checkpoint without the average would give
        checkpoint.save_all([(ckpt, tmp_path / name / "checkpoints" / "last.pt")])
    resumed = train(tiny(*RUN, "trainer.max_epochs=4"), tmp_path / "resumed")
    for key in ("train_loss", "val_loss", "test_loss", "test_acc", "steps"):
        assert resumed[key] == full[key], key  # exact
    assert read_metrics(tmp_path / "resumed")[-1]["val_loss"] == read_metrics(tmp_path / "full")[-1]["val_loss"]
    lost = train(tiny(*RUN, "trainer.max_epochs=4"), tmp_path / "resumed_without_ema")
    assert lost["val_loss"] != full["val_loss"], "the test must be able to see a lost average"
    shutil.rmtree(tmp_path / "half")


def test_best_checkpoint_carries_the_average(tmp_path):
    # min_delta=1: no later epoch counts as better, so epoch 1 is selected and the run stops at 4.
    result = train(tiny("model=mlp", "regularizer=[ema]", "regularizer.ema.decay=0.9", "trainer.max_epochs=10",
                        "trainer.early_stopping.patience=2", "trainer.early_stopping.min_delta=1.0"), tmp_path)
    rows = read_metrics(tmp_path)
    assert result["selected"] == "best" and result["best_epoch"] == 1 and result["epochs_run"] == 4
    best = checkpoint.load(tmp_path / "checkpoints" / "best.pt")
    assert best["epoch"] == 1 and best["regularizers"]["ema"]["updates"] == 2
    # The final evaluation is epoch 1's average, not epoch 4's average nor epoch 1's raw weights.
    assert result["val_loss"] == pytest.approx(rows[0]["val_loss"], rel=1e-6)
    assert result["val_loss"] != pytest.approx(rows[-1]["val_loss"], rel=1e-6)
