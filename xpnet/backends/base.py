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
    #: dtype of index arrays (batch orders): the one NumPy/CuPy fancy indexing uses without first
    #: converting (an int32 index costs NumPy a copy per gather); JAX's own is int32.
    index_dtype = np.dtype(np.intp)

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

    def compile(self, jitted, *args):
        """`jitted` (from `jit`) compiled ahead of time for arguments like `args`, without running
        it, so compile time can be measured apart; elsewhere `jitted` itself."""
        return jitted

    def sync(self, tree):
        """Wait until every array in `tree` is computed, so a clock stopped after it is honest."""
        return tree

    def scatter_add(self, target, indices, values):
        """A copy of `target` with `values` added at row `indices` (repeats accumulate)."""
        out = self.xp.array(target, copy=True)
        np.add.at(out, indices, values)
        return out

    def scan(self, fn, carry, length):
        """carry, ys = fn(carry, i) for i in 0..length-1; returns the last carry and the stacked ys.

        A Python loop here; `jax.lax.scan` on JAX, so a whole epoch compiles into one program.
        Like lax.scan, `y` may be a list or tuple of arrays: each position is stacked.
        """
        ys = []
        for i in range(length):
            carry, y = fn(carry, i)
            ys.append(y)
        if isinstance(ys[0], (list, tuple)):
            return carry, type(ys[0])(self.xp.stack(column) for column in zip(*ys))
        return carry, self.xp.stack(ys)

    # Randomness from explicit keys, so a compiled step is pure and a run can be replayed
    # exactly: a key is a uint32 array of 2 words (JAX's raw key format) on every backend.

    def key(self, seed):
        """The key of an integer seed."""
        return np.random.SeedSequence(int(seed)).generate_state(2)

    def fold_in(self, key, data):
        """A new key from `key` and an integer (a step number, a layer index)."""
        return np.random.SeedSequence([*np.asarray(key).tolist(), int(data)]).generate_state(2)

    def uniform(self, key, shape, dtype):
        """Uniform random numbers in [0, 1) of `shape` and `dtype`, determined by `key`."""
        generator = np.random.default_rng(np.random.SeedSequence(np.asarray(key).tolist()))
        return self.asarray(generator.random(shape, dtype=np.dtype(dtype)))

    def devices(self):
        """Human-readable names of the devices this backend computes on."""
        return ["cpu"]

    def versions(self):
        """Library name -> version string, for `xpnet info` and benchmark reports."""
        return {"numpy": np.__version__}

    def __repr__(self):
        return f"<xpnet backend {self.name!r} on {', '.join(self.devices())}>"
