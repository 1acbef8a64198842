"""The book's `common.multi_layer_net`."""
from xpnet.book.nets import MultiLayerNet  # noqa: F401
