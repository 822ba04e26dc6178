"""trainer.precision, trainer.compile and trainer.channels_last through the real CLI on CPU (where torch allows)."""

from __future__ import annotations

import pytest
from helpers import read_metrics, read_result, run_cli


def test_bf16_autocast_trains_and_differs_from_fp32(tmp_path):
    common = ("run", "debug=tiny", "model=mlp", "trainer.max_epochs=2", "trainer.early_stopping.patience=null")
    for precision in ("32", "bf16"):
        out = run_cli(*common, f"trainer.precision={precision}", f"hydra.run.dir={tmp_path}/{precision}", cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
    fp32, bf16 = read_result(tmp_path / "32"), read_result(tmp_path / "bf16")
    assert (fp32["precision"], bf16["precision"]) == ("32", "bf16") and bf16["status"] == "completed"
    # bfloat16 rounds the forward pass: close to fp32's losses, not equal to them
    a, b = read_metrics(tmp_path / "32")[-1]["train_loss"], read_metrics(tmp_path / "bf16")[-1]["train_loss"]
    assert a != b and b == pytest.approx(a, rel=0.05)


def test_channels_last_and_bf16_on_a_2d_conv_net(tmp_path):
    out = run_cli("run", "debug=tiny", "dataset=digits", "model=cnn", "trainer.channels_last=true", "trainer.precision=bf16",
                  f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert read_result(tmp_path / "run")["status"] == "completed"


@pytest.mark.parametrize("args,message", [
    (("trainer.precision=16",), "trainer.precision=16 needs CUDA"),
    (("trainer.precision=8",), "trainer.precision=8 is not one of"),
    (("trainer.channels_last=true",), "trainer.channels_last=true needs (C, H, W) images"),
    (("trainer.compile=maybe",), "trainer.compile='maybe' is not one of"),
])
def test_options_that_cannot_act_here_are_refused(args, message, tmp_path):
    out = run_cli("run", "debug=tiny", *args, f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and message in out.stderr, out.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_compile_trains_and_reports_its_time_apart(tmp_path):
    """torch.compile on CPU needs a C compiler (installed here) and about 20 s for a tiny MLP."""
    common = ("run", "debug=tiny", "model=mlp", "trainer.max_epochs=3", "trainer.early_stopping.patience=null")
    assert run_cli(*common, f"hydra.run.dir={tmp_path}/eager", cwd=tmp_path).returncode == 0
    out = run_cli(*common, "trainer.compile=true", f"hydra.run.dir={tmp_path}/compiled", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    eager, compiled = read_result(tmp_path / "eager"), read_result(tmp_path / "compiled")
    assert compiled["compile_time_s"] > compiled["train_time_s"] and eager["compile_time_s"] is None
    assert compiled["steps"] == eager["steps"] and compiled["train_loss"] == pytest.approx(eager["train_loss"], rel=1e-4)
