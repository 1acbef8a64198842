"""The book's `common.gradient`: the numerical gradient by central differences (h = 1e-4)."""
import numpy as np

from xpnet.nn import central_differences


def numerical_gradient(f, x):
    """∂f/∂x at the NumPy array `x`, perturbing `x` in place one element at a time and restoring
    it, as the book does: so `f` may ignore its argument and read `x` from elsewhere (the book's
    `lambda W: net.loss(x, t)`, the net holding W). Returns a NumPy array shaped like `x`.

    `x` is the script's host array (the served nets' params are NumPy on every backend), so the
    perturbation is NumPy's whatever the backend; `f` computes on the backend. A list or a
    read-only array is differentiated as a copy (then `f` must use its argument)."""
    if not (isinstance(x, np.ndarray) and x.flags.writeable):
        x = np.array(x, dtype=np.float64 if np.asarray(x).dtype.kind in "biu" else None)
    return central_differences.numerical_gradient(f, x)
