"""The book's chapter 3-4 functions: activations, softmax and losses.

Each follows its input: NumPy arrays give NumPy results, JAX arrays (or tracers under `jax.jit`)
give JAX results, CuPy arrays stay on the GPU. Nothing here mutates its arguments.
"""
from xpnet.backends import device_of, namespace_of

#: Added inside the log of the cross-entropy so that log(0) never happens (the book's delta).
CROSS_ENTROPY_DELTA = 1e-7


def _as_array(x):
    """Arrays pass through (untouched: this runs in every step); Python numbers and lists
    become NumPy arrays."""
    return x if hasattr(x, "shape") else namespace_of(x).asarray(x)


def identity_function(x):
    """The output activation of regression: returns `x` unchanged."""
    return x


def step_function(x):
    """1 where x > 0, else 0; same dtype as a floating `x` so it composes with float layers."""
    x = _as_array(x)
    xp = namespace_of(x)
    return xp.astype(x > 0, x.dtype if xp.isdtype(x.dtype, "real floating") else xp.int32)


def sigmoid(x):
    """1 / (1 + exp(-x)), computed as (tanh(x/2) + 1) / 2, which never overflows."""
    x = _as_array(x)
    xp = namespace_of(x)
    return 0.5 * (xp.tanh(0.5 * x) + 1.0)


def relu(x):
    """max(x, 0) elementwise (x times the mask x > 0)."""
    x = _as_array(x)
    return x * namespace_of(x).astype(x > 0, x.dtype)


def softmax(x):
    """Softmax over the last axis (one row per sample), stable: the row max is subtracted first."""
    x = _as_array(x)
    xp = namespace_of(x)
    e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def one_hot(t, num_classes, dtype):
    """Integer labels (any shape) -> one-hot rows of `dtype` with `num_classes` columns."""
    xp = namespace_of(t)
    return xp.astype(xp.arange(num_classes, dtype=t.dtype, device=device_of(t)) == t[..., None], dtype)


def sum_squared_error(y, t):
    """½ Σ (y - t)², summed over every element (the book does not average over the batch)."""
    y, t = _as_array(y), _as_array(t)
    if y.shape != t.shape:
        raise ValueError(f"sum_squared_error: y has shape {y.shape} but t has shape {t.shape}")
    return 0.5 * namespace_of(y).sum((y - t) ** 2)


def cross_entropy_error(y, t):
    """-Σ t·log(y + 1e-7) averaged over the batch.

    `y` holds probabilities, one row per sample (a 1-D `y` is one sample). `t` is either one-hot
    (same shape as `y`) or integer class labels (shape `y.shape[:-1]`).
    """
    y, t = _as_array(y), _as_array(t)
    xp = namespace_of(y)
    if y.ndim == 1:
        y = y[None, :]
        t = t[None, ...]
    if y.ndim != 2:
        raise ValueError(f"cross_entropy_error: y must be 1-D or 2-D (batch, classes), got shape {y.shape}")
    batch_size = y.shape[0]
    if t.shape == y.shape:
        return -xp.sum(t * xp.log(y + CROSS_ENTROPY_DELTA)) / batch_size
    if t.shape == y.shape[:1]:
        if not xp.isdtype(t.dtype, "integral"):
            raise ValueError(f"cross_entropy_error: labels t of shape {t.shape} must be integers, "
                             f"got dtype {t.dtype} (pass one-hot rows of shape {y.shape} otherwise)")
        # each row's probability of its label, picked from the flattened rows
        rows = xp.arange(batch_size, device=device_of(t)) * y.shape[1]
        picked = xp.take(xp.reshape(y, (-1,)), rows + t)
        return -xp.sum(xp.log(picked + CROSS_ENTROPY_DELTA)) / batch_size
    raise ValueError(f"cross_entropy_error: t of shape {t.shape} fits neither one-hot rows {y.shape} "
                     f"nor integer labels {y.shape[:1]}")
