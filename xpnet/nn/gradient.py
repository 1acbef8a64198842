"""The book's chapter-4 numerical differentiation: central differences with h = 1e-4."""
import itertools

from xpnet.backends import backend_of, is_floating

#: The book's step for central differences: small, but not so small that rounding dominates.
H = 1e-4


def numerical_diff(f, x, h=H):
    """(f(x + h) - f(x - h)) / 2h: the derivative of a scalar function at `x`."""
    return (f(x + h) - f(x - h)) / (2 * h)


def numerical_gradient(f, x, h=H):
    """∂f/∂x for a scalar function `f` of an array `x` of any shape, one element at a time.

    On NumPy and CuPy this perturbs `x` in place and restores it, exactly as the book does, so an
    `f` that ignores its argument and reads `x` from elsewhere (the book's `lambda W: net.loss(x, t)`)
    still works. JAX arrays cannot be changed in place: there `f` is called with a perturbed copy
    and must use its argument.
    """
    backend = backend_of(x)
    xp = backend.xp
    x = xp.asarray(x)
    if not is_floating(x.dtype):
        raise TypeError(f"numerical_gradient needs a floating-point x, got dtype {x.dtype}; "
                        "write e.g. np.array([3.0, 4.0]) instead of np.array([3, 4])")
    if backend.mutable_arrays and getattr(x, "flags", None) is not None and _writeable(x):
        return _gradient_in_place(f, x, h, xp)
    return _gradient_functional(f, x, h, xp)


def _writeable(x):
    return getattr(x.flags, "writeable", True)


def _gradient_in_place(f, x, h, xp):
    grad = xp.zeros_like(x)
    for idx in itertools.product(*(range(n) for n in x.shape)):
        original = x[idx].copy()
        x[idx] = original + h
        f_plus = f(x)
        x[idx] = original - h
        f_minus = f(x)
        x[idx] = original
        grad[idx] = (f_plus - f_minus) / (2 * h)
    return grad


def _gradient_functional(f, x, h, xp):
    flat = x.reshape(-1)
    positions = xp.arange(flat.size)
    grad = []
    for i in range(flat.size):
        step = xp.where(positions == i, xp.asarray(h, dtype=x.dtype), xp.asarray(0, dtype=x.dtype))
        f_plus = f((flat + step).reshape(x.shape))
        f_minus = f((flat - step).reshape(x.shape))
        grad.append((f_plus - f_minus) / (2 * h))
    return xp.asarray(xp.stack(grad), dtype=x.dtype).reshape(x.shape)


def gradient_descent(f, init_x, lr=0.01, step_num=100):
    """Minimise `f` from `init_x` by `step_num` steps of x ← x - lr·∇f(x); returns the final x.

    Unlike the book, `init_x` itself is left unchanged.
    """
    x = backend_of(init_x).xp.array(init_x, copy=True)
    for _ in range(step_num):
        x = x - lr * numerical_gradient(f, x)
    return x

