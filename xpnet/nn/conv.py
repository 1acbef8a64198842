"""The book's chapter-7 convolution and pooling, written once against any array namespace.

`im2col` lays every filter window of a batch of images (N, C, H, W) out as one row, so a
convolution is one matrix product; `col2im` is its adjoint (the backward pass), summing each
window's entries back onto the pixels they came from. Both keep the book's layout: rows ordered
(n, oh, ow), columns (c, fh, fw).

Portable: no in-place writes (JAX arrays are immutable), padding made with `concat` of zeros.
`im2col` gathers the FH·FW strided views of the image in channels-last order, so the stacked
result already has the book's layout (a reshape, no transpose of the big array); `col2im` places
each window offset's contribution with zero-padding concatenations and sums them, a row of
offsets at a time.
"""
from xpnet.backends import device_of, namespace_of
from xpnet.nn.layers import INFERENCE, BaseLayer


def conv_output_size(input_size, filter_size, stride=1, pad=0):
    """(input_size + 2·pad − filter_size) // stride + 1, as the book's im2col computes it."""
    for value, name in ((input_size, "input_size"), (filter_size, "filter_size"), (stride, "stride")):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if int(pad) != pad or pad < 0:
        raise ValueError(f"pad must be an integer >= 0, got {pad!r}")
    span = int(input_size) + 2 * int(pad) - int(filter_size)
    if span < 0:
        raise ValueError(f"a filter of size {filter_size} does not fit an input of size "
                         f"{input_size} padded by {pad}")
    return span // int(stride) + 1


def _check_images(x, what):
    if x.ndim != 4:
        raise ValueError(f"{what} expects images of shape (N, C, H, W), got shape {tuple(x.shape)}")


def _zeros_along(x, axis, size):
    shape = tuple(size if a == axis else n for a, n in enumerate(x.shape))
    return namespace_of(x).zeros(shape, dtype=x.dtype, device=device_of(x))


def _pad_axis(x, axis, before, after):
    """x with `before` and `after` zeros concatenated along `axis`."""
    parts = ([_zeros_along(x, axis, before)] if before else []) + [x] + (
        [_zeros_along(x, axis, after)] if after else [])
    return x if len(parts) == 1 else namespace_of(x).concat(parts, axis=axis)


def _place(x, axis, offset, stride, length):
    """An array of `length` along `axis`, holding x's entry k at offset + stride·k, zero elsewhere."""
    xp = namespace_of(x)
    n = x.shape[axis]
    if stride > 1 and n > 1:  # interleave stride − 1 zeros after each entry, then drop the tail
        zeros = xp.zeros_like(x)
        x = xp.stack([x] + [zeros] * (stride - 1), axis=axis + 1)
        shape = x.shape[:axis] + (n * stride,) + x.shape[axis + 2:]
        x = xp.reshape(x, shape)
        index = (slice(None),) * axis + (slice(0, stride * (n - 1) + 1),) + (...,)
        x = x[index]
    return _pad_axis(x, axis, offset, length - offset - x.shape[axis])


def _sizes(input_shape, filter_h, filter_w, stride, pad):
    _, _, h, w = input_shape
    return conv_output_size(h, filter_h, stride, pad), conv_output_size(w, filter_w, stride, pad)


def im2col(input_data, filter_h, filter_w, stride=1, pad=0):
    """Images (N, C, H, W) → rows (N·OH·OW, C·FH·FW): one row per filter window (the book's)."""
    _check_images(input_data, "im2col")
    xp = namespace_of(input_data)
    n, c, _, _ = input_data.shape
    out_h, out_w = _sizes(input_data.shape, filter_h, filter_w, stride, pad)
    img = xp.permute_dims(input_data, (0, 2, 3, 1))  # (N, H, W, C): the window's C varies slowest
    if pad:
        img = _pad_axis(_pad_axis(img, 1, pad, pad), 2, pad, pad)
    views = [img[:, y:y + stride * (out_h - 1) + 1:stride, x:x + stride * (out_w - 1) + 1:stride, :]
             for y in range(filter_h) for x in range(filter_w)]          # each (N, OH, OW, C)
    col = xp.stack(views, axis=-1)                                       # (N, OH, OW, C, FH·FW)
    return xp.reshape(col, (n * out_h * out_w, c * filter_h * filter_w))


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    """The adjoint of `im2col`: rows (N·OH·OW, C·FH·FW) → images `input_shape` (N, C, H, W), each
    window entry added to the pixel it was taken from (overlapping windows accumulate)."""
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 4:
        raise ValueError(f"col2im: input_shape must be (N, C, H, W), got {input_shape}")
    xp = namespace_of(col)
    n, c, h, w = input_shape
    out_h, out_w = _sizes(input_shape, filter_h, filter_w, stride, pad)
    expected = (n * out_h * out_w, c * filter_h * filter_w)
    if tuple(col.shape) != expected:
        raise ValueError(f"col2im: col has shape {tuple(col.shape)}, but images {input_shape} with "
                         f"{filter_h}x{filter_w} filters, stride {stride}, pad {pad} give {expected}")
    col = xp.reshape(col, (n, out_h, out_w, c, filter_h, filter_w))
    hp, wp = h + 2 * pad, w + 2 * pad
    img = None
    for y in range(filter_h):
        row = None  # the offsets (y, ·), placed along W: (N, OH, Wp, C)
        for x in range(filter_w):
            part = _place(col[:, :, :, :, y, x], 2, x, stride, wp)
            row = part if row is None else row + part
        part = _place(row, 1, y, stride, hp)  # (N, Hp, Wp, C)
        img = part if img is None else img + part
    img = img[:, pad:pad + h, pad:pad + w, :]
    return xp.permute_dims(img, (0, 3, 1, 2))


class Convolution(BaseLayer):
    """The book's convolution: im2col, then one product with the filters (FN, C, FH, FW) laid out
    as columns, plus the bias (FN,); output (N, FN, OH, OW). Params named `weight` and `bias`."""

    def __init__(self, weight="W", bias="b", stride=1, pad=0):
        self.weight, self.bias = weight, bias
        self.stride, self.pad = int(stride), int(pad)
        if self.stride != stride or self.stride < 1 or self.pad != pad or self.pad < 0:
            raise ValueError(f"Convolution needs an integer stride >= 1 and pad >= 0, "
                             f"got stride={stride!r}, pad={pad!r}")

    def forward(self, params, x, ctx=INFERENCE):
        W, b = params[self.weight], params[self.bias]
        _check_images(x, f"Convolution({self.weight})")
        if W.ndim != 4 or W.shape[1] != x.shape[1]:
            raise ValueError(f"Convolution({self.weight}): filters of shape {tuple(W.shape)} need "
                             f"(FN, C, FH, FW) with C = {x.shape[1]}, the input's channels "
                             f"(input shape {tuple(x.shape)})")
        xp = namespace_of(x)
        fn, _, fh, fw = W.shape
        n = x.shape[0]
        out_h, out_w = _sizes(x.shape, fh, fw, self.stride, self.pad)
        col = im2col(x, fh, fw, self.stride, self.pad)
        col_w = xp.permute_dims(xp.reshape(W, (fn, -1)), (1, 0))         # (C·FH·FW, FN)
        out = xp.reshape(col @ col_w + b, (n, out_h, out_w, fn))
        return xp.permute_dims(out, (0, 3, 1, 2)), (col, tuple(x.shape)), {}

    def backward(self, params, cache, dout, need_dx=True):
        col, x_shape = cache
        W = params[self.weight]
        xp = namespace_of(dout)
        fn, c, fh, fw = W.shape
        dout = xp.reshape(xp.permute_dims(dout, (0, 2, 3, 1)), (-1, fn))   # (N·OH·OW, FN)
        dW = xp.permute_dims(col, (1, 0)) @ dout                           # (C·FH·FW, FN)
        grads = {self.weight: xp.reshape(xp.permute_dims(dW, (1, 0)), (fn, c, fh, fw)),
                 self.bias: xp.sum(dout, axis=0)}
        if not need_dx:
            return None, grads
        dcol = dout @ xp.reshape(W, (fn, -1))                              # (N·OH·OW, C·FH·FW)
        return col2im(dcol, x_shape, fh, fw, self.stride, self.pad), grads

    def __repr__(self):
        return f"Convolution({self.weight!r}, {self.bias!r}, stride={self.stride}, pad={self.pad})"


class Pooling(BaseLayer):
    """The book's max pooling over pool_h × pool_w windows (zero padding, as the book pads).
    The gradient goes to the first maximum of each window, as the book's argmax sends it."""

    def __init__(self, pool_h, pool_w, stride=2, pad=0):
        values = (pool_h, pool_w, stride, pad)
        self.pool_h, self.pool_w, self.stride, self.pad = (int(v) for v in values)
        if (any(int(v) != v for v in values) or min(self.pool_h, self.pool_w, self.stride) < 1
                or self.pad < 0):
            raise ValueError(f"Pooling needs integer pool_h, pool_w, stride >= 1 and pad >= 0, "
                             f"got {values}")

    def forward(self, params, x, ctx=INFERENCE):
        _check_images(x, "Pooling")
        xp = namespace_of(x)
        n, c, _, _ = x.shape
        size = self.pool_h * self.pool_w
        out_h, out_w = _sizes(x.shape, self.pool_h, self.pool_w, self.stride, self.pad)
        col = xp.reshape(im2col(x, self.pool_h, self.pool_w, self.stride, self.pad), (-1, size))
        first = xp.argmax(col, axis=1)                 # the standard's argmax: first occurrence
        positions = xp.arange(size, dtype=first.dtype, device=device_of(col))
        mask = xp.astype(positions[None, :] == first[:, None], col.dtype)  # one-hot rows
        out = xp.reshape(xp.max(col, axis=1), (n, out_h, out_w, c))
        return xp.permute_dims(out, (0, 3, 1, 2)), (mask, tuple(x.shape)), {}

    def backward(self, params, cache, dout, need_dx=True):
        mask, x_shape = cache
        if not need_dx:
            return None, {}
        xp = namespace_of(dout)
        out_shape = (*x_shape[:2], *_sizes(x_shape, self.pool_h, self.pool_w, self.stride, self.pad))
        if tuple(dout.shape) != out_shape:
            raise ValueError(f"Pooling: dout has shape {tuple(dout.shape)}, the output's is {out_shape}")
        dout = xp.reshape(xp.permute_dims(dout, (0, 2, 3, 1)), (-1, 1))  # (N·OH·OW·C, 1)
        dcol = xp.reshape(mask * dout, (-1, x_shape[1] * self.pool_h * self.pool_w))
        return col2im(dcol, x_shape, self.pool_h, self.pool_w, self.stride, self.pad), {}

    def __repr__(self):
        return f"Pooling({self.pool_h}, {self.pool_w}, stride={self.stride}, pad={self.pad})"
