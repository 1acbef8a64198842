"""The book's chapter-7 convolution and pooling, written once against any array namespace.

`im2col` lays every filter window of a batch of images (N, C, H, W) out as one row, so a
convolution is one matrix product; `col2im` is its adjoint (the backward pass), summing each
window's entries back onto the pixels they came from. Both keep the book's layout: rows ordered
(n, oh, ow), columns (c, fh, fw). `image_columns` and `columns_to_image` are the same pair laid
out per image, (N, C·FH·FW, OH·OW): the book's `col` before its transpose, which `Convolution`
uses, so that its output and gradients stay channels-first with no transpose of big arrays.

Portable: no in-place writes (JAX arrays are immutable), padding made with `concat` of zeros.
The columns are the FH·FW strided views of the image, stacked (one copy, no transpose); the
adjoints place each window offset's contribution with zero-padding concatenations and sum them,
a row of offsets at a time.

Two faster paths, tested equal to this reference: `Convolution` takes the backend's native
convolution where the backend prefers it (`Backend.native_conv`: torch's own; XLA's on JAX off
the CPU); `Pooling` takes the maximum over the window's strided views (no im2col, no argmax)
and, when its windows tile the image (stride = pool size), sends the gradient back with a
reshape instead of `col2im`.
"""
from xpnet.backends import BackendError, backend_of, device_of, namespace_of
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


def _pad_image(x, pad, h_axis=2):
    return _pad_axis(_pad_axis(x, h_axis, pad, pad), h_axis + 1, pad, pad) if pad else x


def _window_views(img, filter_h, filter_w, stride, out_h, out_w, h_axis=2):
    """The FH·FW strided views of padded images `img` whose rows are on `h_axis` and columns on
    the next: view (y, x), row-major, holds entry (y, x) of every window, as (…, OH, OW, …)."""
    span_h, span_w = stride * (out_h - 1) + 1, stride * (out_w - 1) + 1
    lead = (slice(None),) * h_axis
    return [img[lead + (slice(y, y + span_h, stride), slice(x, x + span_w, stride), ...)]
            for y in range(filter_h) for x in range(filter_w)]


def im2col(input_data, filter_h, filter_w, stride=1, pad=0):
    """Images (N, C, H, W) → rows (N·OH·OW, C·FH·FW): one row per filter window (the book's)."""
    _check_images(input_data, "im2col")
    xp = namespace_of(input_data)
    n, c, _, _ = input_data.shape
    out_h, out_w = _sizes(input_data.shape, filter_h, filter_w, stride, pad)
    img = _pad_image(xp.permute_dims(input_data, (0, 2, 3, 1)), pad, 1)  # (N, H, W, C): the
    # window's C varies slowest; each view (N, OH, OW, C), stacked (N, OH, OW, C, FH·FW)
    col = xp.stack(_window_views(img, filter_h, filter_w, stride, out_h, out_w, 1), axis=-1)
    return xp.reshape(col, (n * out_h * out_w, c * filter_h * filter_w))


def image_columns(x, filter_h, filter_w, stride=1, pad=0):
    """im2col laid out per image: (N, C·FH·FW, OH·OW), the book's `col` before its transpose
    (entry [n, (c, fh, fw), (oh, ow)]). Filters (FN, C·FH·FW) times it give the convolution in
    (N, FN, OH·OW), images already channels-first: no transpose of the output, nor of its
    gradient in backward."""
    _check_images(x, "image_columns")
    xp = namespace_of(x)
    n, c, _, _ = x.shape
    out_h, out_w = _sizes(x.shape, filter_h, filter_w, stride, pad)
    views = _window_views(_pad_image(x, pad), filter_h, filter_w, stride, out_h, out_w)
    return xp.reshape(xp.stack(views, axis=2), (n, c * filter_h * filter_w, out_h * out_w))


def _add_windows(part, filter_h, filter_w, stride, hp, wp, h_axis):
    """Σ over the window offsets (y, x) of `part(y, x)` (…, OH, OW, …; rows on `h_axis`), its
    entry (oh, ow) added at row y + stride·oh, column x + stride·ow of zeros (…, Hp, Wp, …)."""
    img = None
    for y in range(filter_h):
        row = None  # the offsets (y, ·), placed along the columns
        for x in range(filter_w):
            placed = _place(part(y, x), h_axis + 1, x, stride, wp)
            row = placed if row is None else row + placed
        placed = _place(row, h_axis, y, stride, hp)
        img = placed if img is None else img + placed
    return img


def _check_col2im(col, input_shape, expected, filter_h, filter_w, stride, pad, what):
    if tuple(col.shape) != expected:
        raise ValueError(f"{what}: col has shape {tuple(col.shape)}, but images {input_shape} with "
                         f"{filter_h}x{filter_w} filters, stride {stride}, pad {pad} give {expected}")


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    """The adjoint of `im2col`: rows (N·OH·OW, C·FH·FW) → images `input_shape` (N, C, H, W), each
    window entry added to the pixel it was taken from (overlapping windows accumulate)."""
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 4:
        raise ValueError(f"col2im: input_shape must be (N, C, H, W), got {input_shape}")
    xp = namespace_of(col)
    n, c, h, w = input_shape
    out_h, out_w = _sizes(input_shape, filter_h, filter_w, stride, pad)
    _check_col2im(col, input_shape, (n * out_h * out_w, c * filter_h * filter_w),
                  filter_h, filter_w, stride, pad, "col2im")
    col = xp.reshape(col, (n, out_h, out_w, c, filter_h, filter_w))
    img = _add_windows(lambda y, x: col[:, :, :, :, y, x], filter_h, filter_w, stride,
                       h + 2 * pad, w + 2 * pad, 1)  # (N, Hp, Wp, C)
    return xp.permute_dims(img[:, pad:pad + h, pad:pad + w, :], (0, 3, 1, 2))


def columns_to_image(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    """The adjoint of `image_columns`: (N, C·FH·FW, OH·OW) → images `input_shape`."""
    input_shape = tuple(int(s) for s in input_shape)
    xp = namespace_of(col)
    n, c, h, w = input_shape
    out_h, out_w = _sizes(input_shape, filter_h, filter_w, stride, pad)
    _check_col2im(col, input_shape, (n, c * filter_h * filter_w, out_h * out_w),
                  filter_h, filter_w, stride, pad, "columns_to_image")
    col = xp.reshape(col, (n, c, filter_h, filter_w, out_h, out_w))
    img = _add_windows(lambda y, x: col[:, :, y, x, :, :], filter_h, filter_w, stride,
                       h + 2 * pad, w + 2 * pad, 2)  # (N, C, Hp, Wp)
    return img[:, :, pad:pad + h, pad:pad + w]


class Convolution(BaseLayer):
    """The book's convolution: filters `weight` (FN, C, FH, FW) and bias `bias` (FN,) on images
    (N, C, H, W); output (N, FN, OH, OW).

    The reference path is the book's: im2col (laid out per image, `image_columns`, so the output
    comes out channels-first with no transpose) and one matrix product. `native` picks the path:
    None (default) the backend's native convolution where the backend prefers it
    (`backend.prefers_native_conv`: torch, JAX off the CPU), else the reference; False always
    the reference; True the native one (`backend.native_conv`), raising BackendError where the
    backend has none (NumPy, CuPy, array-api-strict). Both give the same results to rounding
    (tested in float64 to 1e-10)."""

    def __init__(self, weight="W", bias="b", stride=1, pad=0, native=None):
        self.weight, self.bias = weight, bias
        self.stride, self.pad = int(stride), int(pad)
        if self.stride != stride or self.stride < 1 or self.pad != pad or self.pad < 0:
            raise ValueError(f"Convolution needs an integer stride >= 1 and pad >= 0, "
                             f"got stride={stride!r}, pad={pad!r}")
        if native not in (None, True, False):
            raise ValueError(f"Convolution: native must be None, True or False, got {native!r}")
        self.native = native

    def native_backend(self, x):
        """The backend whose native convolution runs on `x`, or None for the im2col path."""
        if self.native is False:
            return None
        backend = backend_of(x)
        if self.native is None:
            return backend if backend.prefers_native_conv else None
        if backend.native_conv is None:
            raise BackendError(f"Convolution({self.weight}, native=True): the {backend.name} "
                               "backend has no native convolution; use native=None or False")
        return backend

    def forward(self, params, x, ctx=INFERENCE):
        W, b = params[self.weight], params[self.bias]
        _check_images(x, f"Convolution({self.weight})")
        if W.ndim != 4 or W.shape[1] != x.shape[1]:
            raise ValueError(f"Convolution({self.weight}): filters of shape {tuple(W.shape)} need "
                             f"(FN, C, FH, FW) with C = {x.shape[1]}, the input's channels "
                             f"(input shape {tuple(x.shape)})")
        fn, _, fh, fw = W.shape
        out_h, out_w = _sizes(x.shape, fh, fw, self.stride, self.pad)
        backend = self.native_backend(x)
        if backend is not None:  # the cache: the input itself, marked by no shape
            return backend.conv2d(x, W, b, self.stride, self.pad), (x, None), {}
        xp = namespace_of(x)
        col = image_columns(x, fh, fw, self.stride, self.pad)             # (N, C·FH·FW, OH·OW)
        out = xp.reshape(W, (fn, -1)) @ col + xp.reshape(b, (fn, 1))      # (N, FN, OH·OW)
        return xp.reshape(out, (x.shape[0], fn, out_h, out_w)), (col, tuple(x.shape)), {}

    def backward(self, params, cache, dout, need_dx=True):
        """dW, db, and dx unless `need_dx` is False (then no col2im, nor its native twin)."""
        col, x_shape = cache
        W = params[self.weight]
        if x_shape is None:  # the native path; col is the input
            dx, dW, db = backend_of(col).conv2d_backward(col, W, dout, self.stride, self.pad,
                                                         need_dx)
            return dx, {self.weight: dW, self.bias: db}
        xp = namespace_of(dout)
        fn, c, fh, fw = W.shape
        dout = xp.reshape(dout, (dout.shape[0], fn, -1))                   # (N, FN, OH·OW)
        dW = xp.sum(dout @ xp.permute_dims(col, (0, 2, 1)), axis=0)        # (FN, C·FH·FW)
        grads = {self.weight: xp.reshape(dW, (fn, c, fh, fw)), self.bias: xp.sum(dout, axis=(0, 2))}
        if not need_dx:
            return None, grads
        dcol = xp.permute_dims(xp.reshape(W, (fn, -1)), (1, 0)) @ dout    # (N, C·FH·FW, OH·OW)
        return columns_to_image(dcol, x_shape, fh, fw, self.stride, self.pad), grads

    def __repr__(self):
        native = "" if self.native is None else f", native={self.native}"
        return (f"Convolution({self.weight!r}, {self.bias!r}, stride={self.stride}, "
                f"pad={self.pad}{native})")


class Pooling(BaseLayer):
    """The book's max pooling over pool_h × pool_w windows (zero padding, as the book pads).
    The gradient goes to the first maximum of each window in row-major order, as the book's
    argmax sends it (ties included: windows of ReLU zeros are common).

    The maximum is taken over the window's pool_h·pool_w strided views of the image; when the
    windows tile it (stride = pool_h = pool_w, as the usual 2×2 pooling with stride 2) the
    gradient goes back through a reshape, else through `columns_to_image`. `reference=True`
    runs the book's im2col, argmax and col2im instead (the same results; for tests and
    benchmarks)."""

    def __init__(self, pool_h, pool_w, stride=2, pad=0, reference=False):
        values = (pool_h, pool_w, stride, pad)
        self.pool_h, self.pool_w, self.stride, self.pad = (int(v) for v in values)
        if (any(int(v) != v for v in values) or min(self.pool_h, self.pool_w, self.stride) < 1
                or self.pad < 0):
            raise ValueError(f"Pooling needs integer pool_h, pool_w, stride >= 1 and pad >= 0, "
                             f"got {values}")
        self.reference = bool(reference)
        self.tiles = self.stride == self.pool_h == self.pool_w

    def forward(self, params, x, ctx=INFERENCE):
        _check_images(x, "Pooling")
        if self.reference:
            return self._reference_forward(x)
        xp = namespace_of(x)
        out_h, out_w = _sizes(x.shape, self.pool_h, self.pool_w, self.stride, self.pad)
        views = _window_views(_pad_image(x, self.pad), self.pool_h, self.pool_w, self.stride,
                              out_h, out_w)                                # each (N, C, OH, OW)
        out = views[0]
        for view in views[1:]:
            out = xp.maximum(out, view)
        hits, free = [], None  # the first maximum, row-major within the window: hits one-hot
        for k, view in enumerate(views):
            hit = view == out if free is None else xp.logical_and(view == out, free)
            if k < len(views) - 1:  # free: no maximum before (hits are within free: xor)
                free = xp.logical_not(hit) if free is None else xp.logical_xor(free, hit)
            hits.append(hit)
        if self.tiles:  # (N, C, OH, ph, OW, pw): a reshape away from the image
            mask = xp.stack([xp.stack(hits[i * self.pool_w:(i + 1) * self.pool_w], axis=-1)
                             for i in range(self.pool_h)], axis=3)
        else:           # (N, C, ph·pw, OH, OW): image_columns' layout, for columns_to_image
            mask = xp.stack(hits, axis=2)
        return out, (xp.astype(mask, x.dtype), tuple(x.shape)), {}

    def backward(self, params, cache, dout, need_dx=True):
        mask, x_shape = cache
        if not need_dx:
            return None, {}
        out_shape = (*x_shape[:2], *_sizes(x_shape, self.pool_h, self.pool_w, self.stride, self.pad))
        if tuple(dout.shape) != out_shape:
            raise ValueError(f"Pooling: dout has shape {tuple(dout.shape)}, the output's is {out_shape}")
        if self.reference:
            return self._reference_backward(mask, x_shape, dout), {}
        xp = namespace_of(dout)
        n, c, h, w = x_shape
        _, _, out_h, out_w = out_shape
        if self.tiles:
            dx = xp.reshape(mask * dout[:, :, :, None, :, None],
                            (n, c, out_h * self.pool_h, out_w * self.pool_w))
            end_h, end_w = min(dx.shape[2], self.pad + h), min(dx.shape[3], self.pad + w)
            dx = dx[:, :, self.pad:end_h, self.pad:end_w]  # the windows' pixels, then zeros
            # for the rows and columns no window reaches
            return _pad_axis(_pad_axis(dx, 2, 0, h - dx.shape[2]), 3, 0, w - dx.shape[3]), {}
        dcol = xp.reshape(mask * dout[:, :, None, :, :], (n, c * self.pool_h * self.pool_w, -1))
        return columns_to_image(dcol, x_shape, self.pool_h, self.pool_w, self.stride, self.pad), {}

    def _reference_forward(self, x):
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

    def _reference_backward(self, mask, x_shape, dout):
        xp = namespace_of(dout)
        dout = xp.reshape(xp.permute_dims(dout, (0, 2, 3, 1)), (-1, 1))  # (N·OH·OW·C, 1)
        dcol = xp.reshape(mask * dout, (-1, x_shape[1] * self.pool_h * self.pool_w))
        return col2im(dcol, x_shape, self.pool_h, self.pool_w, self.stride, self.pad)

    def __repr__(self):
        reference = ", reference=True" if self.reference else ""
        return (f"Pooling({self.pool_h}, {self.pool_w}, stride={self.stride}, pad={self.pad}"
                f"{reference})")
