"""Sweeps through the real CLI (`regbench run -m ...` in a fresh interpreter), shrunk to seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_cli

#: Every sweep job in these tests: one epoch on 100 examples, one torch thread, no tracker, no progress bar.
SHRINK = ("debug=tiny",)


@pytest.fixture
def shrink() -> tuple[str, ...]:
    return SHRINK


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private MNIST-1D cache (for tests that corrupt a data file), in this process and its children."""
    path = tmp_path / "cache"
    monkeypatch.setenv("REGBENCH_CACHE", str(path))
    return path


#: A 2×2 sweep (regularizer × seed) with W&B on (offline) and torch's thread count left to the launcher.
SMALL_SWEEP = ("model=mlp", "regularizer=none,dropout", "seed=0,1", "trainer.max_epochs=2", "dataset.n_train=200",
               "trainer.progress=false", "logger=wandb")


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory) -> Path:
    """SMALL_SWEEP, run sequentially once per session; copy it before changing it."""
    tmp = tmp_path_factory.mktemp("finished")
    sweep_dir = tmp / "sweep"
    out = run_cli("run", "-m", *SMALL_SWEEP, f"hydra.sweep.dir={sweep_dir}", cwd=tmp)
    assert out.returncode == 0, out.stderr[-3000:]
    return sweep_dir


@pytest.fixture
def small_sweep() -> tuple[str, ...]:
    return SMALL_SWEEP
