"""What every backend provides. The defaults are written in the Array API standard alone (they are
what array-api-strict runs); each library's module overrides what it does better or differently.

Everything that differs between array libraries is a member of `Backend`, declared rather than
probed: the nn core receives a backend (or its `xp`) and never imports an array library itself.
"""
import math

import numpy as np

#: Bits of the integer words a portable random key holds (values stay below 2**32 in int64).
_MASK32 = 0xFFFFFFFF
#: Odd multipliers below 2**31, so a 32-bit word times one fits in int64 without overflow.
_MIX1, _MIX2 = 0x7FEB352D, 0x1B873593
#: Scatter-add without a native one: rows of the one-hot matrix per chunk (portable fallback).
_ONE_HOT_BYTES = 8 * 2**20


class Backend:
    """An array library on one device, plus the few things the nn core needs beyond `xp`.

    Members: `name`; `xp` (the Array API namespace); `device` (the library's device object, for
    `device=` on creation calls) and `device_name`; `mutable_arrays` (in-place writes work);
    `shares_host_memory` (host NumPy arrays go in and out without a copy);
    `compiles` (`jit` compiles, so first calls pay for it); `index_dtype` (of batch orders);
    `asarray`, `to_numpy`, `dtype`, `writeable`; `jit`, `compile`, `sync`; `autodiff` and
    `grad`; `vmap`, `scan`, `tree_map`, `tree_stack`; `scatter_add`; the native convolution
    (`native_conv`, `prefers_native_conv`, `conv2d`, `conv2d_backward`); random keys (`key`,
    `fold_in`, `uniform`); `devices`, `versions`.
    """

    name = "array-api"
    mutable_arrays = True
    #: True where `asarray` of a host NumPy array and `to_numpy` share its memory (NumPy, torch
    #: on the CPU): moving many small arrays in and out costs nothing. Elsewhere each one is a
    #: transfer, and code that moves many per step packs them into one.
    shares_host_memory = False
    compiles = False
    #: True where `vmap` vectorizes (JAX); elsewhere it is a loop over the mapped axis.
    vectorizes = False
    #: The name of the library's automatic differentiation when `grad` has one (an oracle for
    #: backprop in gradient checks), else None.
    autodiff = None
    #: The integer dtype (by name) of index arrays: the one the library gathers with fastest.
    index_dtype_name = "int64"
    #: What computes `conv2d` and `conv2d_backward` where the library has its own convolution
    #: ("jax.lax.conv_general_dilated", ...); None: it has none here, and `Convolution` runs the
    #: portable im2col reference.
    native_conv = None
    #: True where the native convolution is the faster path, so `Convolution(native=None)` takes
    #: it (torch; JAX off the CPU); elsewhere the im2col reference is faster and stays the default.
    prefers_native_conv = False

    def __init__(self, xp, device=None, device_name="cpu"):
        self.xp = xp
        self.device = device
        self.device_name = device_name
        self.index_dtype = self.dtype(self.index_dtype_name)

    # --- arrays in and out ------------------------------------------------------------------

    def dtype(self, dtype):
        """The namespace's dtype for a name ("float32"), a NumPy dtype or the namespace's own."""
        if isinstance(dtype, str):
            return getattr(self.xp, dtype)
        if isinstance(dtype, (np.dtype, type)):
            return getattr(self.xp, np.dtype(dtype).name)
        return dtype

    #: The library's array type (set by backends that keep the default `owns`).
    array_type = ()

    def owns(self, array):
        """True when `array` is an array of this library on this backend's device."""
        return isinstance(array, self.array_type) and array.device == self.device

    def asarray(self, data, dtype=None):
        """`data` as an array on this device in `dtype` (default: its own). Arrays already there
        pass through (cast on the device if needed); anything else goes host -> device once."""
        xp = self.xp
        dtype = None if dtype is None else self.dtype(dtype)
        if self.owns(data):
            return data if dtype is None or data.dtype == dtype else xp.astype(data, dtype)
        return self._from_host(_host(data), dtype)

    def _from_host(self, host, dtype):
        """A NumPy array (or Python value) copied to this device."""
        return self.xp.asarray(host, dtype=dtype, device=self.device)

    def to_numpy(self, array):
        """A NumPy copy (or view) on the host of an array of this backend."""
        return np.asarray(array)

    def writeable(self, array):
        """True when `array` may be changed in place (NumPy also has read-only arrays)."""
        return self.mutable_arrays

    def is_floating(self, array):
        return self.xp.isdtype(array.dtype, "real floating")

    # --- compiling and timing ---------------------------------------------------------------

    def jit(self, fn, **options):
        """Compile `fn` where the backend can (JAX); elsewhere `fn` itself, run eagerly."""
        return fn

    def compile(self, jitted, *args):
        """`jitted` (from `jit`) compiled ahead of time for arguments like `args`, without
        running it, so compile time can be measured apart; elsewhere `jitted` itself."""
        return jitted

    def sync(self, tree):
        """Wait until every array in `tree` is computed, so a clock stopped after it is honest."""
        return tree

    def grad(self, fn):
        """The gradient function of scalar `fn` w.r.t. its first argument, by the library's
        automatic differentiation (only where `autodiff` names one)."""
        raise NotImplementedError(f"the {self.name} backend has no automatic differentiation")

    # --- trees and transformations ----------------------------------------------------------

    def tree_map(self, fn, tree, *rest):
        """`fn` on every array leaf of `tree` (dicts, lists, tuples, NamedTuples; None stays),
        with the matching leaves of the trees in `rest` as further arguments."""
        if tree is None:
            return None
        if isinstance(tree, dict):
            return {k: self.tree_map(fn, tree[k], *(r[k] for r in rest)) for k in tree}
        if isinstance(tree, tuple) and hasattr(tree, "_fields"):
            return type(tree)(*(self.tree_map(fn, *parts) for parts in zip(tree, *rest)))
        if isinstance(tree, (list, tuple)):
            return type(tree)(self.tree_map(fn, *parts) for parts in zip(tree, *rest))
        return fn(tree, *rest)

    def tree_stack(self, trees):
        """Trees of one structure -> one tree whose leaves are stacked along a new axis 0."""
        return self.tree_map(lambda *leaves: self.xp.stack(leaves), *trees)

    def vmap(self, fn, in_axes=0):
        """`fn` mapped over axis 0 of the arguments whose `in_axes` entry is 0 (None: passed
        whole); the outputs are stacked. A loop here, `jax.vmap` on JAX."""
        def mapped(*args):
            axes = in_axes if isinstance(in_axes, (list, tuple)) else (in_axes,) * len(args)
            size = next(_leading(a) for a, axis in zip(args, axes) if axis == 0)
            outs = [fn(*(self.tree_map(lambda leaf: leaf[i, ...], a) if axis == 0 else a
                         for a, axis in zip(args, axes)))
                    for i in range(size)]
            return self.tree_stack(outs)
        return mapped

    def scan(self, fn, carry, length):
        """carry, ys = fn(carry, i) for i in 0..length-1; returns the last carry and the ys
        stacked (per position when `y` is a list or tuple). A Python loop here; `lax.scan` on
        JAX, so a whole epoch compiles into one program."""
        ys = []
        for i in range(length):
            carry, y = fn(carry, i)
            ys.append(y)
        return carry, self.tree_stack(ys)

    def scatter_add(self, target, indices, values):
        """A copy of `target` with `values[k]` added to row `indices[k]`; repeats accumulate.

        Portable: a one-hot matrix per chunk of indices times the values (the library modules
        use their native scatter-add)."""
        xp = self.xp
        rows = target.shape[0]
        flat = xp.reshape(values, (values.shape[0], -1))
        chunk = max(1, _ONE_HOT_BYTES // (8 * rows))
        total = xp.zeros((rows, flat.shape[1]), dtype=target.dtype, device=device_of(target))
        positions = xp.arange(rows, device=device_of(target))
        for start in range(0, flat.shape[0], chunk):
            stop = min(start + chunk, flat.shape[0])
            one_hot = xp.astype(indices[start:stop, None] == positions, flat.dtype)
            total = total + xp.matmul(xp.permute_dims(one_hot, (1, 0)), flat[start:stop, ...])
        return target + xp.reshape(total, target.shape)

    # --- the native convolution (declared by `native_conv`) -----------------------------------

    def conv2d(self, x, w, b, stride, pad):
        """The book's convolution by the library: images x (N, C, H, W) correlated with filters
        w (FN, C, FH, FW) over zero padding `pad` with step `stride` on both axes, plus the bias
        b (FN,): (N, FN, OH, OW). Only where `native_conv` names one."""
        raise NotImplementedError(f"the {self.name} backend has no native convolution")

    def conv2d_backward(self, x, w, dout, stride, pad, need_dx=True):
        """(dx, dw, db): the gradients of `conv2d` for the output gradient `dout`; dx is None
        (and not computed) without `need_dx`."""
        raise NotImplementedError(f"the {self.name} backend has no native convolution")

    # --- randomness from explicit keys ------------------------------------------------------
    # A key is a device array, so a step stays on the device and can be replayed exactly. Here:
    # two 32-bit words in an int64 array, hashed with integer operations every library has;
    # JAX uses its own PRNG keys. Masks thus agree on NumPy, CuPy, torch and array-api-strict.

    def key(self, seed):
        """The key of an integer seed (made on the host once, then moved)."""
        words = np.random.SeedSequence(int(seed)).generate_state(2).astype(np.int64)
        return self.xp.asarray(words, device=self.device)

    def fold_in(self, key, data):
        """A new key from `key` and an integer (Python int or integer device scalar)."""
        xp = self.xp
        if not isinstance(data, int):
            data = xp.astype(data, xp.int64)
        data = _mix(data & _MASK32)
        k0 = _mix(key[0] ^ data)
        k1 = _mix(key[1] ^ _mix(k0 + 0x9E3779B9 & _MASK32))
        return xp.stack([k0, k1])

    def uniform(self, key, shape, dtype):
        """Uniform numbers in [0, 1) of `shape` and `dtype` from `key`, made on the device."""
        xp = self.xp
        dtype = self.dtype(dtype)
        counter = xp.arange(math.prod(shape), dtype=xp.int64, device=device_of(key))
        bits = _mix(_mix(counter ^ key[0]) ^ key[1])
        if dtype == xp.float32:  # 24 bits: every value exact in float32
            values = xp.astype(bits >> 8, dtype) * (1.0 / 2**24)
        else:
            values = xp.astype(bits, dtype) * (1.0 / 2**32)
        return xp.reshape(values, tuple(shape))

    # --- description ------------------------------------------------------------------------

    def devices(self):
        """Human-readable names of the devices this backend can compute on (its own first)."""
        return [self.device_name]

    def versions(self):
        """Library name -> version string, for `xpnet info` and benchmark reports."""
        return {"numpy": np.__version__}

    def __repr__(self):
        return f"<xpnet backend {self.name!r} on {self.device_name}>"


def _mix(h):
    """A 32-bit avalanche (xor-shift-multiply) of int64 words below 2**32: every output bit
    depends on every input bit, with no product ever exceeding int64."""
    h = h ^ (h >> 16)
    h = (h * _MIX1) & _MASK32
    h = h ^ (h >> 15)
    h = (h * _MIX2) & _MASK32
    return h ^ (h >> 16)


def _leading(tree):
    """The length of axis 0 of the first array leaf of `tree`."""
    while isinstance(tree, (dict, list, tuple)):
        tree = next(iter(tree.values())) if isinstance(tree, dict) else tree[0]
    return tree.shape[0]


def device_of(x):
    """The device to create arrays on next to `x` (`device=` of creation calls); None under
    `jax.jit`, where JAX places arrays itself."""
    return getattr(x, "device", None)


def _host(data):
    """`data` (a NumPy array, Python value, or another library's CPU array) as host data."""
    if isinstance(data, (np.ndarray, np.generic, int, float, bool, list, tuple)):
        return data
    from xpnet.backends.registry import backend_of  # another backend's array: its host copy

    return backend_of(data).to_numpy(data)
