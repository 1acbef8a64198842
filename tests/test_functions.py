"""The book's chapter 3-4 functions against values computed by hand, on every backend and dtype."""
import math

import numpy as np
import pytest

from tests.conftest import assert_close
from xpnet.backends import backend_of, dtype_name
from xpnet.nn import (
    cross_entropy_error,
    gradient_descent,
    identity_function,
    numerical_diff,
    numerical_gradient,
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


def test_numerical_diff(backend, dtype):
    def f(x):
        return 0.01 * x ** 2 + 0.1 * x  # f'(x) = 0.02x + 0.1

    for x, slope in ((5.0, 0.2), (10.0, 0.3)):
        result = numerical_diff(f, arr(backend, x, dtype))
        assert_close(result, slope, dtype, rtol=NUMERICAL_TOL[dtype], atol=0)


def test_numerical_gradient(backend, dtype):
    xp = backend.xp

    def f(x):
        return xp.sum(x ** 2)

    for point, grad in (([3.0, 4.0], [6.0, 8.0]), ([0.0, 2.0], [0.0, 4.0]), ([3.0, 0.0], [6.0, 0.0])):
        assert_close(numerical_gradient(f, arr(backend, point, dtype)), grad, dtype,
                     rtol=NUMERICAL_TOL[dtype], atol=NUMERICAL_TOL[dtype])
    # Any shape: a 2x3 matrix, where f weights each element differently.
    weights = arr(backend, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype)
    x = arr(backend, np.ones((2, 3)), dtype)
    g = numerical_gradient(lambda w: xp.sum(weights * w ** 2), x)
    assert g.shape == (2, 3) and g.dtype == x.dtype and dtype_name(g.dtype) == dtype
    assert backend_of(g) is backend
    assert_close(g, 2 * np.arange(1, 7).reshape(2, 3), dtype, rtol=NUMERICAL_TOL[dtype], atol=0)
    assert_close(x, np.ones((2, 3)), dtype)  # perturbed, then restored


def test_numerical_gradient_has_the_dtype_of_x_whatever_f_returns(backend):
    """A float32 x whose f returns a float64 (or Python float) value gets a float32 gradient."""
    xp = backend.xp
    x = arr(backend, [1.0, 2.0], "float32")
    for f in (lambda v: xp.astype(xp.sum(v ** 2), xp.float64),
              lambda v: float(backend.to_numpy(xp.sum(v ** 2)))):
        g = numerical_gradient(f, x)
        assert dtype_name(g.dtype) == "float32" and backend_of(g) is backend
        assert_close(g, [2.0, 4.0], "float32", rtol=NUMERICAL_TOL["float32"], atol=0)


def test_numerical_gradient_supports_the_books_closure_on_numpy():
    """The book's `lambda W: net.loss(x, t)` ignores its argument and reads the array it perturbs."""
    w = np.array([1.0, -2.0])
    g = numerical_gradient(lambda _: (w ** 3).sum(), w)
    np.testing.assert_allclose(g, [3.0, 12.0], rtol=1e-7)
    np.testing.assert_array_equal(w, [1.0, -2.0])


def test_numerical_gradient_supports_the_books_closure_where_arrays_are_mutable(backend):
    """The same closure on every backend whose arrays can be changed in place."""
    if not backend.mutable_arrays:
        pytest.skip(f"{backend.name} arrays are immutable: f must use its argument there")
    xp = backend.xp
    w = arr(backend, [1.0, -2.0], "float64")
    g = numerical_gradient(lambda _: xp.sum(w ** 3), w)
    assert_close(g, [3.0, 12.0], rtol=1e-7, atol=0)
    assert_close(w, [1.0, -2.0], rtol=0, atol=0)


def test_numerical_gradient_needs_floats(backend):
    xp = backend.xp
    with pytest.raises(TypeError, match="floating-point"):
        numerical_gradient(lambda x: xp.sum(x ** 2), backend.asarray(np.array([3, 4])))


def test_gradient_descent_finds_the_minimum(backend, dtype):
    xp = backend.xp

    def f(v):
        return xp.sum(v ** 2)

    init = arr(backend, [-3.0, 4.0], dtype)
    x = gradient_descent(f, init, lr=0.1, step_num=100)
    assert backend_of(x) is backend and dtype_name(x.dtype) == dtype
    assert_close(x, [0.0, 0.0], dtype, atol=1e-4)
    assert_close(init, [-3.0, 4.0], dtype)  # the starting point is not consumed
    # Too large a learning rate diverges, too small barely moves (the book's two warnings).
    far = gradient_descent(f, init, lr=10.0, step_num=100)
    # (float32 stalls there once x + h rounds back to x)
    assert float(np.max(np.abs(backend.to_numpy(far)))) > 1e3
    slow = gradient_descent(f, init, lr=1e-10, step_num=100)
    assert_close(slow, [-3.0, 4.0], dtype, rtol=1e-5)
