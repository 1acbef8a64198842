"""Helpers shared by the tests (the backend and dtype fixtures live in the root conftest.py)."""
import numpy as np

from xpnet.backends import backend_of

#: Agreement expected between two computations of the same value, by dtype.
RTOL = {"float32": 1e-5, "float64": 1e-12}
ATOL = {"float32": 1e-6, "float64": 1e-12}


def assert_close(actual, expected, dtype="float64", rtol=None, atol=None):
    """Compare arrays of any backend with NumPy's assertion, at the tolerance of `dtype`."""
    np.testing.assert_allclose(
        _host(actual),
        _host(expected),
        rtol=RTOL[dtype] if rtol is None else rtol,
        atol=ATOL[dtype] if atol is None else atol,
    )


def _host(values):
    """Any backend's array (or a list, number, NumPy array) as float64 NumPy."""
    if hasattr(values, "shape") and not isinstance(values, np.ndarray):
        values = backend_of(values).to_numpy(values)
    return np.asarray(values, dtype=np.float64)
