"""What a sweep job does besides training: share the machine's cores and GPUs, answer a sampling sweeper."""

from __future__ import annotations

import math

import pytest
from omegaconf import OmegaConf

from regbench import app

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SUBMITIT_LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
SUBMITIT_SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def launcher(target, **kw):
    return OmegaConf.create({"_target_": target, **kw})


@pytest.fixture
def eight_cores(monkeypatch):
    monkeypatch.setattr(app, "_cpus", lambda: 8)


def test_parallel_jobs_share_the_cores(eight_cores):
    assert app.cpu_threads(launcher(JOBLIB, n_jobs=2), n_sweep_jobs=10) == 4
    assert app.cpu_threads(launcher(JOBLIB, n_jobs=-1), n_sweep_jobs=10) == 1  # joblib: -1 is every core
    assert app.cpu_threads(launcher(JOBLIB, n_jobs=-2), n_sweep_jobs=10) == 1
    assert app.cpu_threads(launcher(JOBLIB, n_jobs=4), n_sweep_jobs=2) == 4  # only 2 jobs to run
    assert app.cpu_threads(launcher(SUBMITIT_LOCAL), n_sweep_jobs=4) == 2  # the local executor starts all at once
    assert app.cpu_threads(launcher(SUBMITIT_LOCAL, cpus_per_task=3), n_sweep_jobs=4) == 3


def test_a_job_alone_keeps_torch_defaults(eight_cores):
    assert app.cpu_threads(launcher(BASIC)) is None
    assert app.cpu_threads(launcher(JOBLIB, n_jobs=1), n_sweep_jobs=5) is None
    assert app.cpu_threads(launcher(SUBMITIT_SLURM)) is None  # SLURM's allocation bounds it
    assert app.cpu_threads(launcher(SUBMITIT_SLURM, cpus_per_task=6)) == 6


def test_each_parallel_job_claims_its_own_gpu(tmp_path):
    i0, f0 = app.claim_gpu(tmp_path, 2)
    i1, f1 = app.claim_gpu(tmp_path, 2)
    assert (i0, i1) == (0, 1) and f0 and f1
    i2, f2 = app.claim_gpu(tmp_path, 2, job_num=5)  # more jobs than GPUs: share, round robin
    assert (i2, f2) == (1, None)
    f0.close()  # the job on GPU 0 ended
    i3, f3 = app.claim_gpu(tmp_path, 2)
    assert i3 == 0
    f1.close(), f3.close()


def test_the_objective_of_a_sampling_sweeper():
    result = {"status": "completed", "val_acc": 0.7, "val_loss": 0.9, "test_acc": 0.99}
    assert app.objective(result, "maximize") == 0.7
    assert app.objective(result, "Direction.minimize") == 0.9
    assert app.objective(result, ["maximize"]) == 0.7
    assert math.isnan(app.objective({"status": "failed"}, "maximize"))


def test_the_optuna_sweeper_can_keep_its_study_in_a_database(tmp_path):
    """hydra.sweeper.storage=sqlite:///...: needs SQLAlchemy < 2 under optuna 2 (pinned in the launchers extra)."""
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    again = optuna.load_study(study_name="s", storage=storage)
    assert len(again.trials) == 2 and again.best_value == study.best_value
