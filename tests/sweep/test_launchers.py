"""Every launcher gives the same table as the sequential one, and one W&B run per job, grouped and tagged."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from helpers import read_metrics, read_result
from omegaconf import OmegaConf

SAME = ["run_dir", "run_id", "status", "regularizer", "seed", "epochs_run", "steps", "best_epoch"]
CLOSE = ["train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"]


@pytest.fixture
def sequential(finished_sweep):
    """The conftest's small sweep (regularizer × seed, W&B offline), run by Hydra's basic launcher."""
    return finished_sweep


def assert_same_table(expected_dir, sweep_dir):
    a = pd.read_csv(expected_dir / "results.csv").sort_values("run_dir").reset_index(drop=True)
    b = pd.read_csv(sweep_dir / "results.csv").sort_values("run_dir").reset_index(drop=True)
    pd.testing.assert_frame_equal(a[SAME], b[SAME])
    pd.testing.assert_frame_equal(a[CLOSE], b[CLOSE], rtol=1e-4, atol=1e-6)  # thread counts may differ
    sa, sb = (pd.read_csv(d / "configs.csv") for d in (expected_dir, sweep_dir))
    pd.testing.assert_frame_equal(sa[["regularizer", "n"]], sb[["regularizer", "n"]])


def assert_one_wandb_run_per_job(sweep_dir, group: str = "default"):
    ids = []
    for run_dir in sorted(p.parent for p in sweep_dir.glob("*/result.json")):
        (offline,) = (run_dir / "wandb").glob("offline-run-*")  # exactly one run per job dir
        (log,) = offline.glob("run-*.wandb")
        data = log.read_bytes()
        regularizer = OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")
        tag = next(o for o in regularizer if o.startswith("regularizer="))
        assert group.encode() in data and tag.encode() in data  # grouped by study, tagged by its factor value
        result = read_result(run_dir)
        assert result["logger_id"] == offline.name.rsplit("-", 1)[1]
        ids.append(result["logger_id"])
    assert len(ids) == 4 and len(set(ids)) == 4  # no lost or merged runs


def test_sequential_sweep_has_one_wandb_run_per_job(sequential):
    assert_one_wandb_run_per_job(sequential)


@pytest.mark.slow  # about 12-25 s through the CLI: make test-slow (CI runs it)
def test_joblib_gives_the_sequential_table(sequential, run_sweep, small_sweep):
    out, sweep_dir = run_sweep(*small_sweep, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert_same_table(sequential, sweep_dir)
    assert_one_wandb_run_per_job(sweep_dir)
    logs = [log.read_text() for log in sweep_dir.glob("*/regbench.log")]
    leaders = [text for text in logs if "in the stack of" not in text]  # the others' leaders trained them
    assert len(logs) == 4 and len(leaders) == 2  # two stacks (none, dropout) of two seeds, one per worker
    for text in leaders:  # two jobs side by side split the cores
        assert "2 job(s) share" in text and "training 2 runs stacked" in text


@pytest.mark.slow
def test_submitit_local_gives_the_sequential_table(sequential, run_sweep, small_sweep):
    out, sweep_dir = run_sweep(*small_sweep, "hydra/launcher=submitit_local", timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert_same_table(sequential, sweep_dir)
    assert_one_wandb_run_per_job(sweep_dir)


def test_the_slurm_preset_is_accepted_by_submitit_and_requeues(tmp_path, monkeypatch):
    """hydra/launcher=slurm: every key reaches submitit's SLURM executor; time-outs are requeued."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    from regbench.config import compose

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\n")  # submitit only checks that SLURM's tools exist
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{__import__('os').environ['PATH']}")
    cfg = compose(["hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path}/sweep"], return_hydra_config=True)
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert params.pop("_target_") == "hydra_plugins.regbench_launcher.regbench_launcher.RegbenchSlurmLauncher"
    assert params["max_num_timeout"] > 0 and params["signal_delay_s"] > 0
    # what BaseSubmititLauncher.launch does with them
    executor = submitit.AutoExecutor(folder=params.pop("submitit_folder"), cluster="slurm",
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python job.py", "0")
    assert "--signal=USR2@120" in script and "--time=240" in script


@pytest.mark.slow
def test_a_timed_out_submitit_job_is_requeued_and_resumes(run_sweep, tmp_path):
    """submitit_local with a 1-minute limit signals the job 30 s in (its fixed signal delay); the job is requeued
    and resumes from last.pt. The local executor runs a job at most 6 times, whatever ``max_num_timeout``, and this
    VM's speed under load varies by 4x (0.22 s to about 1 s an epoch; start-up 3 to 10 s of each 30 s attempt), so
    no fixed epoch count both requeues on a fast day and ends on a slow one. A 10-epoch run first measures this
    machine's start-up and epoch time, and the job gets about 2.5 attempts' worth of epochs: at least one requeue
    unless the machine turns 2x faster, and done within 6 attempts unless it turns 2x slower."""
    common = ("model=mlp_3x512", "seed=0", "trainer.early_stopping.patience=null", "logger=none",
              "trainer.progress=false", "trainer.num_threads=1")
    start = time.perf_counter()
    out, probe = run_sweep(*common, "trainer.max_epochs=10", sweep_dir=tmp_path / "probe")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    (probe_result,) = [read_result(p.parent) for p in probe.glob("*/result.json")]
    epoch_s = probe_result["train_time_s"] / 10
    start_up_s = time.perf_counter() - start - probe_result["train_time_s"]
    assert start_up_s < 20, f"start-up took {start_up_s:.0f} s of an attempt's 30: too slow a machine for this test"
    epochs = max(20, round(2.5 * (30 - start_up_s) / epoch_s))  # the probe's start-up has the sweep's own on top
    args = (*common, f"trainer.max_epochs={epochs}", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=1",
            "+hydra.launcher.max_num_timeout=5")  # 5 requeues: the 6 runs the local executor allows
    out, sweep_dir = run_sweep(*args, timeout=600)
    assert out.returncode == 0, f"{epochs} epochs ({epoch_s:.2f} s each, start-up {start_up_s:.1f} s): " + (
        out.stdout[-2000:] + out.stderr[-3000:])
    (run_dir,) = [p.parent for p in sweep_dir.glob("*/result.json")]
    result = read_result(run_dir)
    assert result["status"] == "completed" and result["epochs_run"] == epochs
    assert "resuming" in (run_dir / "regbench.log").read_text()  # at least one requeue, resumed
    submitit_logs = "".join(p.read_text() for p in (sweep_dir / ".submitit").glob("*/*_log.*"))
    assert "Requeued" in submitit_logs or "requeue" in submitit_logs.lower()
    logged = [row["epoch"] for row in read_metrics(run_dir)]
    assert logged == list(range(1, epochs + 1))  # every epoch once, none lost or repeated
