"""The book's chapter-4 numerical differentiation (xpnet/nn/central_differences.py): derivatives
and gradients by central differences against values computed by hand, the book's closure that
reads the array it perturbs, and gradient descent."""
import numpy as np
import pytest

from tests.conftest import assert_close
from tests.test_functions import NUMERICAL_TOL, arr
from xpnet.backends import backend_of, dtype_name
from xpnet.nn import gradient_descent, numerical_diff, numerical_gradient


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
