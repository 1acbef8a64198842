"""Checks of the numbers a user gives (CLI and Python API alike), made once at the boundary so a
nonsense value fails at once with one sentence naming it, instead of training on garbage."""
import math
import os
from numbers import Integral, Real

from xpnet.backends import dtype_name
from xpnet.errors import ConfigError

FLOAT_DTYPES = ("float32", "float64")


def check_int(value, name, minimum=1):
    """`value` as an int, if it is an integer ≥ minimum."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_seed(seed, name="seed"):
    """None (fresh entropy) or an integer ≥ 0, as NumPy's generators take."""
    return None if seed is None else check_int(seed, name, minimum=0)


def check_number(value, name, low=None, high=None, low_open=False, high_open=False):
    """`value` as a float, if it is a finite real number within [low, high] (an open end with
    low_open/high_open)."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        bounds = [f"{'>' if low_open else '>='} {low}" if low is not None else "",
                  f"{'<' if high_open else '<='} {high}" if high is not None else ""]
        where = " and ".join(b for b in bounds if b)
        raise ConfigError(f"{name} must be a finite number{' ' + where if where else ''}, "
                          f"got {value!r}")
    return float(value)


def check_float_dtype(dtype):
    """The dtype's name, if it is one a net can train in."""
    try:
        name = dtype if isinstance(dtype, str) else dtype_name(dtype)
    except TypeError:
        name = None
    if name not in FLOAT_DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(FLOAT_DTYPES)}, got {dtype!r} "
                          "(integer weights cannot learn)")
    return name


def available_memory():
    """Bytes of memory free for new allocations (None where the OS does not say)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits_in_memory(count, bytes_each, what):
    """Refuse to allocate `count` values of `bytes_each` bytes beyond the memory available,
    before NumPy tries and fails with a MemoryError (or the machine starts swapping)."""
    need, free = count * bytes_each, available_memory()
    if free is not None and need > free:
        raise ConfigError(f"{what} need {need / 1e9:.3g} GB, more than the {free / 1e9:.3g} GB of "
                          "memory available; use smaller layers")
