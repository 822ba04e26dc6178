"""Sweep jobs that share the machine: each takes its share of the cores, and a GPU of its own."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from regbench.sweep import machine

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SUBMITIT_LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
SUBMITIT_SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def launcher(target, **kw):
    return OmegaConf.create({"_target_": target, **kw})


@pytest.fixture
def eight_cores(monkeypatch):
    monkeypatch.setattr(machine, "_cpus", lambda: 8)


def test_parallel_jobs_share_the_cores(eight_cores):
    assert machine.cpu_threads(launcher(JOBLIB, n_jobs=2), n_sweep_jobs=10) == 4
    assert machine.cpu_threads(launcher(JOBLIB, n_jobs=-1), n_sweep_jobs=10) == 1  # joblib: -1 is every core
    assert machine.cpu_threads(launcher(JOBLIB, n_jobs=-2), n_sweep_jobs=10) == 1
    assert machine.cpu_threads(launcher(JOBLIB, n_jobs=4), n_sweep_jobs=2) == 4  # only 2 jobs to run
    assert machine.cpu_threads(launcher(SUBMITIT_LOCAL), n_sweep_jobs=4) == 2  # the local executor starts all at once
    assert machine.cpu_threads(launcher(SUBMITIT_LOCAL, cpus_per_task=3), n_sweep_jobs=4) == 3


def test_a_job_alone_keeps_torch_defaults(eight_cores):
    assert machine.cpu_threads(launcher(BASIC)) is None
    assert machine.cpu_threads(launcher(JOBLIB, n_jobs=1), n_sweep_jobs=5) is None
    assert machine.cpu_threads(launcher(SUBMITIT_SLURM)) is None  # SLURM's allocation bounds it
    assert machine.cpu_threads(launcher(SUBMITIT_SLURM, cpus_per_task=6)) == 6


def test_each_parallel_job_claims_its_own_gpu(tmp_path):
    i0, f0 = machine.claim_gpu(tmp_path, 2)
    i1, f1 = machine.claim_gpu(tmp_path, 2)
    assert (i0, i1) == (0, 1) and f0 and f1
    i2, f2 = machine.claim_gpu(tmp_path, 2, job_num=5)  # more jobs than GPUs: share, round robin
    assert (i2, f2) == (1, None)
    f0.close()  # the job on GPU 0 ended
    i3, f3 = machine.claim_gpu(tmp_path, 2)
    assert i3 == 0
    f1.close(), f3.close()
