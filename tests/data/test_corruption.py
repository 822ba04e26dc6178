"""Zhang et al. (2017)'s randomization tests on real data (MNIST-1D, digits) through ``prepare``.

Label noise p changes ≈ p·(K−1)/K of the labels; shuffled pixels apply ONE permutation to every
example, random pixels one per example; Gaussian inputs match the clean mean and variance.
Training and validation are corrupted alike, the test split stays clean. And the phenomenon
itself: an MLP fits fully random labels while its test accuracy stays at chance.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from helpers import read_metrics, tiny

from regbench.data import digits, mnist1d
from regbench.data.base import prepare
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


def recover_permutation(clean: np.ndarray, corrupted: np.ndarray) -> list[int]:
    """For each corrupted position, the clean position whose values it holds for every example."""
    perm = []
    for j in range(corrupted.shape[1]):
        matches = np.flatnonzero((clean == corrupted[:, j:j + 1]).all(0))
        assert len(matches) >= 1, f"position {j} holds no clean position's values"
        perm.append(int(matches[0]))
    return perm


@pytest.mark.parametrize("dataset", ["signals", "images"])
def test_shuffled_pixels_use_one_permutation_for_all_examples(dataset, request):
    raw = request.getfixturevalue(dataset)
    clean, shuffled = splits(raw), splits(raw, input_corruption="shuffled_pixels")
    a, b = clean.x_train.flatten(1).numpy(), shuffled.x_train.flatten(1).numpy()
    perm = recover_permutation(a, b)
    assert np.array_equal(b, a[:, perm])  # one permutation explains every training example
    if dataset == "signals":  # MNIST-1D positions are all distinct, so the permutation is unique
        assert sorted(perm) == list(range(a.shape[1])) and perm != list(range(a.shape[1]))
    assert not torch.equal(shuffled.x_val, clean.x_val)
    assert torch.equal(shuffled.x_test, clean.x_test) and torch.equal(shuffled.y_train, clean.y_train)


def test_shuffled_pixels_share_the_permutation_between_train_and_val(signals):
    clean, shuffled = splits(signals), splits(signals, input_corruption="shuffled_pixels")
    train_perm = recover_permutation(clean.x_train.flatten(1).numpy(), shuffled.x_train.flatten(1).numpy())
    val_perm = recover_permutation(clean.x_val.flatten(1).numpy(), shuffled.x_val.flatten(1).numpy())
    assert val_perm == train_perm


def test_random_pixels_permute_each_example_on_its_own(signals):
    clean, shuffled = splits(signals), splits(signals, input_corruption="random_pixels")
    a, b = clean.x_train.flatten(1).numpy(), shuffled.x_train.flatten(1).numpy()
    assert np.array_equal(np.sort(a, 1), np.sort(b, 1))  # each example keeps its own values
    # Each example's permutation, recovered from its values (distinct within an example).
    perms = {tuple(np.argsort(a[i])[np.argsort(np.argsort(b[i]))]) for i in range(200)}
    assert len(perms) == 200, "a fresh permutation per example"
    assert not torch.equal(shuffled.x_val, clean.x_val) and torch.equal(shuffled.x_test, clean.x_test)


def test_gaussian_inputs_match_the_clean_mean_and_variance(images):
    clean, noise = splits(images), splits(images, input_corruption="gaussian")
    x, ref = noise.x_train, clean.x_train
    assert x.shape == ref.shape and x.dtype == torch.float32
    assert x.mean().item() == pytest.approx(ref.mean().item(), abs=0.005)
    assert x.std().item() == pytest.approx(ref.std().item(), rel=0.01)
    corr = np.corrcoef(x.flatten().numpy(), ref.flatten().numpy())[0, 1]
    assert abs(corr) < 0.02, "nothing of the images is left"
    assert noise.x_val.mean().item() == pytest.approx(ref.mean().item(), abs=0.02)
    assert torch.equal(noise.x_test, clean.x_test)


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
