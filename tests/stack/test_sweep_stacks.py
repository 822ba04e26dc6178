"""`regbench run -m` trains the jobs that can stack together, and each member is exactly its run:
same folder, id and files as with stack=1 (every job alone), numbers within float tolerance; a killed
stacked sweep resumes with the same command and ends as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from helpers import TINY, read_metrics, read_result

from regbench.sweep.stacks import PLAN_FILE

MIXED = ("model=mlp", "seed=0,1,2", "regularizer=none,[ema]", *TINY)  # ema has no stacked form: alone
CLOSE = ["train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"]


def _runs(sweep_dir):
    return {p.parent.name: read_result(p.parent) for p in sweep_dir.glob("*/result.json")}


@pytest.mark.slow  # about 12-25 s through the CLI: make test-slow (CI runs it)
def test_a_mixed_sweep_stacks_what_can_stack_and_matches_training_alone(run_sweep, tmp_path):
    out, stacked_dir = run_sweep(*MIXED)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "stack: 3 of 6 runs train in 1 stack(s) of 3" in out.stdout
    assert "3 run(s) train alone: regularizer ema" in out.stdout
    stacked = _runs(stacked_dir)
    assert len(stacked) == 6 and all(r["status"] == "completed" for r in stacked.values())
    for name, result in stacked.items():
        assert result.get("stacked") == (None if "ema" in name else 3), name

    out, alone_dir = run_sweep(*MIXED, "stack=1", sweep_dir=tmp_path / "alone")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert not (alone_dir / PLAN_FILE).exists() and "stack:" not in out.stdout
    alone = _runs(alone_dir)
    assert set(alone) == set(stacked)  # stack is no part of a folder name ...
    for name in alone:
        assert alone[name]["run_id"] == stacked[name]["run_id"]  # ... nor of a run's id
        assert "stacked" not in alone[name]
        assert [r["step"] for r in read_metrics(alone_dir / name)] == [r["step"] for r in read_metrics(stacked_dir / name)]
        for key in CLOSE:
            assert alone[name][key] == pytest.approx(stacked[name][key], rel=1e-4, abs=1e-5), (name, key)
        assert sorted(p.name for p in (alone_dir / name).iterdir()) == sorted(p.name for p in (stacked_dir / name).iterdir())

    # Finished members are not retrained, stacked or not: the same command trains nothing.
    before = {n: (stacked_dir / n / "result.json").read_bytes() for n in stacked}
    out, _ = run_sweep(*MIXED)
    assert out.returncode == 0 and "6 finished by an earlier run of the sweep, not retrained" in out.stdout
    assert {n: (stacked_dir / n / "result.json").read_bytes() for n in stacked} == before


def test_stack_sizes_follow_the_stack_key(run_sweep):
    out, sweep_dir = run_sweep("model=mlp", "seed=0,1,2,3,4", "stack=2", *TINY)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "4 of 5 runs train in 2 stack(s) of 2, 2" in out.stdout
    assert sorted(r.get("stacked", 1) for r in _runs(sweep_dir).values()) == [1, 2, 2, 2, 2]  # a stack of one: alone


def test_bad_stack_value_is_refused_before_anything_trains(run_sweep):
    out, sweep_dir = run_sweep("model=mlp", "seed=0,1", "stack=0", *TINY)
    assert out.returncode == 2 and not sweep_dir.exists()
    assert out.stderr.count("\n") == 1 and "stack=0" in out.stderr and "auto" in out.stderr


KILL_ARGS = ["model=cnn1d", "seed=0,1,2", "regularizer=[dropout,mixup]", "trainer.max_epochs=8", "dataset.n_train=1500",
             "trainer.early_stopping.patience=3", "logger=none", "trainer.num_threads=1", "trainer.checkpoint_every_s=0"]


@pytest.mark.slow  # make test: tests/stack/test_stack.py kills and resumes a stack in-process
def test_a_killed_stacked_sweep_resumes_and_ends_as_an_uninterrupted_one(run_sweep, tmp_path):
    out, reference = run_sweep(*KILL_ARGS, sweep_dir=tmp_path / "reference")
    assert out.returncode == 0, out.stderr[-2000:]
    expected = _runs(reference)
    assert all(r["stacked"] == 3 for r in expected.values())

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "regbench", "run", "-m", *KILL_ARGS, f"hydra.sweep.dir={killed}"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.time() + 120
    while not any(len(p.read_text().splitlines()) >= 3 for p in killed.glob("*/metrics.jsonl")):
        assert proc.poll() is None and time.time() < deadline, "the sweep ended before it could be killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list(killed.glob("*/result.json")), "killed too late: a member had already finished"

    out, _ = run_sweep(*KILL_ARGS, sweep_dir=killed)
    assert out.returncode == 0, out.stderr[-2000:]
    resumed = _runs(killed)
    assert set(resumed) == set(expected)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert "resuming" in _leader_log(killed)
    for name, result in resumed.items():
        for key in (*CLOSE, "best_epoch", "epochs_run", "steps", "stacked"):
            assert result[key] == expected[name][key], (name, key)  # exact on CPU
        assert strip(read_metrics(killed / name)) == strip(read_metrics(reference / name))


def _leader_log(sweep_dir) -> str:
    return "".join(p.read_text() for p in sweep_dir.glob("*/regbench.log") if "in the stack of" not in p.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("study,axes", [
    ("label_corruption", ["dataset.label_noise=0.0,0.5,1.0", "seed=0,1,2"]),
    ("zhang2017_table1", ["regularizer=none,weight_decay,batchnorm,[weight_decay,batchnorm]", "seed=0,1,2"]),
])
def test_studies_give_the_same_table_stacked_and_alone(run_sweep, tmp_path, study, axes):
    """At reduced size, each configuration's mean over seeds, stacked, lies within the 95% interval of the
    sequential one (and the reverse)."""
    small = [f"experiment={study}", *axes, "dataset.n_train=300", "trainer.max_epochs=15", "logger=none",
             "trainer.progress=false"]
    tables = {}
    for stack in ("1", "auto"):
        out, sweep_dir = run_sweep(*small, f"stack={stack}", sweep_dir=tmp_path / stack, timeout=900)
        assert out.returncode == 0, out.stderr[-2000:]
        tables[stack] = pd.read_csv(sweep_dir / "configs.csv")
    assert all(r.get("stacked") for r in _runs(tmp_path / "auto").values())
    alone, stacked = (t.set_index([c for c in t.columns if not c.endswith(("_mean", "_std")) and c != "n"])
                      for t in (tables["1"], tables["auto"]))
    assert list(alone.index) == list(stacked.index) and len(alone) == (3 if study == "label_corruption" else 4)
    for metric in ("test_acc", "train_acc"):
        half = 1.96 * (alone[f"{metric}_std"] + stacked[f"{metric}_std"]) / 3 ** 0.5 + 1e-6
        gap = (alone[f"{metric}_mean"] - stacked[f"{metric}_mean"]).abs()
        assert (gap <= half).all(), json.dumps({"gap": gap.tolist(), "half": half.tolist()})
