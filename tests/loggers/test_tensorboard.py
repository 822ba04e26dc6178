"""logger=tensorboard: event files in the run dir that TensorBoard's own reader reads back as one run, every epoch
once, a resumed session included."""

from __future__ import annotations

import json

import pytest
from helpers import compose, read_metrics, read_result, run_cli
from tracker_readers import hparams, tensorboard

from regbench import build
from regbench.errors import ConfigError

pytest.importorskip("tensorboard")

METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "step")


def test_a_run_leaves_event_files_tensorboard_reads_back(tmp_path):
    run_dir = tmp_path / "run"
    out = run_cli("run", "model=mlp", "trainer.max_epochs=3", "dataset.n_train=200", "trainer.num_threads=1", "trainer.train_eval_every=5",
                  "regularizer=[dropout]", "logger=tensorboard", "logger.tags=[mine]", "name=study1", f"hydra.run.dir={run_dir}",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    rows, result = read_metrics(run_dir), read_result(run_dir)
    scalars, texts, acc = tensorboard(run_dir / "tensorboard")
    for key in METRICS:  # each epoch's row, at step = epoch; a metric not measured that epoch is left out
        expected = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
        assert [s for s, _ in scalars[key]] == [s for s, _ in expected], key
        assert [v for _, v in scalars[key]] == pytest.approx([v for _, v in expected], rel=1e-6), key
    assert [s for s, _ in scalars["train_acc"]] == [1, 3]  # evaluated at epoch 1, every 2nd and the last
    assert scalars["result/test_acc"] == [(3, pytest.approx(result["test_acc"]))]
    assert "dropout" in texts["config"][0] and "p: 0.5" in texts["config"][0]
    assert texts["study"] == ["study1"] and texts["tags"] == ["dropout, mine"]
    assert json.loads(texts["result"][0].strip("`json\n"))["status"] == "completed"
    params = hparams(acc)
    assert params["regularizer.dropout.p"] == 0.5 and params["study"] == "study1" and params["model.width"] > 0
    assert json.loads(result["logger_id"]) == {"tensorboard": "tensorboard"}


def test_a_resumed_session_replaces_what_the_killed_one_wrote(tmp_path):
    """Session 1 logs 4 epochs and dies (no finish); its checkpoint had 2. Session 2 resumes from the checkpoint
    (metrics.jsonl rewritten to 2 rows), trains epochs 3 to 5 again: the folder reads as epochs 1-5, once each,
    epochs 3-5 as session 2 logged them."""
    cfg = compose("logger=tensorboard")
    row = lambda epoch, value: {"epoch": epoch, "step": 10 * epoch, "val_acc": value, "train_acc": None}  # noqa: E731
    start = dict(run_dir=tmp_path, config={"seed": 0}, group="study", name="run", tags=["baseline"])
    first = build.build_logger(cfg.logger)
    first.start(**start, resume_id=None)
    for epoch in range(1, 5):
        first.log(row(epoch, 0.1 * epoch))
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(row(e, 0.1 * e)) + "\n" for e in (1, 2)))

    second = build.build_logger(cfg.logger)
    second.start(**start, resume_id=first.run_id)
    assert second.run_id == first.run_id
    for epoch in range(3, 6):
        second.log(row(epoch, 0.5 + 0.01 * epoch))
    second.finish({"status": "completed", "test_acc": 0.9})
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 2  # one folder, a file per session
    scalars, texts, _ = tensorboard(tmp_path / "tensorboard")
    assert scalars["val_acc"] == [(1, pytest.approx(0.1)), (2, pytest.approx(0.2)), (3, pytest.approx(0.53)),
                                  (4, pytest.approx(0.54)), (5, pytest.approx(0.55))]
    assert [s for s, _ in scalars["step"]] == [1, 2, 3, 4, 5] and "train_acc" not in scalars
    assert len(texts["config"]) == 1 and scalars["result/test_acc"] == [(5, pytest.approx(0.9))]


def test_a_missing_tensorboard_is_one_line_before_training(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"^logger=tensorboard: the tensorboard package is not installed: pip install 'regbench\[trackers\]'"):
        build.check(compose("debug=tiny", "logger=[wandb,tensorboard]"))


def test_the_tensorboard_server_reads_a_resumed_folder_as_one_run(tmp_path):
    """The same, through the reader TensorBoard's server uses (plugin_event_accumulator: every summary a tensor)."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    cfg = compose("logger=tensorboard")
    start = dict(run_dir=tmp_path, config={"seed": 0}, group="study", name="run", tags=["baseline"])
    first = build.build_logger(cfg.logger)
    first.start(**start, resume_id=None)
    for epoch in (1, 2, 3):
        first.log({"epoch": epoch, "val_acc": 0.1 * epoch})
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "val_acc": 0.1}) + "\n")
    second = build.build_logger(cfg.logger)
    second.start(**start, resume_id=first.run_id)
    second.log({"epoch": 2, "val_acc": 0.7})
    second.finish({"status": "completed"})
    acc = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"tensors": 0})
    acc.Reload()
    val = [(e.step, tensor_util.make_ndarray(e.tensor_proto).item()) for e in acc.Tensors("val_acc")]
    assert val == [(1, pytest.approx(0.1)), (2, pytest.approx(0.7))]
    assert len(acc.Tensors("config/text_summary")) == 1
