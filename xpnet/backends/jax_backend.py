"""JAX: the same nn code, traced and compiled by `jax.jit`, on the CPU or a GPU."""
import os

import numpy as np

from xpnet.backends.base import Backend
from xpnet.errors import BackendError


class JaxBackend(Backend):
    name = "jax"
    mutable_arrays = False
    compiles = True
    index_dtype = np.dtype(np.int32)

    def __init__(self):
        import jax
        import jax.numpy as jnp

        # float64 must be available for gradient checks, so x64 is switched on unless the user
        # turned it off with JAX_ENABLE_X64=0. float32 stays xpnet's default because xpnet always
        # passes explicit dtypes (and Python scalars are weakly typed under jit).
        if os.environ.get("JAX_ENABLE_X64") is None:
            jax.config.update("jax_enable_x64", True)
        self._jax = jax
        super().__init__(jnp)

    def asarray(self, host, dtype=None):
        if dtype is not None and np.dtype(dtype) == np.float64 and not self._jax.config.jax_enable_x64:
            raise BackendError("float64 arrays on JAX need 64-bit mode, which JAX_ENABLE_X64 "
                               "turned off; unset it or use float32")
        return self._jax.device_put(np.asarray(host, dtype=dtype))

    def jit(self, fn, **options):
        return self._jax.jit(fn, **options)

    def compile(self, jitted, *args):
        return jitted.lower(*args).compile()

    def sync(self, tree):
        return self._jax.block_until_ready(tree)

    def scatter_add(self, target, indices, values):
        return target.at[indices].add(values)

    def vmap(self, fn, in_axes=0):
        """`fn` mapped over a leading axis of its arguments (None: not mapped), vectorized."""
        return self._jax.vmap(fn, in_axes=in_axes)

    def scan(self, fn, carry, length):
        return self._jax.lax.scan(fn, carry, self.xp.arange(length))

    def key(self, seed):
        return self._jax.random.PRNGKey(int(seed))

    def fold_in(self, key, data):
        return self._jax.random.fold_in(key, data)

    def uniform(self, key, shape, dtype):
        return self._jax.random.uniform(key, shape, dtype=dtype)

    def devices(self):
        return [f"{d.platform}:{d.id} ({d.device_kind})" for d in self._jax.devices()]

    def versions(self):
        import jaxlib

        return {"numpy": np.__version__, "jax": self._jax.__version__, "jaxlib": jaxlib.__version__}


def probe():
    try:
        import jax
    except ImportError as exc:
        return False, f"jax is not installed ({exc}); install it with: pip install 'xpnet[jax]'"
    platforms = sorted({d.platform for d in jax.devices()})
    return True, f"jax {jax.__version__} on {', '.join(platforms)}"


def create():
    return JaxBackend()
