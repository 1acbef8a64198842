"""The book's `common.util`: curve smoothing, shuffling, and the convolution's im2col and col2im.

`smooth_curve` and `shuffle_dataset` work on the script's host data with NumPy, as the book's
(shuffling draws from the global `np.random`, so a seeded script shuffles as the book's does);
`im2col` and `col2im` run `xpnet.nn.conv` on the run's backend and hand back NumPy arrays.
"""
import numpy as np

from xpnet.book.arrays import to_device, to_host
from xpnet.book.session import current
from xpnet.nn import conv


def smooth_curve(x):
    """`x` (a list of losses) smoothed by an 11-point Kaiser window, the same length as `x`
    (its ends mirrored, as the book does)."""
    window_len = 11
    s = np.r_[x[window_len - 1:0:-1], x, x[-1:-window_len:-1]]
    w = np.kaiser(window_len, 2)
    y = np.convolve(w / w.sum(), s, mode="valid")
    return y[5:len(y) - 5]


def shuffle_dataset(x, t):
    """x and t reordered by one permutation drawn from the global `np.random`, as the book's."""
    permutation = np.random.permutation(x.shape[0])
    return x[permutation], t[permutation]


def conv_output_size(input_size, filter_size, stride=1, pad=0):
    """(input_size + 2·pad - filter_size) / stride + 1: the book's formula, a true division (so
    a float, as the book's; checked by `xpnet.nn.conv.conv_output_size` first, which refuses a
    filter larger than the padded input)."""
    conv.conv_output_size(input_size, filter_size, stride, pad)
    return (input_size + 2 * pad - filter_size) / stride + 1


def im2col(input_data, filter_h, filter_w, stride=1, pad=0):
    """Images (N, C, H, W) -> rows (N·OH·OW, C·FH·FW), one per filter window, in the book's
    layout; float64 whatever the input, as the book's (it fills `np.zeros`)."""
    backend = current().backend
    images = to_device(backend, input_data, dtype=np.float64)
    return to_host(backend, conv.im2col(images, filter_h, filter_w, stride, pad))


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    """The adjoint of `im2col`: rows back onto images of `input_shape`, overlapping windows
    summed; float64, as the book's."""
    backend = current().backend
    rows = to_device(backend, col, dtype=np.float64)
    return to_host(backend, conv.col2im(rows, input_shape, filter_h, filter_w, stride, pad))
