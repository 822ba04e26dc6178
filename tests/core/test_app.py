"""What a job does besides training: answer a sampling sweeper (Optuna) with a number."""

from __future__ import annotations

import math

import pytest

from regbench import app


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
