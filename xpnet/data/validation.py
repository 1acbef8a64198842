"""Checks of the data a classifier is given (images and labels), made once where it enters
training or a net, so bad data fails with one sentence naming it instead of training on garbage
(or, on JAX, on labels the gather would clamp silently)."""
import numpy as np

from xpnet.backends import backend_of, dtype_name, namespace_of
from xpnet.errors import DataError


def check_classification_data(x, t, input_shape, num_classes, name):
    """Raise DataError unless x (N, *input_shape) and t (labels or one-hot) fit a classifier;
    `input_shape` is a tuple ((C, H, W) for a conv net) or the number of features.

    Host or device arrays alike: the checks run where the data is, and only their verdicts (a
    few scalars, once per run) come to the host."""
    x, t = (a if hasattr(a, "shape") else np.asarray(a) for a in (x, t))  # lists too
    xp = namespace_of(x)
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    if tuple(x.shape[1:]) != shape:
        want = ", ".join(["N", *map(str, shape)])
        raise DataError(f"{name}: images must have shape ({want}), got {tuple(x.shape)}; load "
                        f"them with flatten={len(shape) == 1}")
    if xp.isdtype(x.dtype, "real floating") and x.shape[0] and not _value(xp.all(xp.isfinite(x))):
        raise DataError(f"{name}: images contain NaN or infinite values")
    check_labels(x, t, num_classes, name)


def check_labels(x, t, num_classes, name):
    """Raise DataError unless t holds one label in 0..num_classes-1 (or one one-hot row) per
    sample of the non-empty batch x. On JAX an out-of-range label would be clamped silently by
    the gather, so this runs before the data meets the net: on the host for host arrays."""
    x, t = (a if hasattr(a, "shape") else np.asarray(a) for a in (x, t))
    if not x.shape or x.shape[0] == 0:
        raise DataError(f"{name}: no samples (x has shape {tuple(x.shape)})")
    if tuple(t.shape[:1]) != tuple(x.shape[:1]):
        raise DataError(f"{name}: {x.shape[0]} samples but {t.shape[0] if t.ndim else 0} labels")
    xp = namespace_of(t)
    if t.ndim == 1:
        if not xp.isdtype(t.dtype, "integral"):
            raise DataError(f"{name}: labels must be integers, got dtype {dtype_name(t.dtype)}")
        low, high = _value(xp.min(t)), _value(xp.max(t))
        if low < 0 or high >= num_classes:
            raise DataError(f"{name}: labels must lie in 0..{num_classes - 1}, found {low}..{high}")
    elif tuple(t.shape) != (x.shape[0], num_classes):
        raise DataError(f"{name}: one-hot labels must have shape {(x.shape[0], num_classes)}, "
                        f"got {tuple(t.shape)}")


def _value(scalar):
    """A 0-d array of any backend as a Python number (a device sync: verdicts only)."""
    return backend_of(scalar).to_numpy(scalar).item()
