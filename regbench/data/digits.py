"""scikit-learn's bundled handwritten digits (UCI optdigits): 1,797 8×8 images, 10 classes, no download."""

from __future__ import annotations

import numpy as np

from regbench.data.base import RawData, stratified_split


def load(test_fraction: float = 0.2, seed: int = 0) -> RawData:
    """Digits as (N, 1, 8, 8) floats in [0, 1], with a seeded stratified test split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    train, test = stratified_split(y, test_fraction, np.random.default_rng(seed))
    return RawData(x[train], y[train], x[test], y[test], num_classes=10)
