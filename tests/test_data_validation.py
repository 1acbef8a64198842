"""Checks of a classifier's data (xpnet/data/validation.py): images (N, features), finite, and one
label in range (or one one-hot row) per image, checked where the data is: host or device."""
import subprocess
import sys

import numpy as np
import pytest

import xpnet.data
from xpnet.data.validation import check_classification_data, check_labels
from xpnet.errors import DataError


def data(n=6, features=4, classes=3):
    x = np.linspace(0, 1, n * features, dtype=np.float32).reshape(n, features)
    return x, np.arange(n) % classes


@pytest.mark.parametrize("make", [
    lambda x, t: (x, t),
    lambda x, t: (x, np.eye(3, dtype=np.float32)[t]),           # one-hot rows
    lambda x, t: ((x * 255).astype(np.uint8), t.astype(np.int32)),  # integer images: no NaN to find
], ids=["labels", "one-hot", "uint8-images"])
def test_good_data_passes_on_the_host_and_on_the_device(backend, make):
    x, t = make(*data())
    assert check_classification_data(x, t, 4, 3, "training data") is None
    assert check_classification_data(backend.asarray(x), backend.asarray(t), 4, 3, "training data") is None
    assert check_labels(x.tolist(), t.tolist(), 3, "t") is None  # lists too


@pytest.mark.parametrize("bad, message", [
    (lambda x, t: (x[:, :3], t), r"^training data: images must have shape \(N, 4\), got \(6, 3\); "
                                 "load them with flatten=True$"),
    (lambda x, t: (x.reshape(6, 2, 2), t), r"got \(6, 2, 2\)"),
    (lambda x, t: (np.where(x > 0.5, np.inf, x), t), "^training data: images contain NaN or infinite values$"),
    (lambda x, t: (np.where(x > 0.5, np.nan, x), t), "NaN or infinite"),
    (lambda x, t: (x, t + 1), r"^training data: labels must lie in 0\.\.2, found 1\.\.3$"),
    (lambda x, t: (x, t - 1), r"labels must lie in 0\.\.2, found -1\.\.1$"),
    (lambda x, t: (x, t.astype(np.float64)), "^training data: labels must be integers, got dtype float64$"),
    (lambda x, t: (x, t[:-1]), "^training data: 6 samples but 5 labels$"),
    (lambda x, t: (x, np.eye(4)[t]), r"^training data: one-hot labels must have shape \(6, 3\), got \(6, 4\)$"),
    (lambda x, t: (x[:0], t[:0]), r"^training data: no samples \(x has shape \(0, 4\)\)$"),
])
def test_bad_data_is_named_on_the_host_and_on_the_device(backend, bad, message):
    x, t = bad(*data())
    with pytest.raises(DataError, match=message):
        check_classification_data(x, t, 4, 3, "training data")
    with pytest.raises(DataError, match=message):
        check_classification_data(backend.asarray(x), backend.asarray(t), 4, 3, "training data")


def test_check_labels_alone_takes_any_input_shape():
    """Labels only: the net's methods check them for inputs of any shape (images not flattened)."""
    x = np.zeros((2, 1, 28, 28), np.float32)
    assert check_labels(x, np.array([0, 9]), 10, "t") is None
    with pytest.raises(DataError, match=r"^t: labels must lie in 0\.\.9, found 0\.\.10$"):
        check_labels(x, np.array([0, 10]), 10, "t")
    with pytest.raises(DataError, match=r"^t: 2 samples but 0 labels$"):
        check_labels(x, np.array(3), 10, "t")
    with pytest.raises(DataError, match=r"^t: no samples \(x has shape \(\)\)$"):
        check_labels(np.float32(1.0), np.array([1]), 10, "t")


def test_the_checks_are_part_of_xpnet_data_which_needs_no_nn():
    assert xpnet.data.check_classification_data is check_classification_data
    assert xpnet.data.check_labels is check_labels
    code = ("import sys, xpnet.data.validation; "
            "print(sorted(m for m in sys.modules if m.startswith('xpnet.nn')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
