"""The backend registry: a backend by name (argument or `XPNET_BACKEND`) on a device (argument
or `XPNET_DEVICE`), and the backend, namespace and dtype name of any array."""
import importlib
import os

from xpnet.errors import BackendError

ENV_VAR = "XPNET_BACKEND"
DEVICE_VAR = "XPNET_DEVICE"
DEFAULT_BACKEND = "numpy"
BACKEND_NAMES = ("numpy", "jax", "torch", "cupy", "array-api-strict")

_created = {}   # (name, device as asked) -> Backend
_probed = {}
_by_type = {}   # array type -> (backend name, its device_name_of), filled by backend_of
_xp_by_type = {}  # array type -> its namespace, filled by namespace_of
_libraries = None


def _module(name):
    return importlib.import_module(f"xpnet.backends.{name.replace('-', '_')}_backend")


def _probe(name):
    if name not in _probed:
        _probed[name] = _module(name).probe()
    return _probed[name]


def available_backends():
    """Name -> (available, reason) for every backend xpnet knows, probing each once per process."""
    return {name: _probe(name) for name in BACKEND_NAMES}


def get_backend(name=None, device=None):
    """The backend called `name` (default: `$XPNET_BACKEND`, else numpy) on `device` (default:
    `$XPNET_DEVICE`, else the library's default: a GPU where JAX or torch has one). A Backend
    passes through.

    Devices: numpy 'cpu'; jax 'cpu', 'gpu', 'gpu:N'; torch 'cpu', 'cuda', 'cuda:N', 'mps';
    cupy 'cuda:N'; array-api-strict 'CPU_DEVICE', 'device1' (its default), 'device2'.
    """
    if not (name is None or isinstance(name, str)) and hasattr(name, "xp"):
        return name  # a Backend already
    if name is None:
        name = os.environ.get(ENV_VAR) or DEFAULT_BACKEND
    if device is None:
        device = os.environ.get(DEVICE_VAR) or None
    found = _created.get((name, device))
    if found is not None:
        return found
    key = str(name).strip().lower()
    if key not in BACKEND_NAMES:
        raise BackendError(f"unknown backend {name!r}; xpnet has {_summary()}")
    ok, reason = _probe(key)
    if not ok:
        raise BackendError(f"backend {key!r} is not usable here: {reason}; usable now: {_usable()}")
    module = _module(key)
    canonical = (key, module.normalize_device(device))
    if canonical not in _created:
        _created[canonical] = module.create(canonical[1])
    _created[(name, device)] = _created[canonical]
    return _created[canonical]


def backend_of(x):
    """The backend of array `x` (its library and device); NumPy for Python values."""
    kind = type(x)
    found = _by_type.get(kind)
    if found is None:  # once per array type: this runs for many array operations of a step
        global _libraries
        if _libraries is None:
            _libraries = {lib: n for n in BACKEND_NAMES for lib in _module(n).LIBRARIES}
        name = _libraries.get(kind.__module__.partition(".")[0], "numpy")
        found = _by_type[kind] = (name, _module(name).device_name_of)
    name, device_name_of = found
    return get_backend(name, device_name_of(x))


def namespace_of(x):
    """The Array API namespace `x` belongs to (NumPy's for Python values).

    This is how the book's functions (`sigmoid(x)`, `softmax(x)`, ...) follow their input arrays
    without being told a backend. One dict lookup: the namespace of a library is the same on
    every device, and this runs for most array operations of a step.
    """
    xp = _xp_by_type.get(type(x))
    if xp is None:
        xp = _xp_by_type[type(x)] = backend_of(x).xp
    return xp


def dtype_name(dtype):
    """The standard name ("float32", "int64", ...) of any library's dtype (or NumPy scalar type)."""
    if isinstance(dtype, type):  # np.float32, jnp.float32
        import numpy as np

        return np.dtype(dtype).name
    return str(dtype).rpartition(".")[2]


def _summary():
    return ", ".join(f"{n} ({'available' if ok else 'unavailable: ' + why})"
                     for n, (ok, why) in available_backends().items())


def _usable():
    return ", ".join(n for n, (ok, _) in available_backends().items() if ok)
