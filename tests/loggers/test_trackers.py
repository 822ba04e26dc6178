"""logger is multi-select: the selected trackers behind one interface. A tracker that fails is dropped with a
warning while the others and the local files go on; the run id names every tracker's run; a tracker new to a
resumed run is given the epochs it missed; which trackers log never changes a run's id."""

from __future__ import annotations

import json
import logging

import pytest
from helpers import compose
from omegaconf import OmegaConf

from regbench import build
from regbench.config import run_id
from regbench.loggers import Trackers, decode_ids, encode_ids


class Recorder:
    def __init__(self, name, fail_at=None, fail_start=False):
        self.name, self.fail_at, self.fail_start = name, fail_at, fail_start
        self.rows, self.result, self.resume_id, self.run_id = [], None, "unset", None

    def start(self, *, run_dir, config, group, name, tags, resume_id):
        if self.fail_start:
            raise ConnectionError("server went away")
        self.resume_id, self.tags, self.run_id = resume_id, tags, f"{self.name}-id"

    def log(self, row):
        if row["epoch"] == self.fail_at:
            raise ConnectionError("server went away")
        self.rows.append(row["epoch"])

    def finish(self, result):
        self.result = result


START = dict(config={}, group="study", name="run", tags=["dropout"])


def test_a_tracker_that_fails_mid_run_is_dropped_with_a_warning_and_the_others_go_on(tmp_path, caplog):
    a, b = Recorder("a"), Recorder("b", fail_at=2)
    trackers = Trackers({"a": a, "b": b}, tags=["mine"])
    trackers.start(run_dir=tmp_path, resume_id=None, **START)
    assert a.tags == ["dropout", "mine"] and json.loads(trackers.run_id) == {"a": "a-id", "b": "b-id"}
    with caplog.at_level(logging.WARNING, logger="regbench"):
        for epoch in (1, 2, 3):
            trackers.log({"epoch": epoch})
        trackers.finish({"status": "completed"})
    assert a.rows == [1, 2, 3] and a.result == {"status": "completed"}
    assert b.rows == [1] and b.result is None
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "logger b stopped logging at epoch 2 (ConnectionError: server went away)" in warning
    assert "metrics.jsonl and result.json stay complete" in warning
    assert json.loads(trackers.run_id) == {"a": "a-id", "b": "b-id"}  # a resume may find b again


def test_a_tracker_that_cannot_start_keeps_its_id_for_the_next_resume(tmp_path, caplog):
    a, b = Recorder("a"), Recorder("b", fail_start=True)
    trackers = Trackers({"a": a, "b": b})
    with caplog.at_level(logging.WARNING, logger="regbench"):
        trackers.start(run_dir=tmp_path, resume_id=encode_ids({"a": "a-id", "b": "old-b"}), **START)
    assert "logger b could not start" in caplog.text
    assert json.loads(trackers.run_id) == {"a": "a-id", "b": "old-b"} and a.resume_id == "a-id"


def test_a_tracker_new_to_a_resumed_run_is_given_the_epochs_it_missed(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e}) + "\n" for e in (1, 2)))
    old, new = Recorder("wandb"), Recorder("new")
    trackers = Trackers({"wandb": old, "new": new})
    trackers.start(run_dir=tmp_path, resume_id="abc123", **START)  # a W&B-only run's id, as regbench 0.1 wrote it
    assert old.resume_id == "abc123" and new.resume_id is None
    assert old.rows == [] and new.rows == [1, 2]  # W&B has them; the new tracker gets them from metrics.jsonl


def test_run_ids_encode_every_tracker_and_a_wandb_id_alone_stays_plain():
    assert encode_ids({"wandb": "abc123"}) == "abc123" and decode_ids("abc123") == {"wandb": "abc123"}
    both = encode_ids({"wandb": "abc123", "mlflow": "f00d", "tensorboard": None})
    assert both == '{"mlflow":"f00d","wandb":"abc123"}' and decode_ids(both) == {"mlflow": "f00d", "wandb": "abc123"}
    assert encode_ids({}) is None and decode_ids(None) == {}


def test_logger_is_multi_select_and_none_is_no_tracker():
    cases = ((("logger=none",), []), ((), ["wandb"]), (("logger=[wandb,tensorboard,mlflow]",), ["wandb", "tensorboard", "mlflow"]))
    for overrides, names in cases:
        trackers = build.build_logger(compose(*overrides).logger)
        assert list(trackers.trackers) == names, overrides
    trackers = build.build_logger(compose("logger=none").logger)
    trackers.start(run_dir=".", resume_id=None, **START)
    assert trackers.run_id is None
    legacy = OmegaConf.create({"_target_": "regbench.loggers.NullLogger", "tags": ["x"]})  # the 0.1 single-logger shape
    assert list(build.build_logger(legacy).trackers) == ["logger"]


def test_which_trackers_log_is_no_part_of_a_run_id():
    base = run_id(compose("logger=none"))
    for overrides in (("logger=[tensorboard,mlflow]", "logger.mlflow.tracking_uri=sqlite:////x.db"),
                      ("logger=[wandb,tensorboard]", "logger.wandb.mode=disabled", "logger.tags=[a]")):
        assert run_id(compose(*overrides)) == base, overrides


@pytest.mark.parametrize("override,message", [
    ("logger.tags=['']", "logger.tags: '' must be a W&B tag of 1 to 64 characters"),
    ("logger.tensorboard.subdir=../out", "logger.tensorboard.subdir='../out' must be a folder name inside the run dir"),
    ("logger.mlflow.experiment=''", "logger.mlflow.experiment='' must be a non-empty string or null"),
])
def test_bad_tracker_options_name_their_key(override, message):
    with pytest.raises(build.ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        build.check(compose("debug=tiny", "logger=[tensorboard,mlflow]", override))
