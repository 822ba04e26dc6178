"""The blocking SLURM path on a real cluster: `regbench run -m ... hydra/launcher=slurm` (regbench's preset and launcher:
a task per stack or run alone) and `hydra/launcher=submitit_slurm` (the plugin's: a task per job) complete a sweep,
stacks included, with the basic launcher's numbers."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import run_cli
from slurm.slurm_tools import ACTIVE, job_ids, sacct, wait_for

pytestmark = pytest.mark.slurm

#: 2 regularizers × 2 seeds, MLP on 200 examples, one torch thread wherever it runs (precision 32 on CPU: bit for bit).
SWEEP = ("model=mlp", "regularizer=none,dropout", "seed=0,1", "trainer.max_epochs=2", "dataset.n_train=200",
         "trainer.progress=false", "logger=none", "trainer.num_threads=1")

#: results.csv columns that measure time, not what was trained.
TIMING = {"wall_time_s", "steps_per_s"}


def sweep(tmp_path, name: str, *args: str, timeout: float = 300):
    sweep_dir = tmp_path / name / "sweep"
    sweep_dir.parent.mkdir(parents=True)
    out = run_cli("run", "-m", *SWEEP, *args, f"hydra.sweep.dir={sweep_dir}", cwd=sweep_dir.parent, timeout=timeout)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return sweep_dir


def assert_same_results(expected_dir, sweep_dir):
    """results.csv run by run: the same runs, statuses and run ids, and every numeric column equal (timings aside)."""
    a = pd.read_csv(expected_dir / "results.csv").sort_values("run_dir").reset_index(drop=True)
    b = pd.read_csv(sweep_dir / "results.csv").sort_values("run_dir").reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    assert len(a) == 4 and (a.status == "completed").all()
    pd.testing.assert_frame_equal(a[["run_dir", "run_id", "status"]], b[["run_dir", "run_id", "status"]])
    numeric = [c for c in a.select_dtypes("number").columns if c not in TIMING]
    assert {"train_loss", "val_acc", "test_acc", "steps", "best_epoch"} <= set(numeric)
    pd.testing.assert_frame_equal(a[numeric], b[numeric], check_exact=True)


def assert_every_task_completed(sweep_dir, n: int):
    tasks = job_ids(sweep_dir)
    assert len(tasks) == n, tasks  # the preset: one array task per stack or run alone; the plugin: per job
    array = tasks[0].split("_")[0]

    def ended():  # the launcher returns once every result is in; a job's process may still be exiting
        records = [r for r in sacct(array) if "." not in r["job_id"]]  # the tasks, not their steps
        return records if all(r["state"] not in ACTIVE for r in records) else None

    records = wait_for(ended, 60, "every task to end in SLURM's accounting", every=0.5)
    assert sorted(r["job_id"] for r in records) == tasks
    assert all(r["state"] == "COMPLETED" and r["exit_code"] == "0:0" for r in records), records


def test_the_slurm_preset_runs_a_stacked_sweep_as_the_basic_launcher_does(tmp_path):
    """stack=2: two stacks of two, two SLURM tasks: each stack trains in the task of its leader, and its member has
    no task (no Hydra job ran in its run dir), only the files its leader wrote."""
    basic = sweep(tmp_path, "basic", "stack=2")
    on_slurm = sweep(tmp_path, "slurm", "stack=2", "hydra/launcher=slurm")
    assert_same_results(basic, on_slurm)
    assert_every_task_completed(on_slurm, 2)
    logs = {p.parent.name: p.read_text() for p in on_slurm.glob("*/regbench.log")}
    assert len(logs) == 2 and all("training 2 runs stacked" in text for text in logs.values())  # a stack is one task
    members = {p.parent.name for p in on_slurm.glob("*/result.json")} - set(logs)
    assert len(members) == 2 and not any((on_slurm / m / ".hydra").exists() for m in members)


def test_the_plugins_submitit_slurm_runs_a_sweep_of_solo_jobs_as_the_basic_launcher_does(tmp_path):
    basic = sweep(tmp_path, "basic", "stack=1")
    on_slurm = sweep(tmp_path, "slurm", "stack=1", "hydra/launcher=submitit_slurm")
    assert_same_results(basic, on_slurm)
    assert_every_task_completed(on_slurm, 4)
    assert not any("stacked" in p.read_text() for p in on_slurm.glob("*/regbench.log"))


def test_one_stack_of_every_run_is_one_slurm_job_that_trains(tmp_path):
    """stack=auto stacks all four runs: one task, the leader's, trains them; the three others are not submitted."""
    basic = sweep(tmp_path, "basic")
    on_slurm = sweep(tmp_path, "slurm", "hydra/launcher=slurm")
    assert_same_results(basic, on_slurm)
    assert_every_task_completed(on_slurm, 1)
    logs = [p.read_text() for p in on_slurm.glob("*/regbench.log")]
    assert sum("training 4 runs stacked" in text for text in logs) == 1


def test_a_partition_that_does_not_exist_is_one_line_exit_2_and_nothing_is_trained(tmp_path):
    """As `regbench submit` (test_submit.py): sbatch's refusal is one line after Hydra is done, not submitit's traceback."""
    sweep_dir = tmp_path / "sweep"
    out = run_cli("run", "-m", *SWEEP, "hydra/launcher=slurm", "hydra.launcher.partition=nosuchpartition",
                  f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-3000:]
    assert out.stderr.startswith("regbench: error: SLURM refused the submission") and out.stderr.count("\n") == 1, out.stderr
    assert "invalid partition" in out.stderr.lower()
    assert not list(sweep_dir.glob("*/result.json")) and not job_ids(sweep_dir)
