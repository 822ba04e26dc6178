"""Zhang et al. (2017), "Understanding deep learning requires rethinking generalization": randomization tests.

What each setting does to each split (``dataset.*`` keys, applied by :func:`regbench.data.base.prepare`
after the validation split and subsample, before normalization):

    setting                    train / validation                      test, corrupt_test=true   test, corrupt_test=false
    label_noise=p              each label → a uniform random class     clean labels              clean labels
                               with probability p
    input_corruption=
      shuffled_pixels          ONE permutation of the input positions  the same permutation      clean inputs
                               (fixed per run), the same for both
      random_pixels            a fresh permutation per example         a fresh one per example   clean inputs
      gaussian                 Gaussian inputs with the clean training Gaussian, the same        clean inputs
                               split's mean and variance               mean and variance

``corrupt_test`` (default true) is the paper's protocol: the test inputs are corrupted like the
training inputs, so test accuracy measures generalization on the corrupted task (after shuffled pixels,
a model without a spatial prior, such as an MLP, can generalize as before; after random pixels or
Gaussian inputs nothing is left to generalize from, so test accuracy is at chance). ``corrupt_test=false`` leaves the test inputs as they
are on disk, to ask how a model trained on corrupted inputs does on clean ones. Labels of the test split
are never corrupted: label noise is a property of the training data, and the paper scores on true labels.

Every split is corrupted in one draw from one generator seeded by the run's ``corruption_seed`` (label
noise first, then inputs), so a run's corruption is fixed by one logged seed, and turning
``corrupt_test`` off or on leaves the training and validation data bit for bit the same.
"""

from __future__ import annotations

import numpy as np

from regbench.errors import ConfigError

INPUT_CORRUPTIONS = ("none", "shuffled_pixels", "random_pixels", "gaussian")


def check_corrupt_test(value) -> None:
    """``corrupt_test`` must be a bool: 1 or "yes" are refused (``1 in (True, False)`` would let 1 pass)."""
    if not isinstance(value, bool):
        raise ConfigError(f"corrupt_test={value!r} is not one of: True, False")


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


def corrupt_splits(x_train: np.ndarray, x_val: np.ndarray, x_test: np.ndarray, kind: str, rng: np.random.Generator,
                   *, corrupt_test: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three input splits with ``kind`` applied as the module docstring's table says; ``none`` returns them as given.

    The splits are corrupted as one array in one draw, so ``shuffled_pixels`` is one permutation for all of
    them. The test split comes last in that draw, so it never changes what train and validation receive.
    """
    if kind == "none":
        return x_train, x_val, x_test
    stats = (float(x_train.mean()), float(x_train.std()))
    targets = [x_train, x_val, x_test] if corrupt_test else [x_train, x_val]
    ends = np.cumsum([len(x) for x in targets])[:-1]
    corrupted = np.split(corrupt_inputs(np.concatenate(targets), kind, rng, stats), ends)
    return (corrupted[0], corrupted[1], corrupted[2] if corrupt_test else x_test)
