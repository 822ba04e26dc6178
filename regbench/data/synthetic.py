"""Random inputs of a real dataset's shape, with random labels: for benchmarks and smoke tests where the
real files are absent (``dataset=synthetic``; CIFAR-10's shape by default). Nothing here can be learned."""

from __future__ import annotations

import numpy as np

from regbench.data.base import RawData
from regbench.errors import check_int


def load(shape=(3, 32, 32), num_classes: int = 10, train_size: int = 50000, test_size: int = 10000, seed: int = 0) -> RawData:
    check_int("train_size", train_size, 2)
    check_int("test_size", test_size, 1)
    rng = np.random.default_rng(seed)
    n = train_size + test_size
    x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)  # stored like images on disk
    y = rng.integers(0, num_classes, size=n).astype(np.int64)
    return RawData(x[:train_size], y[:train_size], x[train_size:], y[train_size:], num_classes=num_classes)
