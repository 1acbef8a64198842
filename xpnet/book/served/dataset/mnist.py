"""The book's `load_mnist`, reading the data set of the run (`xpnet book run --dataset`)."""
from xpnet.book.session import current
from xpnet.data.datasets import load_dataset


def load_mnist(normalize=True, flatten=True, one_hot_label=False):
    """((x_train, t_train), (x_test, t_test)) as host NumPy arrays, as the book's: images float32
    in [0, 1] when `normalize` (else uint8), (N, 784) when `flatten` (else (N, 1, 28, 28));
    labels integers, or one-hot rows with `one_hot_label`."""
    return load_dataset(current().dataset).arrays(normalize, flatten, one_hot_label)
