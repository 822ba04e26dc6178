"""Checkpoints that survive a kill at any instant, and the random state that makes resume exact.

A checkpoint holds tensors and plain Python values only (numpy's generator state is stored as a
tensor), so it loads with ``torch.load(weights_only=True)``: a file that needs more — a pickle that
would run code, a checkpoint of regbench 0.1 — is refused with one line, never executed.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from regbench.files import write_all


def save_all(items: list[tuple[dict, Path]]) -> None:
    """Save checkpoints durably and atomically: after a kill at any instant each path holds its old checkpoint or
    its new one; all are written first, then all renamed in order (:func:`regbench.files.write_all`)."""
    write_all([(path, lambda tmp, obj=obj: torch.save(obj, tmp)) for obj, path in items], durable=True)


def load(path: Path, map_location="cpu"):
    """The checkpoint at ``path``; DamagedFile (one line naming it and the choices) if it cannot be read safely."""
    import pickle
    import zipfile

    from regbench.errors import BEST_CHOICES, CHECKPOINT_CHOICES, DamagedFile

    choices = BEST_CHOICES if Path(path).name == "best.pt" else CHECKPOINT_CHOICES
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower() and zipfile.is_zipfile(path):  # a whole file, refused
            raise DamagedFile(path, "holds objects a regbench checkpoint never holds (code, or a regbench 0.1 checkpoint) "
                                    "and is not loaded", "move it away to train that run anew") from None
        raise DamagedFile(path, "is damaged (not a checkpoint: cut off or overwritten)", choices) from None
    except Exception as e:  # random bytes make the unpickler fail in many ways (EOFError, IndexError, …)
        reason = "is empty" if Path(path).exists() and Path(path).stat().st_size == 0 else f"is damaged ({_first_line(e)})"
        raise DamagedFile(path, reason, choices) from None


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:120]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if getattr(torch, "mps", None) is not None and torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])
