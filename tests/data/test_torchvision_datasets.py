"""CIFAR-10/100, MNIST, Fashion-MNIST and SVHN: small datasets written in the real on-disk formats,
read back through the loaders users take (and through the yaml configs that name them)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import hydra.utils
import numpy as np
import pytest
import scipy.io
from omegaconf import OmegaConf

from regbench.build import loader_kwargs
from regbench.config import compose
from regbench.data import cifar, mnist, svhn
from regbench.data.base import RawData, prepare
from regbench.errors import DataNotFound, UserError

N_TRAIN, N_TEST = 50, 20


def images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def labels(n: int, num_classes: int, seed: int) -> np.ndarray:
    # Every class present where n allows, in shuffled order.
    return np.random.default_rng(seed).permutation(np.arange(n) % num_classes).astype(np.int64)


# --- writers of the real formats ---------------------------------------------------------------

def write_cifar_batch(path: Path, x: np.ndarray, y: np.ndarray, label_key: bytes) -> None:
    """A CIFAR "python version" batch: each row the 1024 red, then green, then blue values, row-major."""
    rows = np.concatenate([x[:, c].reshape(len(x), 32 * 32) for c in range(3)], axis=1)
    batch = {b"batch_label": b"testing batch", b"data": rows, label_key: [int(v) for v in y]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)  # the originals are Python 2 (protocol 2) pickles


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    """An idx file: magic 2049 (labels, 1-d) or 2051 (images, 3-d), big-endian sizes, bytes."""
    magic = 0x0800 | array.ndim
    data = struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def write_svhn_mat(path: Path, x: np.ndarray, digits: np.ndarray) -> None:
    """SVHN format 2: X is H×W×C×N uint8, y is N×1 with 10 standing for the digit 0."""
    y = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]
    scipy.io.savemat(path, {"X": x.transpose(2, 3, 1, 0), "y": y})


# --- one tiny dataset per loader: (load, write(root) -> expected RawData) -----------------------

def make_cifar10(root: Path) -> RawData:
    x, y = images(N_TRAIN, (3, 32, 32), 0), labels(N_TRAIN, 10, 0)
    folder = root / "cifar-10-batches-py"
    for i, part in enumerate(np.array_split(np.arange(N_TRAIN), 5), start=1):
        write_cifar_batch(folder / f"data_batch_{i}", x[part], y[part], b"labels")
    x_test, y_test = images(N_TEST, (3, 32, 32), 1), labels(N_TEST, 10, 1)
    write_cifar_batch(folder / "test_batch", x_test, y_test, b"labels")
    return RawData(x, y, x_test, y_test, 10)


def make_cifar100(root: Path) -> RawData:
    x, y = images(N_TRAIN, (3, 32, 32), 2), labels(N_TRAIN, 100, 2)
    x_test, y_test = images(N_TEST, (3, 32, 32), 3), labels(N_TEST, 100, 3)
    write_cifar_batch(root / "cifar-100-python" / "train", x, y, b"fine_labels")
    write_cifar_batch(root / "cifar-100-python" / "test", x_test, y_test, b"fine_labels")
    return RawData(x, y, x_test, y_test, 100)


def make_idx(folder: str, gz: bool):
    def make(root: Path) -> RawData:
        x, y = images(N_TRAIN, (1, 28, 28), 4), labels(N_TRAIN, 10, 4)
        x_test, y_test = images(N_TEST, (1, 28, 28), 5), labels(N_TEST, 10, 5)
        raw = root / folder / "raw"
        write_idx(raw / "train-images-idx3-ubyte", x[:, 0], gz)
        write_idx(raw / "train-labels-idx1-ubyte", y, gz)
        write_idx(raw / "t10k-images-idx3-ubyte", x_test[:, 0], gz)
        write_idx(raw / "t10k-labels-idx1-ubyte", y_test, gz)
        return RawData(x, y, x_test, y_test, 10)
    return make


def make_svhn(root: Path) -> RawData:
    x, y = images(N_TRAIN, (3, 32, 32), 6), labels(N_TRAIN, 10, 6)
    x_test, y_test = images(N_TEST, (3, 32, 32), 7), labels(N_TEST, 10, 7)
    root.mkdir(parents=True, exist_ok=True)
    write_svhn_mat(root / "train_32x32.mat", x, y)
    write_svhn_mat(root / "test_32x32.mat", x_test, y_test)
    return RawData(x, y, x_test, y_test, 10)


DATASETS = {  # yaml name: (loader, writer, expected folder under root, expected file names)
    "cifar10": (cifar.load_cifar10, make_cifar10, "cifar-10-batches-py", ["data_batch_1..5", "test_batch"]),
    "cifar100": (cifar.load_cifar100, make_cifar100, "cifar-100-python", ["train and test"]),
    "mnist": (mnist.load_mnist, make_idx("MNIST", gz=False), "MNIST/raw", mnist.IDX_FILES),
    "fashion_mnist": (mnist.load_fashion_mnist, make_idx("FashionMNIST", gz=True), "FashionMNIST/raw",
                      mnist.IDX_FILES),
    "svhn": (svhn.load_svhn, make_svhn, "", ["train_32x32.mat", "test_32x32.mat"]),
}


# --- tests --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", DATASETS)
def test_loader_round_trips_pixels_and_labels(name, tmp_path):
    load, make, _, _ = DATASETS[name]
    expected = make(tmp_path)
    raw = load(str(tmp_path), download=False)
    assert raw.x_train.dtype == np.uint8 and raw.y_train.dtype == np.int64
    np.testing.assert_array_equal(raw.x_train, expected.x_train)
    np.testing.assert_array_equal(raw.y_train, expected.y_train)
    np.testing.assert_array_equal(raw.x_test, expected.x_test)
    np.testing.assert_array_equal(raw.y_test, expected.y_test)
    assert raw.num_classes == expected.num_classes
    # With the files in place, download=true must not reach torchvision (its md5 checks would reject them).
    np.testing.assert_array_equal(load(str(tmp_path), download=True).x_test, expected.x_test)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("load, folder", [(mnist.load_mnist, "MNIST"), (mnist.load_fashion_mnist, "FashionMNIST")])
def test_idx_files_read_plain_and_gzipped(load, folder, gz, tmp_path):
    expected = make_idx(folder, gz)(tmp_path)
    raw = load(str(tmp_path))
    assert raw.x_train.shape == (N_TRAIN, 1, 28, 28)
    np.testing.assert_array_equal(raw.x_train, expected.x_train)
    np.testing.assert_array_equal(raw.y_test, expected.y_test)


def test_cifar_rows_are_red_green_blue_planes(tmp_path):
    # One image whose only bright pixel sits in the green plane at row 1, column 2:
    # in the file that is value 1024 + 1·32 + 2 of the row.
    x = np.zeros((10, 3, 32, 32), np.uint8)
    x[0, 1, 1, 2] = 255
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_cifar_batch(tmp_path / "cifar-10-batches-py" / name, x, np.arange(10), b"labels")
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as f:
        assert np.flatnonzero(pickle.load(f)[b"data"][0]).tolist() == [1024 + 32 + 2]

    raw = cifar.load_cifar10(str(tmp_path))
    assert raw.x_train[0, 1, 1, 2] == 255 and raw.x_train.sum() == 5 * 255


def test_svhn_label_10_is_digit_0(tmp_path):
    make_svhn(tmp_path)
    stored = scipy.io.loadmat(tmp_path / "train_32x32.mat")["y"].ravel()
    raw = svhn.load_svhn(str(tmp_path))
    assert stored.min() == 1 and stored.max() == 10
    np.testing.assert_array_equal(raw.y_train, stored % 10)
    # Pixel [c, h, w] of image n is X[h, w, c, n] in the file.
    stored_x = scipy.io.loadmat(tmp_path / "train_32x32.mat")["X"]
    assert raw.x_train[3, 2, 5, 7] == stored_x[5, 7, 2, 3]


@pytest.mark.parametrize("name", DATASETS)
def test_prepare_normalizes_per_channel(name, tmp_path):
    load, make, _, _ = DATASETS[name]
    make(tmp_path)
    splits = prepare(load(str(tmp_path)), val_fraction=0.2, split_seed=0, corruption_seed=0)
    x = splits.x_train.numpy()
    assert splits.x_train.shape[0] + splits.x_val.shape[0] == N_TRAIN
    assert splits.x_test.shape[0] == N_TEST
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=(0, 2, 3)), 1, atol=1e-3)


@pytest.mark.parametrize("name", DATASETS)
def test_missing_files_raise_one_line_data_not_found(name, tmp_path, monkeypatch):
    load, _, folder, expected_names = DATASETS[name]
    monkeypatch.chdir(tmp_path)  # a relative root must be reported as an absolute folder
    with pytest.raises(DataNotFound) as caught:
        load("data", download=False)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{name}: no data in {(tmp_path / 'data' / folder).resolve()} " in message
    assert all(file in message for file in expected_names)
    assert "dataset.download=true" in message and "dataset.root" in message

    # The check alone says the same without loading anything (the trainer calls it up front).
    with pytest.raises(DataNotFound, match="no data in"):
        load.check("data", download=False)
    load.check("data", download=True)  # a download would fetch them: nothing to report yet


def test_partly_missing_files_are_named(tmp_path):
    make_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataNotFound, match=r"missing data_batch_3 in .*cifar-10-batches-py"):
        cifar.load_cifar10(str(tmp_path))


def test_truncated_idx_file_is_reported(tmp_path):
    make_idx("MNIST", gz=False)(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UserError, match="header says 50×28×28"):
        mnist.load_mnist(str(tmp_path))


@pytest.mark.parametrize("name", DATASETS)
def test_yaml_targets_the_loader_and_describes_its_data(name, tmp_path, monkeypatch):
    load, make, _, _ = DATASETS[name]
    make(tmp_path)
    monkeypatch.delenv("REGBENCH_DATA", raising=False)
    node = compose([f"dataset={name}"]).dataset
    assert node.root == "data"  # the default when REGBENCH_DATA is unset
    monkeypatch.setenv("REGBENCH_DATA", str(tmp_path))
    cfg = OmegaConf.to_container(node, resolve=True)
    assert cfg["name"] == name and cfg["download"] is False
    assert hydra.utils.get_method(cfg["_target_"]) is load

    # As the trainer does: drop the common keys, call the target with the loader options.
    options = loader_kwargs(node)
    assert options == {"root": str(tmp_path), "download": False}
    raw = load(**options)
    assert list(raw.x_train.shape[1:]) == cfg["input_shape"]
    assert raw.num_classes == cfg["num_classes"]
