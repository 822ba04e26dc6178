"""MNIST-1D (Greydanus & Steinbach 2024): 1-D signals of 40 points, 10 classes, generated locally.

The data is made by the ``mnist1d`` package's ``make_dataset`` (never its ``get_dataset``, which
downloads), with the paper's default arguments: 5,000 examples split 4,000 train / 1,000 test.
Generation takes about a second, so the arrays are cached on disk keyed by the arguments.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from regbench.data.base import RawData
from regbench.errors import UserError
from regbench.files import write_atomic


def cache_dir() -> Path:
    return Path(os.environ.get("REGBENCH_CACHE", Path.home() / ".cache" / "regbench"))


def load(num_samples: int = 5000, train_split: float = 0.8, shuffle_seq: bool = False, seed: int = 42, **overrides) -> RawData:
    """MNIST-1D as (N, 1, 40) float signals. ``shuffle_seq`` permutes the positions (the paper's spatial-prior test)."""
    args = {"num_samples": num_samples, "train_split": train_split, "shuffle_seq": shuffle_seq, "seed": seed, **overrides}
    key = hashlib.sha1(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / f"mnist1d-{key}.npz"
    if not path.exists():
        _generate(args, path)
    try:
        with np.load(path) as d:
            return RawData(d["x"][:, None, :], d["y"], d["x_test"][:, None, :], d["y_test"], num_classes=10)
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"the cached MNIST-1D file {path} is damaged ({type(e).__name__}); delete it and it is "
                        "generated again") from None


def _generate(args: dict, path: Path) -> None:
    from mnist1d.data import get_dataset_args, make_dataset

    full = get_dataset_args(as_dict=True)
    full.update(args)
    state = np.random.get_state()  # make_dataset reseeds numpy's global generator; leave it as we found it
    try:
        d = make_dataset(_ObjectView(full))
    finally:
        np.random.set_state(state)
    arrays = {"x": d["x"].astype(np.float32), "y": d["y"].astype(np.int64),
              "x_test": d["x_test"].astype(np.float32), "y_test": d["y_test"].astype(np.int64)}

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add .npz to a path
            np.savez(f, **arrays)

    write_atomic(path, save)  # parallel jobs may generate the same file at once


class _ObjectView:
    def __init__(self, d: dict):
        self.__dict__ = d
