"""Checkpoints that survive a kill at any instant, and the random state that makes resume exact."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from regbench.files import write_atomic


def save_atomic(obj, path: Path) -> None:
    """Save durably and atomically: after a kill at any instant, ``path`` holds the old checkpoint or the new one."""
    write_atomic(path, lambda tmp: torch.save(obj, tmp), durable=True)


def load(path: Path, map_location="cpu"):
    return torch.load(path, map_location=map_location, weights_only=False)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if getattr(torch, "mps", None) is not None and torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])
