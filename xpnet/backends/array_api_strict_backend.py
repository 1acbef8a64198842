"""array-api-strict: the standard's reference namespace, as a test backend.

It implements the Array API standard and nothing more, and on its `device1` refuses to combine
arrays of two devices: code that runs here is portable, and never mixes host and device arrays
(the CPU stand-in for a GPU). The API version is pinned to the one xpnet's core targets.
"""
import numpy as np

from xpnet.backends.base import Backend
from xpnet.errors import BackendError

LIBRARIES = ("array_api_strict",)
API_VERSION = "2023.12"
DEFAULT_DEVICE = "device1"


class StrictBackend(Backend):
    name = "array-api-strict"

    def __init__(self, device):
        import array_api_strict as xp

        xp.set_array_api_strict_flags(api_version=API_VERSION)
        self.array_type = type(xp.asarray(0))
        super().__init__(xp, device=xp.Device(device), device_name=device)

    def to_numpy(self, array):
        return np.asarray(self.xp.asarray(array, device=self.xp.Device("CPU_DEVICE")))

    def devices(self):
        return _device_names()

    def versions(self):
        import array_api_strict

        return {"numpy": np.__version__, "array-api-strict": array_api_strict.__version__,
                "array API": API_VERSION}


def probe():
    try:
        import array_api_strict
    except ImportError as exc:
        return False, (f"array-api-strict is not installed ({exc}); it is a test backend: "
                       "pip install array-api-strict")
    return True, f"array-api-strict {array_api_strict.__version__} (a test backend)"


def device_name_of(array):
    return _name(array.device)


def _name(device):
    """'device1' of array_api_strict.Device('device1')."""
    return repr(device).split("'")[1]


def _device_names():
    import array_api_strict as xp

    return [_name(d) for d in xp.__array_namespace_info__().devices()]


def normalize_device(device):
    device = DEFAULT_DEVICE if device is None else str(device)
    names = _device_names()
    if device not in names:
        raise BackendError(f"array-api-strict devices are {', '.join(names)}; got {device!r}")
    return device


def create(device):
    return StrictBackend(device)
