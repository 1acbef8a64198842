"""MNIST loader with the book's signature; the arrays come from xpnet.data."""
import os

from xpnet.data import load_mnist as _xpnet_load_mnist


def load_mnist(normalize=True, flatten=True, one_hot_label=False):
    """Return ((x_train, t_train), (x_test, t_test)); the data set is $BOOK_STYLE_DATASET (mnist-5k)."""
    dataset = os.environ.get("BOOK_STYLE_DATASET", "mnist-5k")
    return _xpnet_load_mnist(normalize, flatten, one_hot_label, dataset=dataset)
