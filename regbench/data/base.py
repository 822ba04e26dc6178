"""What every dataset becomes: tensors on the training device, split into train / val / test.

A dataset module only has to return :class:`RawData` (numpy arrays as they are on disk);
:func:`prepare` does the rest the same way for all of them: a seeded stratified validation split,
optional subsampling, Zhang et al.'s randomization tests (training labels; inputs of every split, or of
train and validation only with ``corrupt_test=False``), normalization with training statistics,
and the move to the device. Batches are then taken by indexing, with no DataLoader.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from regbench.data import corruption


@dataclass
class RawData:
    """A dataset as loaded: inputs [N, C, ...] (uint8 images or float signals), integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


@dataclass
class DataSplits:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    info: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device) -> "DataSplits":
        moved = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        return DataSplits(**moved, num_classes=self.num_classes, info=self.info)


def stratified_split(y: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, taken) with ``fraction`` of each class in ``taken``, chosen by ``rng``."""
    taken = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        taken.append(idx[: int(round(fraction * len(idx)))])
    taken = np.sort(np.concatenate(taken)) if taken else np.array([], dtype=np.int64)
    rest = np.setdiff1d(np.arange(len(y)), taken)
    return rest, taken


def stratified_subsample(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of exactly ``n`` examples, class proportions kept up to rounding."""
    if n > len(y):
        raise ValueError(f"dataset.n_train={n} exceeds the {len(y)} training examples left after the validation split")
    _, taken = stratified_split(y, n / len(y), rng)
    if len(taken) > n:
        taken = np.sort(rng.choice(taken, n, replace=False))
    elif len(taken) < n:
        extra = rng.choice(np.setdiff1d(np.arange(len(y)), taken), n - len(taken), replace=False)
        taken = np.sort(np.concatenate([taken, extra]))
    return taken


def prepare(
    raw: RawData,
    *,
    val_fraction: float,
    n_train: int | None = None,
    label_noise: float = 0.0,
    input_corruption: str = "none",
    normalize: bool = True,
    split_seed: int = 0,
    corruption_seed: int = 0,
    corrupt_test: bool = True,
) -> DataSplits:
    """Turn raw arrays into normalized float tensors (on the CPU; the trainer moves them).

    ``label_noise``, ``input_corruption`` and ``corrupt_test`` are Zhang et al.'s randomization tests;
    :mod:`regbench.data.corruption` says what each does to each split.
    """
    corruption.check_corrupt_test(corrupt_test)
    x = _as_float(raw.x_train)
    y = raw.y_train.astype(np.int64)
    x_test, y_test = _as_float(raw.x_test), raw.y_test.astype(np.int64)

    split_rng = np.random.default_rng(split_seed)
    train_idx, val_idx = stratified_split(y, val_fraction, split_rng)
    if n_train is not None:
        train_idx = train_idx[stratified_subsample(y[train_idx], n_train, split_rng)]

    x_train, y_train, x_val, y_val = x[train_idx], y[train_idx], x[val_idx], y[val_idx]

    rng = np.random.default_rng(corruption_seed)  # labels, then inputs: see regbench.data.corruption
    info: dict = {"corruption_seed": corruption_seed, "n_train": len(y_train), "n_val": len(y_val), "n_test": len(y_test)}
    n = len(y_train)
    if label_noise > 0:
        y_all, changed = corruption.label_noise(np.concatenate([y_train, y_val]), label_noise, raw.num_classes, rng)
        y_train, y_val = y_all[:n], y_all[n:]
        info["label_noise_realised"] = float(changed[:n].mean())
    x_train, x_val, x_test = corruption.corrupt_splits(x_train, x_val, x_test, input_corruption, rng,
                                                       corrupt_test=corrupt_test)
    if input_corruption != "none":
        info["test_inputs_corrupted"] = corrupt_test  # result.json says which protocol the test accuracy is from

    if normalize:
        mean, std = channel_stats(x_train)
        x_train, x_val, x_test = ((a - mean) / std for a in (x_train, x_val, x_test))

    t = lambda a, dtype=torch.float32: torch.from_numpy(np.ascontiguousarray(a)).to(dtype)  # noqa: E731
    return DataSplits(
        t(x_train), t(y_train, torch.long), t(x_val), t(y_val, torch.long), t(x_test), t(y_test, torch.long),
        num_classes=raw.num_classes, info=info,
    )


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over examples and positions, shaped to broadcast against x."""
    axes = (0,) + tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)[0]
    std = x.std(axis=axes, keepdims=True)[0]
    return mean.astype(np.float32), np.maximum(std, 1e-8).astype(np.float32)


def _as_float(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
