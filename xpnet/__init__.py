"""xpnet: the book *Deep Learning from Scratch*, fast on NumPy, JAX, PyTorch and CuPy.

    import xpnet
    from xpnet.nn import TwoLayerNet, SGD
    from xpnet.data import load_mnist

    be = xpnet.get_backend()          # $XPNET_BACKEND, else numpy; $XPNET_DEVICE
    be = xpnet.get_backend("torch", "cuda:1")
    xpnet.available_backends()        # {"numpy": (True, "..."), "jax": (...), "torch": (...), ...}
"""
from xpnet.backends import available_backends, get_backend
from xpnet.errors import BackendError, ConfigError, DataError, DivergedError, XpnetError

__version__ = "0.1.0"

__all__ = ["available_backends", "get_backend", "BackendError", "ConfigError", "DataError",
           "DivergedError", "XpnetError", "__version__"]
