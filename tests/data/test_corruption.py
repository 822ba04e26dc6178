"""Zhang et al. (2017)'s randomization tests on real data (MNIST-1D, digits) through ``prepare``.

Label noise p changes ≈ p·(K−1)/K of the training and validation labels, never the test labels.
Input corruption reaches every split (the paper's protocol): shuffled pixels are ONE permutation,
read off the training split and checked on validation and test; random pixels one per example;
Gaussian inputs have the clean training split's mean and variance. ``corrupt_test=False`` leaves
the test split clean and changes nothing else. And the phenomenon itself: an MLP fits fully random
labels while its test accuracy stays at chance.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import torch
from helpers import read_metrics, tiny

from regbench.data import digits, mnist1d
from regbench.data.base import prepare
from regbench.errors import ConfigError
from regbench.train import train

K = 10


@pytest.fixture(scope="module")
def signals():
    return mnist1d.load()


@pytest.fixture(scope="module")
def images():
    return digits.load()


def splits(raw, **corruption):
    return prepare(raw, val_fraction=0.1, normalize=False, split_seed=0, corruption_seed=3, **corruption)


def test_label_noise_changes_p_times_k_minus_1_over_k(signals):
    clean = splits(signals)
    for p in (0.2, 0.5, 1.0):
        noisy = splits(signals, label_noise=p)
        changed_train = (noisy.y_train != clean.y_train).float().mean().item()
        changed_val = (noisy.y_val != clean.y_val).float().mean().item()
        expected = p * (K - 1) / K
        assert changed_train == pytest.approx(expected, abs=0.025)  # 3,600 labels: ± 3 standard errors
        assert changed_val == pytest.approx(expected, abs=0.065)  # 400 labels: ± 2.6 standard errors
        assert noisy.info["label_noise_realised"] == pytest.approx(changed_train, abs=1e-6)
        assert torch.equal(noisy.y_test, clean.y_test) and torch.equal(noisy.x_train, clean.x_train)
    assert "label_noise_realised" not in clean.info


def test_fully_random_labels_are_uniform_over_classes(signals):
    noisy = splits(signals, label_noise=1.0)
    counts = torch.bincount(noisy.y_train, minlength=K).float() / len(noisy.y_train)
    assert torch.allclose(counts, torch.full((K,), 1 / K), atol=0.02)


SPLITS = ("train", "val", "test")
CORRUPTIONS = ("shuffled_pixels", "random_pixels", "gaussian")


def inputs(data, split: str) -> np.ndarray:
    """One split's inputs as a numpy array [examples, positions]."""
    return getattr(data, f"x_{split}").flatten(1).numpy()


def same_split(a, b, split: str) -> bool:
    return torch.equal(getattr(a, f"x_{split}"), getattr(b, f"x_{split}")) and \
        torch.equal(getattr(a, f"y_{split}"), getattr(b, f"y_{split}"))


def recover_permutation(clean: np.ndarray, corrupted: np.ndarray) -> list[int]:
    """For each corrupted position, the clean position whose values it holds for every example."""
    perm = []
    for j in range(corrupted.shape[1]):
        matches = np.flatnonzero((clean == corrupted[:, j:j + 1]).all(0))
        assert len(matches) >= 1, f"position {j} holds no clean position's values"
        perm.append(int(matches[0]))
    return perm


def example_permutation(clean: np.ndarray, corrupted: np.ndarray) -> tuple[int, ...]:
    """The permutation p with corrupted == clean[p], for one example whose values are all distinct."""
    assert len(np.unique(clean)) == len(clean), "distinct values: the permutation is unique"
    order = np.argsort(clean)
    perm = order[np.searchsorted(clean[order], corrupted)]
    assert np.array_equal(clean[perm], corrupted)
    return tuple(perm.tolist())


@pytest.mark.parametrize("dataset", ["signals", "images"])
def test_shuffled_pixels_apply_one_permutation_to_every_split(dataset, request):
    raw = request.getfixturevalue(dataset)
    clean, shuffled = splits(raw), splits(raw, input_corruption="shuffled_pixels")
    perm = recover_permutation(inputs(clean, "train"), inputs(shuffled, "train"))
    for split in SPLITS:  # the permutation read off the training split explains validation and test too
        assert np.array_equal(inputs(shuffled, split), inputs(clean, split)[:, perm]), split
        assert torch.equal(getattr(shuffled, f"y_{split}"), getattr(clean, f"y_{split}"))
    if dataset == "signals":  # MNIST-1D positions are all distinct, so the permutation is unique
        assert sorted(perm) == list(range(40)) and perm != list(range(40))
    assert shuffled.info["test_inputs_corrupted"] is True


def test_random_pixels_permute_each_example_on_its_own_in_every_split(signals):
    clean, scrambled = splits(signals), splits(signals, input_corruption="random_pixels")
    for split in SPLITS:
        a, b = inputs(clean, split), inputs(scrambled, split)
        perms = {example_permutation(a[i], b[i]) for i in range(len(a))}  # each example keeps its own values
        assert len(perms) == len(a), f"{split}: a fresh permutation per example"
        assert (b != a).any(1).all(), split


@pytest.mark.parametrize("dataset", ["signals", "images"])
def test_gaussian_inputs_replace_every_split_with_the_training_mean_and_variance(dataset, request):
    raw = request.getfixturevalue(dataset)
    clean, noise = splits(raw), splits(raw, input_corruption="gaussian")
    mean, std = clean.x_train.mean().item(), clean.x_train.std().item()
    for split in SPLITS:
        x, ref = inputs(noise, split).ravel(), inputs(clean, split).ravel()
        assert getattr(noise, f"x_{split}").shape == getattr(clean, f"x_{split}").shape
        assert getattr(noise, f"x_{split}").dtype == torch.float32
        n, z = len(x), (x - mean) / std
        # Every moment within 5 standard errors of N(mean, std²), the training split's clean moments.
        assert abs(z.mean()) < 5 / n ** 0.5, split
        assert abs(z.std() - 1) < 5 / (2 * n) ** 0.5, split
        assert abs((z ** 3).mean()) < 5 * (6 / n) ** 0.5, f"{split}: skewness"
        assert abs((z ** 4).mean() - 3) < 5 * (24 / n) ** 0.5, f"{split}: kurtosis"
        assert abs(np.corrcoef(x, ref)[0, 1]) < 0.05, f"{split}: nothing of the clean inputs is left"
        assert torch.equal(getattr(noise, f"y_{split}"), getattr(clean, f"y_{split}"))


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corrupt_test_false_leaves_the_test_split_clean_and_nothing_else_changes(signals, kind):
    clean = splits(signals)
    paper = splits(signals, label_noise=0.5, input_corruption=kind)
    kept = splits(signals, label_noise=0.5, input_corruption=kind, corrupt_test=False)
    assert same_split(kept, clean, "test")
    assert not torch.equal(paper.x_test, clean.x_test) and torch.equal(paper.y_test, clean.y_test)
    assert same_split(kept, paper, "train") and same_split(kept, paper, "val")  # the test split is drawn last
    assert kept.info["test_inputs_corrupted"] is False and paper.info["test_inputs_corrupted"] is True


@pytest.mark.parametrize("value", [1, 0, "yes", "false", None, 1.0])
def test_corrupt_test_must_be_a_bool(signals, value):
    with pytest.raises(ConfigError, match=re.escape(f"corrupt_test={value!r} is not one of: True, False")):
        splits(signals, input_corruption="gaussian", corrupt_test=value)


def test_no_corruption_leaves_every_split_clean(signals):
    raw_x_test = torch.from_numpy(signals.x_test)
    for corrupt_test in (True, False):
        data = splits(signals, corrupt_test=corrupt_test)
        assert torch.equal(data.x_test, raw_x_test) and "test_inputs_corrupted" not in data.info


def test_corruption_is_fixed_by_its_seed(signals):
    a = splits(signals, label_noise=0.5, input_corruption="random_pixels")
    b = splits(signals, label_noise=0.5, input_corruption="random_pixels")
    c = prepare(signals, val_fraction=0.1, normalize=False, corruption_seed=4, label_noise=0.5)
    assert torch.equal(a.y_train, b.y_train) and torch.equal(a.x_train, b.x_train)
    assert not torch.equal(a.y_train, c.y_train)


# Zhang et al. (2017), Fig. 1a on MNIST-1D: a 2 × 512 MLP memorizes 1,000 random labels.
# Measured on a busy 2-core CPU: train accuracy 0.99 at epoch 25 and 1.0 from epoch 31, test 0.105
# (chance 0.1) at epoch 40, in about 3 s of training.
RANDOM_LABELS = ("model=mlp", "model.width=512", "dataset.n_train=1000", "dataset.label_noise=1.0",
                 "optimizer=adam", "optimizer.lr=1e-3", "trainer.max_epochs=40", "trainer.early_stopping.patience=null",
                 "regularizer=none")


def test_mlp_fits_random_labels_and_generalizes_at_chance(tmp_path):
    start = time.perf_counter()
    result = train(tiny(*RANDOM_LABELS), tmp_path)
    seconds = time.perf_counter() - start
    assert result["status"] == "completed" and result["regularizers"] == []
    assert result["data"]["label_noise_realised"] == pytest.approx(0.9, abs=0.03)
    assert result["train_acc"] >= 0.99, read_metrics(tmp_path)[-1]
    assert result["test_acc"] <= 0.2 and result["val_acc"] <= 0.2
    print(f"random labels: train {result['train_acc']:.3f}, test {result['test_acc']:.3f}, "
          f"{result['epochs_run']} epochs, {seconds:.1f} s")
