"""The embedded digits dataset: scikit-learn's bundled file, read without importing scikit-learn."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from regbench.data import digits


def test_digits_are_load_digits_bit_for_bit():
    from sklearn.datasets import load_digits

    images, target = digits._digits()
    reference = load_digits()
    assert images.dtype == reference.images.dtype and np.array_equal(images, reference.images)
    assert target.dtype == reference.target.dtype and np.array_equal(target, reference.target)
    raw = digits.load()
    assert raw.x_train.shape[1:] == (1, 8, 8) and len(raw.x_train) + len(raw.x_test) == 1797
    assert 0 <= raw.x_train.min() and raw.x_train.max() <= 1


def test_loading_digits_leaves_scikit_learn_unimported():
    code = "import sys; from regbench.data import digits; digits.load(); print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
