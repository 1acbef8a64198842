"""CuPy on an NVIDIA GPU: the NumPy code, eager, with arrays in GPU memory."""
import numpy as np

from xpnet.backends.base import Backend


class CupyBackend(Backend):
    name = "cupy"

    def __init__(self):
        import cupy

        self._cupy = cupy
        super().__init__(cupy)

    def asarray(self, host, dtype=None):
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

    def uniform(self, key, shape, dtype):
        seed = int(np.random.SeedSequence(np.asarray(key).tolist()).generate_state(1, np.uint64)[0])
        return self._cupy.random.default_rng(seed).random(shape, dtype=np.dtype(dtype))

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


def create():
    return CupyBackend()
