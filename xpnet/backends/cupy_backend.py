"""CuPy on an NVIDIA GPU: the portable core, eager, with arrays in GPU memory."""
import numpy as np

from xpnet.backends.base import Backend
from xpnet.errors import BackendError

LIBRARIES = ("cupy",)


class CupyBackend(Backend):
    name = "cupy"
    index_dtype_name = np.dtype(np.intp).name

    def __init__(self, index):
        import array_api_compat.cupy as xp
        import cupy

        self._cupy = cupy
        super().__init__(xp, device=cupy.cuda.Device(index), device_name=f"cuda:{index}")

    def owns(self, array):
        return isinstance(array, self._cupy.ndarray) and array.device.id == self.device.id

    def _from_host(self, host, dtype):
        with self.device:
            return self._cupy.asarray(np.asarray(host, dtype=dtype))

    def to_numpy(self, array):
        return self._cupy.asnumpy(array)

    def sync(self, tree):
        self._cupy.cuda.get_current_stream().synchronize()
        return tree

    def scatter_add(self, target, indices, values):
        import cupyx

        out = target.copy()
        cupyx.scatter_add(out, indices, values)
        return out

    def devices(self):
        runtime = self._cupy.cuda.runtime
        names = []
        for i in range(runtime.getDeviceCount()):
            name = runtime.getDeviceProperties(i)["name"]
            names.append(f"cuda:{i} ({name.decode() if isinstance(name, bytes) else name})")
        return names

    def versions(self):
        return {"numpy": np.__version__, "cupy": self._cupy.__version__,
                "cuda runtime": str(self._cupy.cuda.runtime.runtimeGetVersion())}


def probe():
    try:
        import cupy
    except ImportError as exc:
        return False, (f"cupy is not installed ({exc}); on a CUDA machine install it with "
                       "pip install 'xpnet[cuda12]' or 'xpnet[cuda13]'")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        if count == 0:
            return False, "cupy is installed, but no usable GPU: no CUDA device found"
        # A device can be listed yet unusable (driver too old, no kernel image): run one kernel.
        float((cupy.arange(4, dtype=cupy.float32) * 2).sum())
    except Exception as exc:  # CUDA reports many different error types; all mean "unusable"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return False, f"cupy is installed, but no usable GPU: {first_line}"
    return True, f"cupy {cupy.__version__} on {count} CUDA device(s)"


def device_name_of(array):
    return f"cuda:{array.device.id}"


def normalize_device(device):
    text = "cuda:0" if device in (None, "cuda", "gpu") else str(device)
    kind, _, index = text.partition(":")
    if kind not in ("cuda", "gpu") or not index.isdigit():
        raise BackendError(f"cupy runs on CUDA devices ('cuda' or 'cuda:N'); got device {device!r}")
    return f"cuda:{int(index)}"


def create(device):
    import cupy

    index = int(device.partition(":")[2])
    if index >= cupy.cuda.runtime.getDeviceCount():
        raise BackendError(f"cupy: no device {device}; this machine has "
                           f"{cupy.cuda.runtime.getDeviceCount()} CUDA device(s)")
    return CupyBackend(index)
