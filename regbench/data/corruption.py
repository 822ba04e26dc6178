"""Zhang et al. (2017), "Understanding deep learning requires rethinking generalization": randomization tests.

Each function takes the generator it draws from, so a run's corruption is fixed by one logged seed.
"""

from __future__ import annotations

import numpy as np

INPUT_CORRUPTIONS = ("none", "shuffled_pixels", "random_pixels", "gaussian")


def label_noise(y: np.ndarray, p: float, num_classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Replace each label, with probability p, by a class drawn uniformly from all K classes.

    A replacement can draw the original class, so the expected fraction that changes is p·(K-1)/K;
    p = 1 gives fully random labels. Returns the new labels and the mask of those that changed.
    """
    y = y.copy()
    replace = rng.random(len(y)) < p
    new = rng.integers(0, num_classes, size=len(y))
    changed = replace & (new != y)
    y[replace] = new[replace]
    return y, changed


def corrupt_inputs(x: np.ndarray, kind: str, rng: np.random.Generator, stats: tuple[float, float]) -> np.ndarray:
    """Shuffled pixels (one permutation for every example), random pixels (one per example), or Gaussian inputs.

    ``stats`` is the (mean, std) of the clean training inputs, which the Gaussian inputs match.
    """
    n = len(x)
    flat = x.reshape(n, -1)
    if kind == "shuffled_pixels":
        return flat[:, rng.permutation(flat.shape[1])].reshape(x.shape)
    if kind == "random_pixels":
        perms = np.argsort(rng.random(flat.shape), axis=1)
        return np.take_along_axis(flat, perms, axis=1).reshape(x.shape)
    if kind == "gaussian":
        mean, std = stats
        return rng.normal(mean, std, size=x.shape).astype(np.float32)
    raise ValueError(f"unknown input_corruption {kind!r}; choose one of {', '.join(INPUT_CORRUPTIONS)}")
