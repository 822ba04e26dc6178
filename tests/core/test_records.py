"""result.json through the typed reader and writer: the bytes regbench 0.2.0 wrote come back unchanged, and a run
today writes the same keys in the same order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import tiny

from regbench.records import FINISHED, Result, Status, read_result, write_result
from regbench.stack import train_stacked
from regbench.train import train

#: result.json files regbench 0.2.0 (commit 5b3eca4) wrote: tiny real runs (solo, diverged, a member of a stack of 2)
#: and the record app.py writes for a sweep's failed job.
WRITTEN = Path(__file__).parent / "results"


@pytest.mark.parametrize("name", ["completed", "diverged", "stacked", "failed"])
def test_a_result_written_by_0_2_0_reads_and_writes_back_byte_for_byte(name, tmp_path):
    original = (WRITTEN / f"{name}.json").read_bytes()
    (tmp_path / "result.json").write_bytes(original)
    result = read_result(tmp_path)
    assert result == json.loads(original)  # the mapping view is the JSON object
    (tmp_path / "again").mkdir()
    write_result(tmp_path / "again", result)
    assert (tmp_path / "again" / "result.json").read_bytes() == original


def test_a_run_today_writes_the_keys_0_2_0_wrote_in_their_order(tmp_path):
    solo = train(tiny("seed=0", "trainer.early_stopping.patience=5"), tmp_path / "solo")
    diverged = train(tiny("model=mlp", "optimizer=sgd", "optimizer.lr=1e12", "trainer.max_epochs=5"), tmp_path / "div")
    stacked = train_stacked([tiny("seed=2"), tiny("seed=3")], [tmp_path / "s2", tmp_path / "s3"])[0]
    for result, run_dir, name in ((solo, "solo", "completed"), (diverged, "div", "diverged"), (stacked, "s2", "stacked")):
        on_disk = json.loads((tmp_path / run_dir / "result.json").read_text())
        assert list(on_disk) == list(json.loads((WRITTEN / f"{name}.json").read_text())), name
        assert isinstance(result, Result) and result == on_disk and read_result(tmp_path / run_dir) == on_disk
    assert (solo.status, diverged.status, stacked.stacked) == (Status.COMPLETED, Status.DIVERGED, 2)
    assert solo.test_acc == solo["test_acc"] and diverged.test_acc is None
    # the same configuration again is not retrained: its result comes back as it was read, marked skipped
    again = train(tiny("seed=0", "trainer.early_stopping.patience=5"), tmp_path / "solo")
    assert again.skipped and dict(again) == {**solo, "skipped": True}


def test_status_words_are_the_words_on_disk():
    assert Status.COMPLETED == "completed" and "pruned" in FINISHED and "failed" not in FINISHED
    assert f"{Status.NOT_STARTED}" == str(Status.NOT_STARTED) == "not started"
    assert json.dumps({"status": Status.PRUNED}) == '{"status": "pruned"}'


def test_keys_and_statuses_of_another_version_are_kept_in_order(tmp_path):
    data = {"status": "archived", "run_id": "abc", "error": "x", "future_key": [1, 2], "another": None}
    result = Result.from_dict(data)
    assert result.status == "archived" and not result.finished and result.extra == {"future_key": [1, 2], "another": None}
    write_result(tmp_path, result)
    assert json.loads((tmp_path / "result.json").read_text()) == data
    assert list(json.loads((tmp_path / "result.json").read_text())) == list(data)
