"""W&B works with no network: offline run files exist, hold the logged metric names, and every run is finished."""

from __future__ import annotations

from helpers import read_result, run_cli


def test_offline_run_files_hold_metrics_and_summary(tmp_path):
    env = {"WANDB_MODE": None}  # unset: the config's offline default must be what keeps us off the network
    out = run_cli("run", "model=mlp", "trainer.max_epochs=2", "dataset.n_train=100", "trainer.num_threads=1",
                  "regularizer=[dropout]", f"hydra.run.dir={tmp_path}/run", env=env)
    assert out.returncode == 0, out.stderr
    (offline,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    (log,) = offline.glob("run-*.wandb")
    data = log.read_bytes()
    for name in (b"train_loss", b"train_acc", b"val_loss", b"val_acc", b"lr", b"epoch"):
        assert name in data, name
    assert b"test_acc" in data  # summary, written by finish()
    assert b"dropout" in data  # tags: the active regularizers
    assert read_result(tmp_path / "run")["logger_id"] == offline.name.rsplit("-", 1)[1]
    requirements = (offline / "files" / "requirements.txt").read_text()  # the installed packages, as W&B lists them
    assert "torch==" in requirements and "wandb==" in requirements
