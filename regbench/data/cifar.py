"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009), read from the "python version" pickles.

Layout (what torchvision's download unpacks under ``root``)::

    cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch     keys: data, labels
    cifar-100-python/train, test                                     keys: data, fine_labels

``data`` is N×3072 uint8: per image the 1024 red values, then green, then blue, each plane row-major,
so a reshape to [N, 3, 32, 32] is already NCHW.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from regbench.data import files
from regbench.data.base import RawData

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST = ["test_batch"]
CIFAR10_EXPECTED = "data_batch_1..5 and test_batch, the python version of CIFAR-10"

CIFAR100_DIR = "cifar-100-python"
CIFAR100_TRAIN = ["train"]
CIFAR100_TEST = ["test"]
CIFAR100_EXPECTED = "train and test, the python version of CIFAR-100"


def check_cifar10(root: str, download: bool = False) -> None:
    files.check("cifar10", root, CIFAR10_DIR, CIFAR10_TRAIN + CIFAR10_TEST, CIFAR10_EXPECTED, download)


def load_cifar10(root: str, download: bool = False) -> RawData:
    """CIFAR-10: 50,000 train / 10,000 test 32×32 colour images, 10 classes."""
    check_cifar10(root, download)
    return _load("CIFAR10", root, download, CIFAR10_DIR, CIFAR10_TRAIN, CIFAR10_TEST, "labels", 10)


def check_cifar100(root: str, download: bool = False) -> None:
    files.check("cifar100", root, CIFAR100_DIR, CIFAR100_TRAIN + CIFAR100_TEST, CIFAR100_EXPECTED, download)


def load_cifar100(root: str, download: bool = False) -> RawData:
    """CIFAR-100: 50,000 train / 10,000 test 32×32 colour images, 100 fine classes."""
    check_cifar100(root, download)
    return _load("CIFAR100", root, download, CIFAR100_DIR, CIFAR100_TRAIN, CIFAR100_TEST, "fine_labels", 100)


def _load(torchvision_name: str, root: str, download: bool, folder: str, train: list[str], test: list[str],
          label_key: str, num_classes: int) -> RawData:
    """Both CIFARs: the same pickled batches, differing only in folder, file names and label key."""
    where = files.folder(root, folder)
    if download:
        files.download(torchvision_name.lower(), where, train + test, lambda: _fetch(torchvision_name, root))
    x_train, y_train = _read_batches(where, train, label_key)
    x_test, y_test = _read_batches(where, test, label_key)
    return RawData(x_train, y_train, x_test, y_test, num_classes=num_classes)


# The trainer asks the loader for its check (getattr(loader, "check", None)) to fail before any work.
load_cifar10.check = check_cifar10
load_cifar100.check = check_cifar100


def _read_batches(where: Path, names: list[str], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batches = [_read_batch(where / name) for name in names]
    x = np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32)
    y = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
    return x, y


def _read_batch(path: Path) -> dict:
    # The originals were pickled by Python 2: latin1 is the encoding numpy needs for their arrays.
    # Keys then come back as str, while files pickled by Python 3 keep bytes keys; accept both.
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    except Exception as e:  # cut off, overwritten, or not a CIFAR batch: name the file
        from regbench.errors import UserError

        raise UserError(f"{Path(path).absolute()} is not a readable CIFAR batch ({type(e).__name__}: {str(e)[:80]}); "
                        "replace it with the original file") from None


def _fetch(class_name: str, root: str) -> None:
    import torchvision  # only here: reading needs no torchvision

    # One archive holds both splits; constructing the dataset downloads, unpacks and verifies it.
    getattr(torchvision.datasets, class_name)(str(files.folder(root)), train=True, download=True)
