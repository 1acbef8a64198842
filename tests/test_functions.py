"""The book's chapter 3 functions and chapter 4 losses against values computed by hand, on every
backend and dtype."""
import math

import numpy as np
import pytest

from tests.conftest import assert_close
from xpnet.backends import backend_of, dtype_name
from xpnet.nn import (
    cross_entropy_error,
    identity_function,
    relu,
    sigmoid,
    softmax,
    step_function,
    sum_squared_error,
)

#: Central differences in float32 lose about half the digits (h = 1e-4 against eps = 1.2e-7).
NUMERICAL_TOL = {"float32": 2e-2, "float64": 1e-7}

# The book's example: the network is most confident in class 2, which is the right answer.
Y_GOOD = [0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]
Y_BAD = [0.1, 0.05, 0.1, 0.0, 0.05, 0.1, 0.0, 0.6, 0.0, 0.0]
T_ONE_HOT = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]


def arr(backend, values, dtype):
    return backend.asarray(np.asarray(values), dtype)


def test_results_stay_in_the_input_namespace_and_dtype(backend, dtype):
    x = arr(backend, [-1.0, 1.0, 2.0], dtype)
    for fn in (identity_function, step_function, sigmoid, relu, softmax):
        y = fn(x)
        assert backend_of(y) is backend, fn.__name__
        assert y.dtype == x.dtype, fn.__name__
        assert dtype_name(y.dtype) == dtype, fn.__name__


def test_activations(backend, dtype):
    x = arr(backend, [-1.0, 0.0, 2.0], dtype)
    assert_close(identity_function(x), [-1.0, 0.0, 2.0], dtype)
    assert_close(step_function(x), [0.0, 0.0, 1.0], dtype)
    assert_close(relu(x), [0.0, 0.0, 2.0], dtype)
    expected = [1 / (1 + math.exp(1.0)), 0.5, 1 / (1 + math.exp(-2.0))]
    assert_close(sigmoid(x), expected, dtype)


def test_sigmoid_saturates_without_overflow(backend, dtype):
    with np.errstate(over="raise"):
        y = sigmoid(arr(backend, [-1000.0, 1000.0], dtype))
    assert_close(y, [0.0, 1.0], dtype)


def test_softmax_values_and_stability(backend, dtype):
    e = np.exp([0.3, 2.9, 4.0])
    assert_close(softmax(arr(backend, [0.3, 2.9, 4.0], dtype)), e / e.sum(), dtype)
    # Without subtracting the max, exp(1010) overflows to inf and the result is NaN.
    big = softmax(arr(backend, [[1010.0, 1000.0, 990.0], [0.0, 0.0, 0.0]], dtype))
    e = np.exp([20.0, 10.0, 0.0])
    assert_close(big, [e / e.sum(), [1 / 3, 1 / 3, 1 / 3]], dtype)


def test_sum_squared_error(backend, dtype):
    y, t = arr(backend, Y_GOOD, dtype), arr(backend, T_ONE_HOT, dtype)
    # ½ (0.1² + 0.05² + 0.4² + 0.05² + 0.1² + 0.1²) = ½ · 0.195
    assert_close(sum_squared_error(y, t), 0.0975, dtype)
    assert_close(sum_squared_error(arr(backend, Y_BAD, dtype), t), 0.5975, dtype)


def test_cross_entropy_one_hot_and_labels(backend, dtype):
    t = arr(backend, T_ONE_HOT, dtype)
    assert_close(cross_entropy_error(arr(backend, Y_GOOD, dtype), t), -math.log(0.6 + 1e-7), dtype)
    assert_close(cross_entropy_error(arr(backend, Y_BAD, dtype), t), -math.log(0.1 + 1e-7), dtype)
    label = backend.asarray(np.int32(2))
    assert_close(cross_entropy_error(arr(backend, Y_GOOD, dtype), label), -math.log(0.6 + 1e-7), dtype)


def test_cross_entropy_is_batch_averaged(backend, dtype):
    y = arr(backend, [Y_GOOD, Y_BAD], dtype)
    expected = -(math.log(0.6 + 1e-7) + math.log(0.1 + 1e-7)) / 2
    assert_close(cross_entropy_error(y, backend.asarray(np.array([2, 2]))), expected, dtype)
    assert_close(cross_entropy_error(y, arr(backend, [T_ONE_HOT, T_ONE_HOT], dtype)), expected, dtype)
    # log(0) never happens: a zero probability costs -log(1e-7).
    zero = arr(backend, [[1.0, 0.0]], dtype)
    assert_close(cross_entropy_error(zero, backend.asarray(np.array([1]))), -math.log(1e-7), dtype,
                 rtol=1e-4)


def test_cross_entropy_rejects_bad_labels(backend):
    y = arr(backend, [Y_GOOD, Y_BAD], "float64")
    with pytest.raises(ValueError, match="must be integers"):
        cross_entropy_error(y, arr(backend, [2.0, 2.0], "float64"))
    with pytest.raises(ValueError, match=r"fits neither"):
        cross_entropy_error(y, backend.asarray(np.array([1, 2, 3])))
    with pytest.raises(ValueError, match="shape"):
        sum_squared_error(y, arr(backend, T_ONE_HOT, "float64"))
