"""MNIST (LeCun et al. 1998) and Fashion-MNIST (Xiao et al. 2017), read from idx files.

Layout (what torchvision's download puts under ``root``; each file may be plain or gzipped)::

    MNIST/raw/train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte
    FashionMNIST/raw/  the same four names

An idx file is two zero bytes, a type code (0x08: unsigned byte), the number of dimensions,
each dimension as a big-endian uint32, then the values row-major.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from regbench.data import files
from regbench.data.base import RawData
from regbench.errors import UserError

IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
IDX_EXPECTED = ", ".join(IDX_FILES) + ", each plain or .gz"
UNSIGNED_BYTE = 0x08


def check_mnist(root: str, download: bool = False) -> None:
    files.check("mnist", root, "MNIST/raw", IDX_FILES, IDX_EXPECTED, download, gz=True)


def load_mnist(root: str, download: bool = False) -> RawData:
    """MNIST: 60,000 train / 10,000 test 28×28 greyscale handwritten digits, 10 classes."""
    check_mnist(root, download)
    return _load("mnist", "MNIST", root, download)


def check_fashion_mnist(root: str, download: bool = False) -> None:
    files.check("fashion_mnist", root, "FashionMNIST/raw", IDX_FILES, IDX_EXPECTED, download, gz=True)


def load_fashion_mnist(root: str, download: bool = False) -> RawData:
    """Fashion-MNIST: 60,000 train / 10,000 test 28×28 greyscale clothing images, 10 classes."""
    check_fashion_mnist(root, download)
    return _load("fashion_mnist", "FashionMNIST", root, download)


# The trainer asks the loader for its check (getattr(loader, "check", None)) to fail before any work.
load_mnist.check = check_mnist
load_fashion_mnist.check = check_fashion_mnist


def _load(dataset: str, class_name: str, root: str, download: bool) -> RawData:
    # class_name is both torchvision's class and its folder (torchvision uses <root>/<ClassName>/raw).
    where = files.folder(root, class_name, "raw")
    if download:
        files.download(dataset, where, IDX_FILES, lambda: _fetch(class_name, root), gz=True)
    x_train, y_train, x_test, y_test = (read_idx(files.find(where, name, gz=True)) for name in IDX_FILES)
    return RawData(x_train[:, None], y_train.astype(np.int64), x_test[:, None], y_test.astype(np.int64),
                   num_classes=10)


def read_idx(path: Path) -> np.ndarray:
    """The uint8 array stored in an idx file (plain, or gzipped if the name ends in .gz)."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        data = bytearray(f.read())  # bytearray, not bytes: the arrays viewing it stay writable like the others
    ndim = data[3] if len(data) >= 4 else 0
    if data[:3] != bytes([0, 0, UNSIGNED_BYTE]) or len(data) < 4 + 4 * ndim:
        raise UserError(f"{path} is not an idx file of unsigned bytes (it starts with {data[:4].hex()})")
    shape = tuple(np.frombuffer(data, dtype=">u4", count=ndim, offset=4).tolist())
    values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if values.size != np.prod(shape):
        raise UserError(f"{path} holds {values.size} values, but its header says {'×'.join(map(str, shape))}")
    return values.reshape(shape)


def _fetch(class_name: str, root: str) -> None:
    import torchvision  # only here: reading needs no torchvision

    getattr(torchvision.datasets, class_name)(str(files.folder(root)), train=True, download=True)
