"""NumPy on the CPU: eager, arrays mutable, no copies."""
import numpy as np

from xpnet.backends.base import Backend


def probe():
    return True, f"numpy {np.__version__} on the CPU"


def create():
    return Backend(np)
