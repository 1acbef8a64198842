"""PyTorch: the portable core on eager tensors, on the CPU, a CUDA GPU or Apple's MPS.

`jit` is the identity; XPNET_TORCH_COMPILE=1 makes it `torch.compile` (opt-in: compiling
takes long, needs a C++ compiler on the CPU, and pays off only for long runs).
"""
import os

import numpy as np

from xpnet.backends.base import Backend
from xpnet.errors import BackendError

LIBRARIES = ("torch",)
COMPILE_VAR = "XPNET_TORCH_COMPILE"


class TorchBackend(Backend):
    name = "torch"
    native_conv = "torch.nn.functional.conv2d"
    #: oneDNN on the CPU (a few times faster than im2col for DeepConvNet's layers), cuDNN on CUDA
    prefers_native_conv = True

    def __init__(self, device):
        import array_api_compat.torch as xp
        import torch

        self._torch = torch
        self.array_type = torch.Tensor
        self.compiles = os.environ.get(COMPILE_VAR) == "1"
        super().__init__(xp, device=torch.device(device), device_name=device)
        self.shares_host_memory = self.device.type == "cpu"

    def _from_host(self, host, dtype):
        host = np.asarray(host)
        if not host.flags.writeable:  # torch warns about read-only buffers; it copies anyway
            host = host.copy()
        return self._torch.as_tensor(host, dtype=dtype, device=self.device)

    def to_numpy(self, array):
        return array.detach().cpu().numpy()

    def jit(self, fn, **options):
        return self._torch.compile(fn, **options) if self.compiles else fn

    def sync(self, tree):
        if self.device.type == "cuda":
            self._torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            self._torch.mps.synchronize()
        return tree

    def scatter_add(self, target, indices, values):
        return target.index_add(0, indices, values)

    def conv2d(self, x, w, b, stride, pad):
        return self._torch.nn.functional.conv2d(x, w, b, stride=stride, padding=pad)

    def conv2d_backward(self, x, w, dout, stride, pad, need_dx=True):
        """aten's convolution_backward (what torch.nn.grad.conv2d_input and conv2d_weight call):
        one call for dx, dw and db, dx skipped without `need_dx`."""
        dx, dw, db = self._torch.ops.aten.convolution_backward(
            dout, x, w, [w.shape[0]], [stride, stride], [pad, pad], [1, 1], False, [0, 0], 1,
            [need_dx, True, True])
        return dx, dw, db

    def devices(self):
        torch = self._torch
        found = ["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})"
                           for i in range(torch.cuda.device_count())]
        if torch.backends.mps.is_available():
            found.append("mps")
        own = [d for d in found if d.split(" ")[0] == self.device_name]
        return own + [d for d in found if d not in own]

    def versions(self):
        return {"numpy": np.__version__, "torch": self._torch.__version__}


def probe():
    try:
        import torch
    except ImportError as exc:
        return False, f"torch is not installed ({exc}); install it with: pip install 'xpnet[torch]'"
    where = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + \
        (["mps"] if torch.backends.mps.is_available() else [])
    return True, f"torch {torch.__version__} on {', '.join(where)}"


def device_name_of(array):
    return str(array.device)


def normalize_device(device):
    """None: CUDA if usable, else MPS, else the CPU; 'cuda' means 'cuda:0'."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else \
            "mps" if torch.backends.mps.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise BackendError(f"torch devices are 'cpu', 'cuda', 'cuda:N' or 'mps'; got {device!r}") from None
    if parsed.type == "cuda" and parsed.index is None:
        parsed = torch.device("cuda", 0)
    return str(parsed)


def create(device):
    import torch

    kind = torch.device(device).type
    usable = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not usable.get(kind, False):
        raise BackendError(f"torch cannot use device {device!r} here; usable: "
                           f"{', '.join(k for k, ok in usable.items() if ok)}")
    if kind == "cuda" and torch.device(device).index >= torch.cuda.device_count():
        raise BackendError(f"torch: no device {device}; this machine has "
                           f"{torch.cuda.device_count()} CUDA device(s)")
    return TorchBackend(device)
