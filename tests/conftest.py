"""Shared test setup: real Hydra composition, tiny real data, the real CLI in subprocesses.

Everything a test writes goes under pytest's tmp dirs; the MNIST-1D cache is shared by the
session (and its subprocesses) so the data is generated once.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import run_cli


#: Session fixtures that train sweeps through the CLI, and the xdist group of the tests that use them.
SHARED_FIXTURES = {"sweeps": "report-sweeps", "reports": "report-sweeps", "finished_sweep": "finished-sweep"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items):
    """`make test` runs on every core (pytest-xdist, ``--dist loadgroup``). A test file's tests stay on one worker, so
    its module fixtures are built once; so do all the tests of a session fixture that trains sweeps."""
    for item in items:
        path = item.path
        shared = [SHARED_FIXTURES[f] for f in getattr(item, "fixturenames", ()) if f in SHARED_FIXTURES]
        item.add_marker(pytest.mark.xdist_group(shared[0] if shared else f"{path.parent.name}/{path.stem}"))


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("regbench-cache")
    os.environ["REGBENCH_CACHE"] = str(cache)
    os.environ["WANDB_MODE"] = "offline"  # never the network, whatever the user's settings
    os.environ["WANDB_SILENT"] = "true"
    os.environ.setdefault("WANDB_DIR", str(tmp_path_factory.mktemp("wandb")))
    os.environ["REGBENCH_DATA"] = str(tmp_path_factory.mktemp("no-data"))  # torchvision sets: absent unless a test writes them
    yield


@pytest.fixture(autouse=True)
def _own_wandb_service(monkeypatch):
    """A test's CLI subprocesses start their own W&B service, as a user's command does. An in-process W&B run
    of an earlier test leaves WANDB_SERVICE set, and a subprocess would join that service, where a run it
    killed stays registered: the resumed run was then refused with "run ID ... is in use"."""
    monkeypatch.delenv("WANDB_SERVICE", raising=False)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """In-process training uses one thread: tiny models gain nothing from two, and CI's 2 cores are shared
    with the subprocesses other tests start (measured: 37 s → 4 s for the model tests)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def run_sweep(tmp_path):
    """``run_sweep(*args, sweep_dir=..., env=...)``: `regbench run -m ARGS` in tmp_path, its sweep dir
    tmp_path/sweep unless given; returns (completed process, sweep dir)."""

    def run(*args: str, sweep_dir: Path | None = None, env: dict | None = None, timeout: float = 300):
        sweep_dir = Path(sweep_dir or tmp_path / "sweep")
        out = run_cli("run", "-m", *args, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, env=env, timeout=timeout)
        return out, sweep_dir

    return run
