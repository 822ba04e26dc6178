"""The tuned protocol never mixes two studies or trains on input it will refuse later (issue #34, rows 2 and 7):
its settings are checked before the sweep dir is touched, a changed protocol in the same dir is one line, and a
damaged tuned.json is one line in status, results and report."""

from __future__ import annotations

import pytest
from helpers import TINY, run_cli
from helpers import one_line_error as one_line

SMALL = ("model=mlp", "seed=0", "tune.seeds=[100]", *TINY, "trainer.max_epochs=1")


@pytest.mark.parametrize("overrides,fragment", [
    (["tune.space={seed:[1,2]}"], "'seed' cannot be tuned"),
    (["tune.space={optimizer.lr:[0.1]}", "tune.seeds=[100,100]"], "each seed once"),
    (["tune.space=[1,2]"], "a mapping of config keys"),
    (["tune.space={optimizer.lr:[0.1]}", "tune.seeds=5"], "tune.seeds=5"),
])
def test_bad_tuning_input_is_one_line_before_anything_is_written(overrides, fragment, run_sweep):
    out, base = run_sweep("model=mlp", "seed=0", *TINY, *overrides)
    one_line(out, fragment)
    assert not base.exists()


def test_tune_space_on_a_single_run_is_refused_not_ignored(tmp_path):
    out = run_cli("run", *TINY, "tune.space={optimizer.lr:[0.1]}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    one_line(out, "add -m")
    assert not (tmp_path / "run").exists()


def test_a_changed_search_space_in_the_same_sweep_dir_is_refused_and_the_study_kept(run_sweep, tmp_path):
    out, base = run_sweep(*SMALL, "tune.space={optimizer.lr:[0.01]}")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    before = {p: p.read_bytes() for p in base.rglob("result.json")}
    out, _ = run_sweep(*SMALL, "tune.space={optimizer.lr:[0.03]}")
    one_line(out, "another protocol", "tune.space")
    assert {p: p.read_bytes() for p in base.rglob("result.json")} == before
    out, _ = run_sweep(*SMALL, "tune.space={optimizer.lr:[0.01]}")  # the same study again: nothing to train
    assert out.returncode == 0 and {p: p.read_bytes() for p in base.rglob("result.json")} == before


@pytest.mark.parametrize("content", ['{"space": ', '{"space": [1], "arms": 3}', "[]"])
def test_a_damaged_tuned_json_is_one_line_in_status_results_and_report(content, run_sweep, tmp_path):
    out, base = run_sweep(*SMALL, "tune.space={optimizer.lr:[0.01]}")
    assert out.returncode == 0, out.stderr[-2000:]
    (base / "tuned.json").write_text(content)
    for command in ("status", "results", "report"):
        out = run_cli(command, str(base / "final"), cwd=tmp_path)
        one_line(out, "tuned.json", "move it away")
    assert (base / "tuned.json").read_text() == content
