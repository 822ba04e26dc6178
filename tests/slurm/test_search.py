"""A search's workers as SLURM array tasks: two workers share one study through its journal file on the cluster and
train its trials, each once."""

from __future__ import annotations

import optuna
import pytest
from helpers import read_metrics, run_cli
from optuna.storages.journal import JournalFileBackend
from slurm.slurm_tools import job_ids

pytestmark = pytest.mark.slurm


def test_two_workers_on_slurm_share_the_study_and_train_each_trial_once(tmp_path):
    sweep_dir = tmp_path / "sweep"
    out = run_cli("run", "-m", "experiment=random_search", "debug=tiny", "search.n_trials=4", "search.batch=2",
                  "search.n_jobs=2", "search.replicate_seeds=[]", "hydra/launcher=slurm", f"hydra.sweep.dir={sweep_dir}",
                  cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert len(job_ids(sweep_dir / "workers")) == 2  # one array task per worker
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(sweep_dir / "search.journal")))
    trials = optuna.load_study(study_name="regbench", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    assert len({t.user_attrs["run_dir"] for t in trials}) == 4
    assert all(len(read_metrics(sweep_dir / t.user_attrs["run_dir"])) == 1 for t in trials)  # none trained twice
