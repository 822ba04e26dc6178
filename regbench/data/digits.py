"""scikit-learn's bundled handwritten digits (UCI optdigits): 1,797 8×8 images, 10 classes, no download."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from regbench.data.base import RawData, stratified_split


def load(test_fraction: float = 0.2, seed: int = 0) -> RawData:
    """Digits as (N, 1, 8, 8) floats in [0, 1], with a seeded stratified test split."""
    images, target = _digits()
    x = (images / 16.0).astype(np.float32)[:, None]
    y = target.astype(np.int64)
    train, test = stratified_split(y, test_fraction, np.random.default_rng(seed))
    return RawData(x[train], y[train], x[test], y[test], num_classes=10)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """``load_digits()``'s images and targets, read from the file it reads (sklearn/datasets/data/digits.csv.gz: 64
    pixels and the class a row) as it reads it, without importing scikit-learn: that import (scipy and all) took
    about 1 s of every digits command, a third of a short run's start-up. Through ``load_digits`` where the file
    is not where this scikit-learn keeps it."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    path = Path(next(iter(spec.submodule_search_locations or ()), "")) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.images, d.target
    with gzip.open(path, mode="rt", encoding="utf-8") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int, copy=False)
