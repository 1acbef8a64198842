"""Backend registry: choose NumPy, JAX or CuPy by name, by argument or by `XPNET_BACKEND`.

    >>> import xpnet
    >>> be = xpnet.get_backend("numpy")
    >>> be.xp.zeros(3)
    array([0., 0., 0.])

Asking for an unknown or unusable backend raises `BackendError`; there is no silent fallback.
"""
import importlib
import os

import numpy as np

from xpnet.backends.base import Backend
from xpnet.errors import BackendError

ENV_VAR = "XPNET_BACKEND"
DEFAULT_BACKEND = "numpy"
BACKEND_NAMES = ("numpy", "jax", "cupy")

_created = {}
_probed = {}
_by_type = {}  # array type -> its backend, filled by backend_of


def _module(name):
    return importlib.import_module(f"xpnet.backends.{name}_backend")


def _probe(name):
    if name not in _probed:
        _probed[name] = _module(name).probe()
    return _probed[name]


def available_backends():
    """Name -> (available, reason) for every backend xpnet knows, probing each once per process."""
    return {name: _probe(name) for name in BACKEND_NAMES}


def get_backend(name=None):
    """The backend called `name` (default: `$XPNET_BACKEND`, else numpy); a Backend passes through."""
    if isinstance(name, Backend):
        return name
    if name is None:
        name = os.environ.get(ENV_VAR) or DEFAULT_BACKEND
    name = str(name).strip().lower()
    if name not in BACKEND_NAMES:
        raise BackendError(f"unknown backend {name!r}; xpnet has {_summary()}")
    if name not in _created:
        ok, reason = _probe(name)
        if not ok:
            raise BackendError(f"backend {name!r} is not usable here: {reason}; usable now: {_usable()}")
        _created[name] = _module(name).create()
    return _created[name]


def backend_of(x):
    """The backend whose arrays look like `x`: JAX arrays and tracers, CuPy arrays, else NumPy."""
    kind = type(x)
    backend = _by_type.get(kind)
    if backend is None:  # once per array type: this runs for every array operation of a step
        library = kind.__module__.partition(".")[0]
        name = {"jax": "jax", "jaxlib": "jax", "cupy": "cupy"}.get(library, "numpy")
        backend = _by_type[kind] = get_backend(name)
    return backend


def namespace_of(x):
    """The array namespace `x` belongs to (numpy for Python values).

    This is how the book's functions (`sigmoid(x)`, `softmax(x)`, ...) follow their input arrays
    without being told a backend.
    """
    return backend_of(x).xp


def _summary():
    return ", ".join(f"{n} ({'available' if ok else 'unavailable: ' + why})"
                     for n, (ok, why) in available_backends().items())


def _usable():
    return ", ".join(n for n, (ok, _) in available_backends().items() if ok)


def is_floating(dtype):
    """True for real floating-point dtypes of any backend (they are all NumPy dtypes underneath)."""
    return np.issubdtype(np.dtype(dtype), np.floating)


def is_integer(dtype):
    """True for signed or unsigned integer dtypes of any backend."""
    return np.issubdtype(np.dtype(dtype), np.integer)


__all__ = ["Backend", "BackendError", "available_backends", "get_backend", "namespace_of",
           "backend_of", "is_floating", "is_integer", "ENV_VAR", "BACKEND_NAMES", "DEFAULT_BACKEND"]
