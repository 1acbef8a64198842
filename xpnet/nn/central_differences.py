"""The book's chapter-4 numerical differentiation: central differences with h = 1e-4."""
import itertools
import math

from xpnet.backends import backend_of, device_of

#: The book's step for central differences: small, but not so small that rounding dominates.
H = 1e-4


def numerical_diff(f, x, h=H):
    """(f(x + h) - f(x - h)) / 2h: the derivative of a scalar function at `x`."""
    return (f(x + h) - f(x - h)) / (2 * h)


def numerical_gradient(f, x, h=H, chunk_size=256):
    """∂f/∂x for a scalar function `f` of an array `x` of any shape, by central differences.

    On NumPy and CuPy this perturbs `x` in place, one element at a time, and restores it, exactly
    as the book does, so an `f` that ignores its argument and reads `x` from elsewhere (the book's
    `lambda W: net.loss(x, t)`) still works. JAX arrays cannot be changed in place: there `f`
    receives perturbed copies and must use its argument; `chunk_size` of them are evaluated at
    once with `jax.vmap` (falling back to one at a time when `f` cannot be traced).
    For a whole network, `net.numerical_gradient(x, t)` is much faster
    (`xpnet.nn.structured_gradient`).
    """
    x = backend_of(x).xp.asarray(x)
    return _gradient_function(f, x, h, chunk_size)(x)


def _gradient_function(f, like, h, chunk_size=256):
    """x -> numerical gradient of f at x, for arrays like `like`; built once, reusable per step."""
    backend = backend_of(like)
    xp = backend.xp
    if not xp.isdtype(like.dtype, "real floating"):
        raise TypeError(f"numerical_gradient needs a floating-point x, got dtype {like.dtype}; "
                        "write e.g. np.array([3.0, 4.0]) instead of np.array([3, 4])")
    if backend.mutable_arrays:
        return lambda x: (_gradient_in_place(f, x, h, xp) if backend.writeable(x)
                          else _gradient_functional(f, x, h, xp))
    if not backend.compiles:
        return lambda x: _gradient_functional(f, x, h, xp)
    vectorized = vmapped_gradient(f, like, h, backend, chunk_size)
    traceable = [True]  # once f fails to trace, later steps go straight to the loop

    def gradient(x):
        if traceable[0]:
            try:
                return vectorized(x)
            except TypeError:  # JAX's errors for untraceable code (float(tracer), ...)
                traceable[0] = False
        return _gradient_functional(f, x, h, xp)

    return gradient


def _gradient_in_place(f, x, h, xp):
    grad = xp.zeros_like(x)
    for idx in itertools.product(*(range(n) for n in x.shape)):
        original = xp.asarray(x[idx], copy=True)
        x[idx] = original + h
        f_plus = f(x)
        x[idx] = original - h
        f_minus = f(x)
        x[idx] = original
        slope = (f_plus - f_minus) / (2 * h)
        if isinstance(slope, type(x)) and slope.dtype != x.dtype:
            # e.g. a float64 loss of a float32 x: the standard allows no downcast on assignment
            slope = xp.astype(slope, x.dtype)
        grad[idx] = slope
    return grad


def vmapped_gradient(f, like, h, backend, chunk_size, n_args=0):
    """(x, *args) -> central differences of f(x, *args) in x, for arrays like `like`:
    `chunk_size` single-entry perturbations at once, one program vmapped and compiled once. The
    `n_args` further arguments are passed, not closed over, so later calls reuse the program."""
    xp = backend.xp
    shape, size = like.shape, math.prod(like.shape)
    chunk = min(chunk_size, size)
    device = device_of(like)

    def one(flat, i, *args):
        plus = f(xp.reshape(backend.scatter_add(flat, i, h), shape), *args)
        minus = f(xp.reshape(backend.scatter_add(flat, i, -h), shape), *args)
        return (plus - minus) / (2 * h)

    many = backend.jit(backend.vmap(one, in_axes=(None, 0) + (None,) * n_args))

    def gradient(x, *args):
        flat = xp.reshape(x, (-1,))
        parts = [many(flat, xp.arange(start, start + chunk, device=device) % size, *args)  # last
                 for start in range(0, size, chunk)]                          # chunk padded, then cut
        return xp.reshape(xp.astype(xp.concat(parts)[:size], x.dtype), shape)

    gradient.program = many  # the compiled program, for inspection
    return gradient


def _gradient_functional(f, x, h, xp):
    flat = xp.reshape(x, (-1,))
    device = device_of(x)
    positions = xp.arange(flat.shape[0], device=device)
    zero = xp.zeros((), dtype=x.dtype, device=device)
    grad = []
    for i in range(flat.shape[0]):
        step = xp.where(positions == i, zero + h, zero)
        f_plus = f(xp.reshape(flat + step, x.shape))
        f_minus = f(xp.reshape(flat - step, x.shape))
        grad.append(xp.asarray((f_plus - f_minus) / (2 * h), dtype=x.dtype, device=device))
    return xp.reshape(xp.stack(grad), x.shape)


def gradient_descent(f, init_x, lr=0.01, step_num=100):
    """Minimise `f` from `init_x` by `step_num` steps of x ← x - lr·∇f(x); returns the final x.

    Unlike the book, `init_x` itself is left unchanged.
    """
    x = backend_of(init_x).xp.asarray(init_x, copy=True)
    gradient = _gradient_function(f, x, H)
    for _ in range(step_num):
        x = x - lr * gradient(x)
    return x

