"""NumPy on the CPU: eager, arrays mutable, host arrays used without a copy."""
import numpy as np

from xpnet.backends.base import Backend
from xpnet.errors import BackendError

LIBRARIES = ("numpy",)


class NumpyBackend(Backend):
    name = "numpy"
    shares_host_memory = True
    #: NumPy gathers with intp indices without converting them first (int32 costs a copy).
    index_dtype_name = np.dtype(np.intp).name

    def __init__(self):
        import array_api_compat.numpy as xp

        super().__init__(xp, device="cpu", device_name="cpu")

    def owns(self, array):
        return isinstance(array, np.ndarray)

    def _from_host(self, host, dtype):
        return np.asarray(host, dtype=dtype)

    def writeable(self, array):
        return array.flags.writeable

    def scatter_add(self, target, indices, values):
        out = np.array(target, copy=True)
        np.add.at(out, indices, values)
        return out


def probe():
    return True, f"numpy {np.__version__} on the CPU"


def device_name_of(array):
    return "cpu"


def normalize_device(device):
    if device not in (None, "cpu"):
        raise BackendError(f"numpy computes on the CPU only; got device {device!r}")
    return "cpu"


def create(device):
    return NumpyBackend()
