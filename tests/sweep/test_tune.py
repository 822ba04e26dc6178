"""The tuned protocol: every arm gets the same candidates on the tuning seeds, the arm-wise best on validation
reruns over the study's seeds, an interrupted protocol continues, and bad settings are refused up front."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from omegaconf import OmegaConf
from helpers import TINY, compose, read_result

from regbench.cli import main
from regbench.errors import ConfigError
from regbench.sweep.tune import candidates, tuning_of

STUDY = ("model=mlp", "regularizer=none,[dropout]", "seed=0,1", "tune.space={optimizer.lr:[0.001,0.01,0.1]}",
         "tune.seeds=[100,101]", *TINY)


def _rows(sweep_dir):
    runs = pd.read_csv(sweep_dir / "results.csv")
    return runs[runs["status"] == "completed"]


def test_each_arm_reruns_its_best_candidate_on_validation_over_the_study_seeds(run_sweep, tmp_path):
    out, base = run_sweep(*STUDY)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    tuning, final = _rows(base / "tuning"), _rows(base / "final")
    assert len(tuning) == 2 * 3 * 2 and sorted(tuning["seed"].unique()) == [100, 101]  # arms × budget × tuning seeds
    chosen = json.loads((base / "tuned.json").read_text())
    assert chosen["budget"] == 3 and chosen["tuning_seeds"] == [100, 101] and len(chosen["arms"]) == 2
    for arm in chosen["arms"]:
        mine = tuning[tuning["regularizer"] == arm["arm"]["regularizer"]]
        means = mine.groupby("optimizer.lr")["val_acc"].mean()  # the mean over tuning seeds, from the run files
        assert arm["chosen"]["optimizer.lr"] == means.idxmax()
        assert arm["val_acc"] == pytest.approx(means.max())
        reruns = final[final["regularizer"] == arm["arm"]["regularizer"]]
        assert sorted(reruns["seed"]) == [0, 1]
        for run_dir in reruns["run_dir"]:  # trained with the arm's choice
            assert OmegaConf.load(base / "final" / run_dir / "config.yaml").optimizer.lr == arm["chosen"]["optimizer.lr"]
    assert "optimizer.lr" not in final  # the final table's factors are the study's, not the tuned keys'
    assert "regularizer" in pd.read_csv(base / "final" / "configs.csv")
    for run_dir in (base / "final").glob("*/result.json"):
        assert read_result(run_dir.parent)["stacked"] == 2  # the two seeds of an arm train together
    assert "tuned: regularizer=[dropout] → optimizer.lr=" in out.stdout

    # The report of the final sweep shows, per arm, the chosen values, the budget and the final test metric.
    assert main(["report", str(base / "final")]) == 0
    table = pd.read_csv(base / "final" / "tables" / "tuning.csv")
    assert sorted(table["chosen optimizer.lr"]) == sorted(a["chosen"]["optimizer.lr"] for a in chosen["arms"])
    assert (table["budget"] == 3).all() and (table["n"] == 2).all()
    for arm in chosen["arms"]:
        row = table[table["regularizer"] == arm["arm"]["regularizer"]].iloc[0]
        assert row["test_acc_mean"] == pytest.approx(final[final["regularizer"] == arm["arm"]["regularizer"]]["test_acc"].mean())
    assert "## Tuned protocol" in (base / "final" / "report.md").read_text()
    assert f"sweep {base / 'final'}: 4 runs: 4 completed" in out.stdout


@pytest.mark.slow
def test_an_interrupted_protocol_continues_where_it_stopped(run_sweep, tmp_path):
    base = tmp_path / "killed"
    command = [sys.executable, "-m", "regbench", "run", "-m", *STUDY, f"hydra.sweep.dir={base}"]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.time() + 120
    while len(list((base / "tuning").glob("*/result.json"))) < 2:
        assert proc.poll() is None and time.time() < deadline, "the protocol ended before it could be killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p: p.read_bytes() for p in (base / "tuning").glob("*/result.json")}
    assert 2 <= len(done) < 12 and not (base / "final").exists()

    out, _ = run_sweep(*STUDY, sweep_dir=base)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert all(p.read_bytes() == b for p, b in done.items())  # finished tuning runs are not retrained
    assert len(_rows(base / "tuning")) == 12 and len(_rows(base / "final")) == 4

    out, _ = run_sweep(*STUDY, sweep_dir=base)  # a third time: nothing left to train
    assert out.returncode == 0 and "4 finished by an earlier run of the sweep, not retrained" in out.stdout


def test_random_search_draws_the_same_candidates_for_every_arm():
    cfg = compose("tune.space={optimizer.lr:{low:1e-4,high:1e-1},regularizer.dropout.p:[0.1,0.5]}", "tune.budget=5",
                  "regularizer=[dropout]")
    t = tuning_of(cfg)
    points = candidates(t)
    assert len(points) == 5 and points == candidates(t)  # seeded: the same draws every time
    assert all(1e-4 <= p["optimizer.lr"] <= 1e-1 and p["regularizer.dropout.p"] in (0.1, 0.5) for p in points)


@pytest.mark.parametrize("overrides,message", [
    (["tune.space={optimizer.lrr:[0.1]}"], "optimizer.lrr"),
    (["tune.space={optimizer.lr:[]}"], "non-empty list"),
    (["tune.space={optimizer.lr:{low:0,high:1}}", "tune.budget=3"], "low > 0"),
    (["tune.space={optimizer.lr:{low:1e-3,high:1e-1}}"], "tune.budget"),
    (["tune.space={optimizer.lr:[0.1,0.01]}", "tune.budget=5"], "grid's budget"),
    (["tune.space={optimizer.lr:[0.1]}", "tune.metric=test_acc"], "validation"),
])
def test_bad_tuning_settings_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        tuning_of(compose(*overrides))


def test_bad_tuning_settings_stop_the_command_before_anything_trains(run_sweep):
    out, base = run_sweep("model=mlp", "seed=0,1", "tune.space={optimizer.lr:[]}", *TINY)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "tune.space.optimizer.lr" in out.stderr
    assert not base.exists()
