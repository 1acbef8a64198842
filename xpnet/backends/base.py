"""What every backend provides; the NumPy behaviour is the default the others override."""
import numpy as np


class Backend:
    """An array library plus the few things the nn core needs beyond its namespace `xp`.

    nn code receives a backend (or just its `xp`) and never imports numpy, cupy or jax itself,
    so the same functions run eagerly on NumPy/CuPy and are traced whole by `jax.jit`.
    """

    name = "numpy"
    #: True where arrays may be changed in place (NumPy, CuPy); JAX arrays are immutable.
    mutable_arrays = True
    #: True where `jit` compiles (JAX): the first call of a jitted function pays for compilation.
    compiles = False

    def __init__(self, xp):
        self.xp = xp

    def asarray(self, host, dtype=None):
        """Put a host (NumPy) array on this backend's device, converting to `dtype` if given."""
        return self.xp.asarray(host, dtype=dtype)

    def to_numpy(self, array):
        """Bring an array of this backend back to the host as a NumPy array."""
        return np.asarray(array)

    def jit(self, fn, **options):
        """Compile `fn` where the backend can (JAX); elsewhere run it eagerly as it is."""
        return fn

    def sync(self, tree):
        """Wait until every array in `tree` is computed, so a clock stopped after it is honest."""
        return tree

    def scatter_add(self, target, indices, values):
        """A copy of `target` with `values` added at row `indices` (repeats accumulate)."""
        out = self.xp.array(target, copy=True)
        np.add.at(out, indices, values)
        return out

    def devices(self):
        """Human-readable names of the devices this backend computes on."""
        return ["cpu"]

    def versions(self):
        """Library name -> version string, for `xpnet info` and benchmark reports."""
        return {"numpy": np.__version__}

    def __repr__(self):
        return f"<xpnet backend {self.name!r} on {', '.join(self.devices())}>"
