"""The embedded Zhang et al. studies reproduce the paper's qualitative results, at their full embedded size.

Slow (about 10 min on 2 idle CPU cores, more when busy): `make test-slow` and CI run them.
"""

from __future__ import annotations

import pandas as pd
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def study(run_sweep, name: str) -> pd.DataFrame:
    out, sweep_dir = run_sweep(f"experiment={name}", "logger=none", "trainer.progress=false", timeout=3000)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    runs = pd.read_csv(sweep_dir / "results.csv")
    assert (runs["status"] == "completed").all()
    return runs


def test_random_labels_are_fitted_and_test_is_chance(run_sweep):
    runs = study(run_sweep, "zhang2017_randomization")
    assert len(runs) == 32
    assert (runs["train_acc"] >= 0.99).all(), runs[runs["train_acc"] < 0.99][["run_dir", "train_acc"]]  # every condition fits
    random_labels = runs[runs["dataset.label_noise"] == 1.0]
    assert random_labels["test_acc"].max() < 0.2  # chance is 0.1
    true = runs[(runs["dataset.label_noise"] == 0.0) & (runs["dataset.input_corruption"] == "none")]
    assert true["test_acc"].min() > 0.4
    # The CNN takes longer to fit random labels than true ones, as Zhang's networks do. The 3x512 MLP (550
    # thousand weights for 1,000 signals) memorizes them about as fast: 140 against 140 steps on the Intel VM of
    # 2026-12-04 (seeds 0-1, clean inputs; the session-start code gives the same bits; on the AMD VM before, the
    # order held), so only its fitting is checked (above), not the order.
    cnn = runs[runs["model"] == "cnn1d"]
    fit = cnn.groupby(["dataset.label_noise", "dataset.input_corruption"])["steps_to_fit"].mean()
    assert fit[(1.0, "none")] > fit[(0.0, "none")], fit


def test_test_error_rises_with_label_noise(run_sweep):
    runs = study(run_sweep, "label_corruption")
    assert len(runs) == 18 and (runs["train_acc"] >= 0.99).all()
    error = 1 - runs.groupby("dataset.label_noise")["test_acc"].mean().sort_index()
    assert error.is_monotonic_increasing, error
    assert error[0.0] < 0.5 and error[1.0] > 0.85
    fit = runs.groupby("dataset.label_noise")["steps_to_fit"].mean()
    assert fit[1.0] > fit[0.0]
