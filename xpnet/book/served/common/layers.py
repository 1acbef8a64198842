"""The book's `common.layers`: stateful layers over xpnet's pure ones, on the run's backend.

Each class has the book's constructor, methods and attributes. Its parameters (`self.W`,
`self.gamma`, ...) are the arrays the script gave it, read afresh at every call to build the
pure layer's params on `current().backend`, so the book's in-place updates of its nets' params
(`params[key] -= lr * grad[key]`, the perturbations of `numerical_gradient`) reach the layer on
every backend, JAX included. Between forward and backward the pure layer's cache stays on the
device; what the script gets (outputs, dx, dW, db, dgamma, dbeta, running statistics) are
writable host NumPy arrays, computed in the dtype NumPy would give the book's formulas.
"""
import numpy as np

from xpnet.book.served.common.functions import *  # noqa: F401,F403 (the book's layers.py does)
from xpnet.book.arrays import float_dtype, to_device, to_host
from xpnet.book.served.common.util import col2im, im2col  # noqa: F401 (as the book's imports)
from xpnet.book.session import current
from xpnet.nn import conv, layers
from xpnet.nn.layers import Context


class _Served:
    """What the layers share: one forward of a pure layer on the backend, its cache kept for
    backward together with the backend and dtype it ran in."""

    _step = None  # (pure layer, backend, dtype, cache) of the last forward
    #: The layer's parameter attributes (named as the pure layer's params) -> the attribute
    #: backward puts each one's gradient in (Affine: {"W": "dW", "b": "db"}).
    PARAMS = {}

    def _arrays(self):
        """The layer's current parameter arrays, read at every call."""
        return {name: getattr(self, name) for name in self.PARAMS}

    def _forward(self, pure, x, dtype, ctx=layers.INFERENCE):
        backend = current().backend
        y, cache, updates = pure.forward(_params(backend, dtype, self._arrays()),
                                         to_device(backend, x, dtype=dtype), ctx)
        self._step = (pure, backend, dtype, cache)
        return to_host(backend, y), updates

    def backward(self, dout):
        """dx on the host of the last forward; the parameters' gradients go to their PARAMS
        attributes (host arrays)."""
        if self._step is None:
            raise RuntimeError(f"{type(self).__name__}.backward needs a forward first")
        pure, backend, dtype, cache = self._step
        dx, grads = pure.backward(_params(backend, dtype, self._arrays()), cache,
                                  to_device(backend, dout, dtype=dtype))
        for name, attribute in self.PARAMS.items():
            setattr(self, attribute, to_host(backend, grads[name]))
        return to_host(backend, dx)


def _params(backend, dtype, arrays):
    """The layer's current arrays as the pure layer's params, on the backend in `dtype`."""
    return {name: to_device(backend, value, dtype=dtype) for name, value in arrays.items()}


class Relu(_Served):
    """max(0, x); `mask` is the book's: True where x <= 0 (where the gradient is stopped)."""

    def __init__(self):
        self._mask = None

    def forward(self, x):
        out, _ = self._forward(layers.Relu(), x, float_dtype(x))
        self._mask = None  # made from the device cache when read
        return out

    @property
    def mask(self):
        if self._mask is None and self._step is not None:
            _, backend, _, kept = self._step  # 1.0 where x > 0
            self._mask = backend.to_numpy(kept) == 0
        return self._mask


class Sigmoid(_Served):
    """1 / (1 + exp(-x)); `out` is the last output (backward uses y(1 - y))."""

    def __init__(self):
        self.out = None

    def forward(self, x):
        self.out, _ = self._forward(layers.Sigmoid(), x, float_dtype(x))
        return self.out


class Affine(_Served):
    """x·W + b with x flattened to (N, -1); dx comes back in x's original shape."""

    PARAMS = {"W": "dW", "b": "db"}

    def __init__(self, W, b):
        self.W, self.b = W, b
        self.x = self.original_x_shape = None
        self.dW = self.db = None

    def forward(self, x):
        x = np.asarray(x)
        self.original_x_shape = x.shape
        self.x = x.reshape(x.shape[0], -1)
        out, _ = self._forward(layers.Affine(), x, float_dtype(x, self.W, self.b))
        return out


class SoftmaxWithLoss(_Served):
    """Softmax, then the batch's mean cross-entropy against t (one-hot rows or integer labels).
    `loss` is a NumPy scalar; `y` (the softmax) comes from the device when read."""

    def __init__(self):
        self.loss = self.t = None
        self._y = None

    def forward(self, x, t):
        x = np.asarray(x)
        dtype = float_dtype(x)
        backend = current().backend
        t_host = np.asarray(t)
        labels = (to_device(backend, t_host, dtype=dtype) if t_host.shape == x.shape  # one-hot
                  else to_device(backend, t_host))
        pure = layers.SoftmaxWithLoss()
        loss, cache = pure.forward({}, to_device(backend, x, dtype=dtype), labels)
        self._step, self._y, self.t = (pure, backend, dtype, cache), None, t
        self.loss = to_host(backend, loss)
        return self.loss

    def backward(self, dout=1):
        """(y - t) · dout / N (the book's ignores dout, always 1 in its nets)."""
        if self._step is None:
            raise RuntimeError("SoftmaxWithLoss.backward needs a forward first")
        pure, backend, _, cache = self._step
        return to_host(backend, pure.backward({}, cache, float(dout))[0])

    @property
    def y(self):
        if self._y is None and self._step is not None:
            self._y = to_host(self._step[1], self._step[3][0])
        return self._y


class Dropout(_Served):
    """In training, keeps each input where `np.random.rand(*x.shape) > dropout_ratio` (the
    global generator, as the book: a seeded script drops what the book's drops); at test time
    scales by 1 - dropout_ratio."""

    def __init__(self, dropout_ratio=0.5):
        self.dropout_ratio = dropout_ratio
        self.mask = None

    def forward(self, x, train_flg=True):
        x = np.asarray(x)
        ctx = layers.INFERENCE
        if train_flg:
            self.mask = np.random.rand(*x.shape) > self.dropout_ratio
            ctx = Context(train=True, state={"mask": to_device(current().backend, self.mask)})
        pure = layers.Dropout(self.dropout_ratio, mask="mask")
        return self._forward(pure, x, float_dtype(x), ctx=ctx)[0]


class BatchNormalization(_Served):
    """Normalises each feature over the batch, then scales by gamma and shifts by beta.

    In training the batch's statistics are used and `running_mean`/`running_var` (host arrays,
    zeros of the feature count at the first forward when not given) move towards them by
    `momentum`; at test time the running ones are used. Inputs (N, ...) are normalised per
    feature of their (N, -1) view, and come back in their shape, as the book's."""

    PARAMS = {"gamma": "dgamma", "beta": "dbeta"}

    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        self.gamma, self.beta, self.momentum = gamma, beta, momentum
        self.running_mean, self.running_var = running_mean, running_var
        self.input_shape = None
        self.dgamma = self.dbeta = None

    def forward(self, x, train_flg=True):
        x = np.asarray(x)
        self.input_shape = x.shape
        if self.running_mean is None:
            features = int(np.prod(x.shape[1:]))
            self.running_mean, self.running_var = np.zeros(features), np.zeros(features)
        stats = {"running_mean": self.running_mean, "running_var": self.running_var}
        dtype = float_dtype(x, self.gamma, self.beta, *stats.values())
        backend = current().backend
        ctx = Context(train=bool(train_flg), state=_params(backend, dtype, stats))
        pure = layers.BatchNormalization("gamma", "beta", "running_mean", "running_var",
                                         self.momentum)
        out, updates = self._forward(pure, x, dtype, ctx)
        if updates:
            self.running_mean = to_host(backend, updates["running_mean"])
            self.running_var = to_host(backend, updates["running_var"])
        return out


class Convolution(_Served):
    """Filters W (FN, C, FH, FW) and bias b (FN,) over images (N, C, H, W), with `stride` and
    zero padding `pad`; float64 at least, as the book's im2col computes."""

    PARAMS = {"W": "dW", "b": "db"}

    def __init__(self, W, b, stride=1, pad=0):
        self.W, self.b, self.stride, self.pad = W, b, stride, pad
        self.x = None
        self.dW = self.db = None

    def forward(self, x):
        self.x = np.asarray(x)
        pure = conv.Convolution("W", "b", stride=self.stride, pad=self.pad)
        dtype = float_dtype(self.x, self.W, self.b, np.float64)
        return self._forward(pure, self.x, dtype)[0]


class Pooling(_Served):
    """Max pooling over pool_h × pool_w windows; the gradient goes to each window's first
    maximum, as the book's argmax sends it. `stride` defaults to 1, as the book's."""

    def __init__(self, pool_h, pool_w, stride=1, pad=0):
        self.pool_h, self.pool_w, self.stride, self.pad = pool_h, pool_w, stride, pad
        self.x = None

    def forward(self, x):
        self.x = np.asarray(x)
        pure = conv.Pooling(self.pool_h, self.pool_w, stride=self.stride, pad=self.pad)
        return self._forward(pure, self.x, float_dtype(self.x, np.float64))[0]

