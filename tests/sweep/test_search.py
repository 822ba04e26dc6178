"""A search (regbench/sweep/search.py) through the real CLI: Optuna's study in the sweep dir, read back with Optuna's
own reader; trials trained as stacks, pruned from the epoch loop, killed and resumed, shared by parallel workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from helpers import one_line_error, read_metrics, read_result, run_cli
from optuna.storages.journal import JournalFileBackend

SEARCH = ("experiment=random_search", "debug=tiny", "search.replicate_seeds=[]", "search.replicate_default=false")


def study(sweep_dir: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(sweep_dir / "search.journal")))
    return optuna.load_study(study_name="regbench", storage=storage)


def states(sweep_dir: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study(sweep_dir).trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def test_a_search_trains_its_trials_as_stacks_and_keeps_its_study_in_the_sweep_dir(run_sweep):
    out, sweep_dir = run_sweep(*SEARCH, "search.n_trials=4", "search.batch=2")
    assert out.returncode == 0, out.stderr[-3000:]
    s = study(sweep_dir)
    assert [t.state.name for t in s.trials] == ["COMPLETE"] * 4
    for t in s.trials:  # each trial is an ordinary run of its values, in its own dir
        run_dir = sweep_dir / t.user_attrs["run_dir"]
        result, cfg = read_result(run_dir), yaml.safe_load((run_dir / "config.yaml").read_text())
        assert result["stacked"] == 2 and result["val_acc"] == t.value
        assert cfg["optimizer"]["lr"] == t.params["optimizer.lr"]
        assert cfg["regularizer"]["dropout"]["p"] == t.params["regularizer.dropout.p"]
    summary = json.loads((sweep_dir / "search.json").read_text())
    assert summary["completed"] == 4 and summary["best"]["number"] == s.best_trial.number
    assert summary["best"]["value"] == max(t.value for t in s.trials)
    out = run_cli("results", str(sweep_dir / "trials"))
    assert out.returncode == 0, out.stderr
    runs = pd.read_csv(sweep_dir / "trials" / "results.csv")
    assert len(runs) == 4 and set(runs["status"]) == {"completed"}
    assert sorted(runs["optimizer.lr"]) == sorted(t.params["optimizer.lr"] for t in s.trials)

    again, _ = run_sweep(*SEARCH, "search.n_trials=4", "search.batch=2")  # the study's total is reached: nothing trains
    assert again.returncode == 0 and "training" not in again.stderr, again.stderr[-2000:]
    assert len(study(sweep_dir).trials) == 4


def test_a_pruned_trial_ends_like_an_early_stopped_run_and_is_left_out_of_the_best(run_sweep):
    out, sweep_dir = run_sweep(*SEARCH, "search.n_trials=8", "search.batch=4", "search.pruner=successive_halving",
                               "search.min_epochs=1", "trainer.max_epochs=6", "trainer.early_stopping.patience=null")
    assert out.returncode == 0, out.stderr[-3000:]
    counts = states(sweep_dir)
    assert counts.get("PRUNED", 0) >= 1 and counts.get("COMPLETE", 0) >= 1, counts
    s = study(sweep_dir)
    for t in s.trials:
        result = read_result(sweep_dir / t.user_attrs["run_dir"])
        epochs = [row["epoch"] for row in read_metrics(sweep_dir / t.user_attrs["run_dir"])]
        assert epochs == list(range(1, result["epochs_run"] + 1))  # its files complete, its epochs kept
        if t.state.name == "PRUNED":
            assert result["status"] == "pruned" and result["epochs_run"] < 6 and result["test_acc"] is not None
            assert max(t.intermediate_values) == result["epochs_run"]  # each epoch was reported to the trial
        else:
            assert result["status"] == "completed" and result["epochs_run"] == 6
    assert s.best_trial.state.name == "COMPLETE"
    summary = json.loads((sweep_dir / "search.json").read_text())
    assert summary["pruned"] == counts["PRUNED"] and summary["epochs_trained"] < 8 * 6
    status = run_cli("status", str(sweep_dir))
    assert status.returncode == 0 and f"{counts['PRUNED']} pruned" in status.stdout, status.stdout
    report = run_cli("report", str(sweep_dir))
    assert report.returncode == 0, report.stderr[-2000:]
    text = (sweep_dir / "report.md").read_text()
    assert f"{counts['COMPLETE']} completed, {counts['PRUNED']} pruned" in text and f"**Best trial {s.best_trial.number}**" in text
    assert text.count("| pruned |") == counts["PRUNED"] and (sweep_dir / "figures" / "search_history.png").stat().st_size > 0
    if counts["COMPLETE"] >= 2:  # fANOVA needs two completed trials
        assert "| optimizer.lr |" in text


def test_a_killed_search_resumes_its_killed_trial_and_trains_none_twice(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = [*SEARCH, "search.n_trials=3", "search.batch=1", "stack=1", "trainer.max_epochs=60",
            "trainer.early_stopping.patience=null", "trainer.checkpoint_every_s=0", f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.Popen([sys.executable, "-m", "regbench", "run", "-m", *args], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    killed = sweep_dir / "trials" / "0001"
    deadline = time.time() + 120
    try:
        while not ((killed / "metrics.jsonl").exists() and len((killed / "metrics.jsonl").read_text().splitlines()) >= 3):
            assert proc.poll() is None and time.time() < deadline, "the search ended before it could be killed"
            time.sleep(0.005)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (killed / "result.json").exists(), "killed too late: the trial had finished"
    first = (sweep_dir / "trials" / "0000" / "result.json").read_text()
    assert states(sweep_dir) == {"COMPLETE": 1, "RUNNING": 1}

    out = run_cli("run", "-m", *args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert states(sweep_dir) == {"COMPLETE": 3}  # the study's total, not three more
    assert sorted(p.name for p in (sweep_dir / "trials").iterdir()) == ["0000", "0001", "0002"]
    assert (sweep_dir / "trials" / "0000" / "result.json").read_text() == first  # not trained again
    assert f"resuming {killed}" in out.stdout + out.stderr  # from its checkpoint, in its own dir
    assert [row["epoch"] for row in read_metrics(killed)] == list(range(1, 61))
    assert study(sweep_dir).trials[1].value == read_result(killed)["val_acc"]


def test_parallel_workers_share_the_study_and_never_train_a_trial_twice(run_sweep):
    out, sweep_dir = run_sweep(*SEARCH, "search.n_trials=5", "search.batch=2", "search.n_jobs=2", "hydra/launcher=joblib",
                               "hydra.launcher.n_jobs=2")
    assert out.returncode == 0, out.stderr[-3000:]
    s = study(sweep_dir)
    assert [t.state.name for t in s.trials] == ["COMPLETE"] * 5
    dirs = [t.user_attrs["run_dir"] for t in s.trials]
    assert len(set(dirs)) == 5 and all(len(read_metrics(sweep_dir / d)) == 1 for d in dirs)
    assert len({tuple(sorted(t.params.items())) for t in s.trials}) == 5  # two workers did not propose the same trial
    assert len(list((sweep_dir / "workers").glob("*/regbench.log"))) == 2


def test_the_best_trial_is_replicated_over_fresh_seeds_beside_the_default_recipe(run_sweep):
    out, sweep_dir = run_sweep("experiment=random_search", "debug=tiny", "search.n_trials=2", "search.batch=2",
                               "search.replicate_seeds=[1,2]", "search.replicate_default=true")
    assert out.returncode == 0, out.stderr[-3000:]
    best = study(sweep_dir).best_trial
    runs = pd.read_csv(sweep_dir / "replicate" / "results.csv")
    assert len(runs) == 4 and set(runs["seed"]) == {1, 2} and set(runs["status"]) == {"completed"}
    chosen = runs[runs["optimizer.lr"].notna()]
    assert len(chosen) == 2 and set(chosen["optimizer.lr"]) == {best.params["optimizer.lr"]}
    summary = json.loads((sweep_dir / "search.json").read_text())
    assert summary["replicate"]["best"]["seeds"] == [1, 2] and summary["replicate"]["default"]["seeds"] == [1, 2]
    assert summary["replicate"]["best"]["test_acc_mean"] == pytest.approx(chosen["test_acc"].mean())


@pytest.mark.parametrize("override, fragment", [
    ("search.sampler=grid", "search.sampler='grid'"),
    ("search.pruner=asha", "search.pruner='asha'"),
    ("search.space={optimizer.lr:{low:0.1,high:0.01}}", "a < b"),
    ("search.space={optimizer.lr:[]}", "non-empty list"),
    ("search.space={optimizer.lrr:{low:0.1,high:1}}", "'optimizer.lrr' is no key"),
    ("search.space={seed:[1,2]}", "'seed' cannot be searched"),
    ("search.metric=test_acc", "search.metric='test_acc'"),
    ("search.n_trials=0", "search.n_trials=0"),
    ("search.replicate_seeds=[0]", "seed 0 is the one the search selected on"),
])
def test_bad_search_input_is_one_line_before_anything_is_written(run_sweep, override, fragment):
    space = [] if override.startswith("search.space") else ["search.space={optimizer.lr:{low:1e-3,high:1e-1}}"]
    out, sweep_dir = run_sweep("debug=tiny", "model=mlp", *space, override)
    one_line_error(out, fragment)
    assert not sweep_dir.exists()


def test_another_search_into_the_same_sweep_dir_is_refused(run_sweep):
    out, sweep_dir = run_sweep(*SEARCH, "search.n_trials=1", "search.batch=1")
    assert out.returncode == 0, out.stderr[-2000:]
    journal = (sweep_dir / "search.journal").read_bytes()
    out, _ = run_sweep(*SEARCH, "search.n_trials=1", "search.batch=1", "search.sampler=tpe")
    one_line_error(out, "holds another search", "search.sampler")
    assert (sweep_dir / "search.journal").read_bytes() == journal
