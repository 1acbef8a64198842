"""The chapter-local `two_layer_net` of chapters 4 (sigmoid) and 5 (ReLU)."""
from xpnet.book.nets import TwoLayerNet  # noqa: F401
