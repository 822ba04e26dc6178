"""SVHN (Netzer et al. 2011), cropped digits ("format 2"), read from the MATLAB files.

Layout (what torchvision's download puts under ``root``)::

    train_32x32.mat, test_32x32.mat     X: 32×32×3×N uint8 (H, W, C, N), y: N×1 labels 1..10

Label 10 stands for the digit 0 and becomes class 0. The 531,131 images of ``extra_32x32.mat``
are not used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from regbench.data import files
from regbench.data.base import RawData

SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
SVHN_EXPECTED = "train_32x32.mat and test_32x32.mat, the cropped digits (format 2) of SVHN"


def check_svhn(root: str, download: bool = False) -> None:
    files.check("svhn", root, "", list(SVHN_FILES.values()), SVHN_EXPECTED, download)


def load_svhn(root: str, download: bool = False) -> RawData:
    """SVHN: 73,257 train / 26,032 test 32×32 colour crops of house-number digits, 10 classes."""
    check_svhn(root, download)
    where = files.folder(root)
    if download:
        files.download("svhn", where, list(SVHN_FILES.values()), lambda: _fetch(root))
    x_train, y_train = _read_mat(where / SVHN_FILES["train"])
    x_test, y_test = _read_mat(where / SVHN_FILES["test"])
    return RawData(x_train, y_train, x_test, y_test, num_classes=10)


# The trainer asks the loader for its check (getattr(loader, "check", None)) to fail before any work.
load_svhn.check = check_svhn


def _read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat  # scipy is needed only for SVHN

    mat = loadmat(path, variable_names=["X", "y"])
    x = np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1))  # (H, W, C, N) → (N, C, H, W)
    y = mat["y"].reshape(-1).astype(np.int64)
    return x, np.where(y == 10, 0, y)


def _fetch(root: str) -> None:
    import torchvision  # only here: reading needs no torchvision

    for split in SVHN_FILES:  # one file per split, each constructed (downloaded and verified) on its own
        torchvision.datasets.SVHN(str(files.folder(root)), split=split, download=True)
