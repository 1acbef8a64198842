"""The book's `common.functions`: activations and losses, computed on the run's backend.

Each takes what the book's takes (NumPy arrays, lists, Python numbers) and hands back what the
book's hands back: host NumPy arrays (writable) of the book's dtype, NumPy scalars for losses.
The work is `xpnet.nn.functions` on `current().backend`, read at every call.
"""
import numpy as np

from xpnet.book.arrays import float_dtype, to_device, to_host
from xpnet.book.session import current
from xpnet.nn import functions as fn

__all__ = ["identity_function", "step_function", "sigmoid", "sigmoid_grad", "relu", "relu_grad",
           "softmax", "mean_squared_error", "sum_squared_error", "cross_entropy_error",
           "softmax_loss"]


def identity_function(x):
    """`x` itself, as the book returns it."""
    return x


def step_function(x):
    """1 where x > 0 else 0, as the book's `np.array(x > 0, dtype=int)` (an int array)."""
    backend = current().backend
    return backend.to_numpy(fn.step_function(to_device(backend, x))).astype(int)


def sigmoid(x):
    """1 / (1 + exp(-x)) elementwise."""
    backend = current().backend
    return to_host(backend, fn.sigmoid(to_device(backend, x, floating=True)))


def sigmoid_grad(x):
    """The derivative of the sigmoid at x: (1 - sigmoid(x)) · sigmoid(x)."""
    backend = current().backend
    s = fn.sigmoid(to_device(backend, x, floating=True))
    return to_host(backend, (1.0 - s) * s)


def relu(x):
    """max(0, x) elementwise, in x's dtype. `maximum` rather than x·(x > 0), so negatives give
    0.0 as the book's `np.maximum(0, x)` does, not -0.0."""
    backend = current().backend
    x = to_device(backend, x)
    return to_host(backend, backend.xp.maximum(x, backend.xp.zeros_like(x)))


def relu_grad(x):
    """1.0 where x > 0, else 0.0 (floats)."""
    backend = current().backend
    return to_host(backend, fn.step_function(to_device(backend, x, floating=True)))


def softmax(x):
    """Softmax of a vector, or of each row of a batch (max-shifted, so it never overflows)."""
    backend = current().backend
    return to_host(backend, fn.softmax(to_device(backend, x, floating=True)))


def mean_squared_error(y, t):
    """½ Σ (y - t)² over every element (the book's name; it does not average)."""
    backend = current().backend
    dtype = float_dtype(y, t)
    return to_host(backend, fn.sum_squared_error(to_device(backend, y, dtype=dtype),
                                               to_device(backend, t, dtype=dtype)))


#: The name the book's chapter 4 text gives the same loss.
sum_squared_error = mean_squared_error


def _labels(backend, t, y):
    """t on the backend as integer labels: one-hot rows (as many entries as y) become their
    argmax, as the book's `t.argmax(axis=1)`; labels pass as they are."""
    t = np.asarray(t)
    if t.size == np.size(y):
        return backend.xp.argmax(to_device(backend, t), axis=-1)
    return to_device(backend, t)


def cross_entropy_error(y, t):
    """-mean over the batch of log(y[label] + 1e-7). y: one sample (1-D) or a batch of rows;
    t: one-hot rows (reduced to their argmax, as the book) or integer labels."""
    backend = current().backend
    labels = _labels(backend, t, y)
    return to_host(backend, fn.cross_entropy_error(to_device(backend, y, floating=True), labels))


def softmax_loss(X, t):
    """cross_entropy_error(softmax(X), t), on the backend without a round trip in between."""
    backend = current().backend
    labels = _labels(backend, t, X)
    return to_host(backend, fn.cross_entropy_error(fn.softmax(to_device(backend, X, floating=True)),
                                                 labels))
