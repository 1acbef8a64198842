"""Arrays across the line between a book script and the backend: what goes to the device
(`to_device`), what comes back as the book's NumPy would hand it (`to_host`), and the dtype the
book's NumPy would compute in (`float_dtype`). Every served module and net goes through these."""
import numpy as np


def to_device(backend, x, floating=False, dtype=None):
    """`x` on the backend in its own dtype (`dtype` if given; ints and bools as float64 with
    `floating`, as NumPy promotes them in the book's float formulas)."""
    host = np.asarray(x)
    if dtype is None and floating and not np.issubdtype(host.dtype, np.floating):
        dtype = np.float64
    if not host.flags.c_contiguous:  # torch takes no negative strides; every backend copies anyway
        host = np.ascontiguousarray(host)
    return backend.asarray(host, dtype)


def to_host(backend, array):
    """What the book's NumPy would hand back: a writable NumPy array, or a NumPy scalar for 0-d."""
    host = backend.to_numpy(array)
    if host.ndim == 0:
        return host[()]
    return host if host.flags.writeable else host.copy()


def float_dtype(*arrays):
    """The dtype the book's NumPy computes `arrays` together in: their promotion, float64 for
    integers and bools (e.g. float32 images times float64 weights give float64). Dtypes
    themselves may be among `arrays` (np.float64: at least float64)."""
    dtype = np.result_type(*(a if isinstance(a, (type, np.dtype)) else np.asarray(a)
                             for a in arrays))
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)
