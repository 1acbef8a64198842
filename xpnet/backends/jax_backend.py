"""JAX: the same nn code, traced and compiled by `jax.jit`, on the CPU or a GPU."""
import os

import numpy as np

from xpnet.backends.base import Backend
from xpnet.errors import BackendError

LIBRARIES = ("jax", "jaxlib")


class JaxBackend(Backend):
    name = "jax"
    mutable_arrays = False
    compiles = True
    vectorizes = True
    autodiff = "jax.grad"
    index_dtype_name = "int32"
    native_conv = "jax.lax.conv_general_dilated"

    def __init__(self, device):
        import jax
        import jax.numpy as jnp

        # float64 must be available for gradient checks, so x64 is switched on unless the user
        # turned it off with JAX_ENABLE_X64=0. float32 stays xpnet's default because xpnet always
        # passes explicit dtypes (and Python scalars are weakly typed under jit).
        if os.environ.get("JAX_ENABLE_X64") is None:
            jax.config.update("jax_enable_x64", True)
        self._jax = jax
        # XLA's convolutions on the CPU are slower than im2col + matmul for the book's nets (the
        # gradient ones several times: 11 and 22 ms against 1 to 7 for SimpleConvNet's layer);
        # on GPUs they are cuDNN's. So the native path is the default off the CPU only.
        self.prefers_native_conv = device.platform != "cpu"
        super().__init__(jnp, device=device, device_name=f"{device.platform}:{device.id}")

    def owns(self, array):
        return isinstance(array, self._jax.Array)  # tracers included

    def _from_host(self, host, dtype):
        host = np.asarray(host, dtype=None if dtype is None else np.dtype(dtype))
        if host.dtype == np.float64 and not self._jax.config.jax_enable_x64:
            raise BackendError("float64 arrays on JAX need 64-bit mode, which JAX_ENABLE_X64 "
                               "turned off; unset it or use float32")
        return self._jax.device_put(host, self.device)

    def to_numpy(self, array):
        return np.asarray(self._jax.device_get(array))  # explicit: allowed by transfer guards

    def jit(self, fn, **options):
        return self._jax.jit(fn, **options)

    def compile(self, jitted, *args):
        return jitted.lower(*args).compile()

    def grad(self, fn):
        return self._jax.grad(fn)

    def sync(self, tree):
        return self._jax.block_until_ready(tree)

    def tree_map(self, fn, tree, *rest):
        return self._jax.tree_util.tree_map(fn, tree, *rest)

    def vmap(self, fn, in_axes=0):
        return self._jax.vmap(fn, in_axes=in_axes)

    def scan(self, fn, carry, length):
        return self._jax.lax.scan(fn, carry, self.xp.arange(length))

    def scatter_add(self, target, indices, values):
        return target.at[indices].add(values)

    def conv2d(self, x, w, b, stride, pad):
        return _conv(self._jax, x, w, stride, pad) + b[None, :, None, None]

    def conv2d_backward(self, x, w, dout, stride, pad, need_dx=True):
        """The two transposes of the convolution, linear in x and in w (XLA's own transposed
        convolutions; no forward pass is recomputed). Traceable: works under jit and vmap."""
        jax = self._jax
        dw, = jax.linear_transpose(lambda w_: _conv(jax, x, w_, stride, pad), w)(dout)
        dx = jax.linear_transpose(lambda x_: _conv(jax, x_, w, stride, pad), x)(dout)[0] \
            if need_dx else None
        return dx, dw, self.xp.sum(dout, axis=(0, 2, 3))

    def key(self, seed):
        return self._jax.device_put(self._jax.random.PRNGKey(int(seed)), self.device)

    def fold_in(self, key, data):
        return self._jax.random.fold_in(key, data)

    def uniform(self, key, shape, dtype):
        return self._jax.random.uniform(key, shape, dtype=self.dtype(dtype))

    def devices(self):
        found = [self.device] + [d for d in self._jax.devices() if d != self.device]
        return [f"{d.platform}:{d.id} ({d.device_kind})" for d in found]

    def versions(self):
        import jaxlib

        return {"numpy": np.__version__, "jax": self._jax.__version__, "jaxlib": jaxlib.__version__}


def _conv(jax, x, w, stride, pad):
    """Correlation of NCHW images with OIHW filters, as the book's Convolution (no bias)."""
    return jax.lax.conv_general_dilated(x, w, (stride, stride), ((pad, pad), (pad, pad)),
                                        dimension_numbers=("NCHW", "OIHW", "NCHW"))


def probe():
    try:
        import jax
    except ImportError as exc:
        return False, f"jax is not installed ({exc}); install it with: pip install 'xpnet[jax]'"
    except ValueError as exc:  # a bad JAX_* variable, e.g. JAX_ENABLE_X64=garbage
        return False, f"jax cannot start: {exc}"
    try:
        platforms = sorted({d.platform for d in jax.devices()})
    except (RuntimeError, AssertionError) as exc:  # JAX_PLATFORMS names a platform this machine
        # lacks (RuntimeError), or one whose plugin is missing (JAX 0.10 asserts)
        why = str(exc).splitlines()[0] if str(exc) else \
            f"JAX_PLATFORMS={os.environ.get('JAX_PLATFORMS', '')!r} names a platform it cannot start here"
        return False, f"jax is installed, but has no usable device: {why}"
    return True, f"jax {jax.__version__} on {', '.join(platforms)}"


def device_name_of(array):
    """'cpu:0', 'gpu:1', ...: the array's device; JAX's default one for a tracer under jit."""
    import jax

    device = getattr(array, "device", None)
    if not isinstance(device, jax.Device):
        device = jax.devices()[0]
    return f"{device.platform}:{device.id}"


def normalize_device(device):
    """None (JAX's default device), 'cpu', 'gpu'/'cuda' or 'gpu:N'."""
    if device is None:
        import jax

        default = jax.devices()[0]
        return f"{default.platform}:{default.id}"
    kind, _, index = str(device).lower().partition(":")
    kind = {"cuda": "gpu"}.get(kind, kind)
    if kind not in ("cpu", "gpu", "tpu") or (index and not index.isdigit()):
        raise BackendError(f"jax devices are 'cpu', 'gpu' or 'gpu:N'; got {device!r}")
    return f"{kind}:{int(index or 0)}"


def create(device):
    import jax

    kind, _, index = device.partition(":")
    try:
        found = jax.devices(kind)
    except RuntimeError:
        found = []
    if int(index) >= len(found):
        have = ", ".join(f"{d.platform}:{d.id}" for d in jax.devices())
        raise BackendError(f"jax has no device {device}; it has {have}")
    return JaxBackend(found[int(index)])
