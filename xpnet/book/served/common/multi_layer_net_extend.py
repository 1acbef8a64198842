"""The book's `common.multi_layer_net_extend`."""
from xpnet.book.nets import MultiLayerNetExtend  # noqa: F401
