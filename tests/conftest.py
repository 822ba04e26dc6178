"""Shared test setup: real Hydra composition, tiny real data, the real CLI in subprocesses.

Everything a test writes goes under pytest's tmp dirs; the MNIST-1D cache is shared by the
session (and its subprocesses) so the data is generated once.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("regbench-cache")
    os.environ["REGBENCH_CACHE"] = str(cache)
    os.environ["WANDB_MODE"] = "offline"  # never the network, whatever the user's settings
    os.environ["WANDB_SILENT"] = "true"
    os.environ.setdefault("WANDB_DIR", str(tmp_path_factory.mktemp("wandb")))
    os.environ["REGBENCH_DATA"] = str(tmp_path_factory.mktemp("no-data"))  # torchvision sets: absent unless a test writes them
    yield


