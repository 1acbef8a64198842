"""Backend registry: choose NumPy, JAX, PyTorch, CuPy (or array-api-strict, for tests) by name,
by argument or by `XPNET_BACKEND`, and a device by argument or `XPNET_DEVICE`.

    >>> import xpnet
    >>> be = xpnet.get_backend("numpy")
    >>> be.xp.zeros(3)
    array([0., 0., 0.])

This package is the only place that knows one array library from another. Asking for an unknown
or unusable backend or device raises `BackendError`; there is no silent fallback.
"""
from xpnet.backends.base import Backend, device_of
from xpnet.backends.registry import (BACKEND_NAMES, DEFAULT_BACKEND, DEVICE_VAR, ENV_VAR,
                                     available_backends, backend_of, dtype_name, get_backend,
                                     namespace_of)
from xpnet.errors import BackendError

__all__ = ["Backend", "BackendError", "available_backends", "get_backend", "namespace_of",
           "backend_of", "device_of", "dtype_name", "ENV_VAR", "DEVICE_VAR", "BACKEND_NAMES",
           "DEFAULT_BACKEND"]
