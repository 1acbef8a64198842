"""The book's chapter-5 and 6 layers as pure functions of explicit params, under one contract.

A layer holds only hyperparameters and the *names* of its parameters. Every layer follows
`Layer`: `forward(params, x, ctx)` reads the current arrays from `params` and returns
`(y, cache, state_updates)`; `backward(params, cache, dout)` returns `(dx, grads)` with `grads`
keyed like `params`. Nothing is stored on `self` during a step, so the same layer object serves
NumPy eagerly and JAX under `jax.jit`, and replacing `params["W1"]` can never leave a layer
computing with a stale array. `BaseLayer` gives the contract's defaults.
"""
from typing import Any, NamedTuple, Protocol, runtime_checkable

from xpnet.backends import backend_of, namespace_of
from xpnet.nn.functions import cross_entropy_error, one_hot, sigmoid, softmax


class Context(NamedTuple):
    """What a forward pass needs besides params and x: the mode, the layers' state, randomness."""
    train: bool = False  # the book's train_flg
    state: Any = None    # dict of non-trained arrays (BatchNorm's running mean and variance)
    key: Any = None      # random key of this layer for this step (Dropout's mask)


#: An inference pass without state: what `forward(params, x)` runs in when no context is given.
INFERENCE = Context()


@runtime_checkable
class Layer(Protocol):
    """The contract every layer of a `Sequential` follows (optax types its transformations so).

    - `forward(params, x, ctx=INFERENCE) -> (y, cache, state_updates)`: `state_updates` holds the
      new values of the layer's state entries (BatchNorm's running statistics in training), `{}`
      for most layers;
    - `backward(params, cache, dout, need_dx=True) -> (dx, grads)`: `grads` keyed like `params`;
      with `need_dx=False` (the first layer: nothing needs the input's gradient) `dx` may be None
      and its work skipped;
    - `init_state(params) -> dict`: the layer's initial state entries (`{}` for most);
    - `weight`: the name of the param weight decay applies to (None: the layer has none);
    - `elementwise`: the layer maps inputs of any shape element by element (the structured
      numerical gradient relies on it);
    - `random`: a training-mode pass needs `ctx.key`.
    """
    weight: str | None
    elementwise: bool
    random: bool

    def init_state(self, params) -> dict: ...

    def forward(self, params, x, ctx: Context = INFERENCE) -> tuple: ...

    def backward(self, params, cache, dout, need_dx: bool = True) -> tuple: ...


class LossLayer(Protocol):
    """The contract of the layer that ends a `Sequential`: labels in, a scalar loss out.

    `forward(params, scores, t) -> (loss, cache)`; `backward(params, cache, dout=1.0) -> (dx, grads)`.
    """

    def forward(self, params, x, t) -> tuple: ...

    def backward(self, params, cache, dout=1.0) -> tuple: ...


class BaseLayer:
    """The defaults of the `Layer` contract: no weight, not elementwise, no randomness, no state."""

    weight: str | None = None
    elementwise = False
    random = False

    def init_state(self, params):
        return {}

    def forward(self, params, x, ctx=INFERENCE):
        raise NotImplementedError

    def backward(self, params, cache, dout, need_dx=True):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class Affine(BaseLayer):
    """y = x·W + b, with x of shape (N, ...) flattened to (N, D) as the book does."""

    def __init__(self, weight="W", bias="b"):
        self.weight = weight
        self.bias = bias

    def forward(self, params, x, ctx=INFERENCE):
        W, b = params[self.weight], params[self.bias]
        x2 = x if x.ndim == 2 else namespace_of(x).reshape(x, (x.shape[0], -1))
        if x2.shape[1] != W.shape[0]:
            raise ValueError(f"Affine({self.weight}): input has {x2.shape[1]} features per sample "
                             f"(shape {tuple(x.shape)}) but {self.weight} has shape {tuple(W.shape)}")
        return x2 @ W + b, (x2, x.shape), {}

    def backward(self, params, cache, dout, need_dx=True):
        """dout·Wᵀ is skipped without `need_dx`: a third of the matmul work of the book's
        TwoLayerNet, whose first layer's input needs no gradient."""
        x2, x_shape = cache
        grads = {self.weight: x2.T @ dout, self.bias: namespace_of(dout).sum(dout, axis=0)}
        if not need_dx:
            return None, grads
        dx = dout @ params[self.weight].T
        if dx.shape != x_shape:  # images flattened by forward
            dx = namespace_of(dx).reshape(dx, x_shape)
        return dx, grads

    def __repr__(self):
        return f"Affine({self.weight!r}, {self.bias!r})"


class Relu(BaseLayer):
    """max(x, 0); the gradient passes where x > 0 (0 at x == 0, as in the book)."""

    elementwise = True

    def forward(self, params, x, ctx=INFERENCE):
        # a product with the mask (kept for backward): a third of the time of `where` on NumPy
        mask = namespace_of(x).astype(x > 0, x.dtype)
        return x * mask, mask, {}

    def backward(self, params, cache, dout, need_dx=True):
        return dout * cache, {}


class Sigmoid(BaseLayer):
    """1 / (1 + exp(-x)); the backward pass uses y(1 - y) from the forward output."""

    elementwise = True

    def forward(self, params, x, ctx=INFERENCE):
        y = sigmoid(x)
        return y, y, {}

    def backward(self, params, cache, dout, need_dx=True):
        y = cache
        return dout * (1.0 - y) * y, {}


class SoftmaxWithLoss:
    """Softmax followed by the batch-averaged cross-entropy; t is one-hot or integer labels.
    A `LossLayer`."""

    def forward(self, params, x, t):
        if x.ndim != 2:
            raise ValueError(f"SoftmaxWithLoss expects scores of shape (batch, classes), got {tuple(x.shape)}")
        y = softmax(x)
        return cross_entropy_error(y, t), (y, t)

    def backward(self, params, cache, dout=1.0):
        y, t = cache
        if t.shape != y.shape:
            t = one_hot(t, y.shape[-1], y.dtype)
        return (y - t) * (dout / y.shape[0]), {}

    def __repr__(self):
        return "SoftmaxWithLoss()"


class BatchNormalization(BaseLayer):
    """Normalise each feature over the batch, then scale by gamma and shift by beta (Ioffe & Szegedy).

    Training uses the batch's mean and variance and returns the updated running values
    (momentum · running + (1 − momentum) · batch) as state; inference uses the running values.
    As in the book, the running mean and variance start at 0 and eps is 1e-6 (inside the root).
    Inputs of shape (N, ...) are normalised per feature of the flattened (N, D) view.
    """

    EPS = 1e-6

    def __init__(self, gamma, beta, running_mean, running_var, momentum=0.9):
        self.gamma, self.beta = gamma, beta
        self.running_mean, self.running_var = running_mean, running_var
        self.momentum = float(momentum)

    def init_state(self, params):
        xp = namespace_of(params[self.gamma])
        zeros = xp.zeros_like(params[self.gamma])
        return {self.running_mean: zeros, self.running_var: zeros}

    def forward(self, params, x, ctx=INFERENCE):
        xp = namespace_of(x)
        x2 = xp.reshape(x, (x.shape[0], -1))
        updates = {}
        if ctx.train:
            mean = xp.mean(x2, axis=0)
            centred = x2 - mean
            var = xp.mean(centred ** 2, axis=0)
            m = self.momentum
            updates = {self.running_mean: m * self._running(ctx, self.running_mean) + (1 - m) * mean,
                       self.running_var: m * self._running(ctx, self.running_var) + (1 - m) * var}
        else:
            centred = x2 - self._running(ctx, self.running_mean)
            var = self._running(ctx, self.running_var)
        std = xp.sqrt(var + self.EPS)
        normalised = centred / std
        y = params[self.gamma] * normalised + params[self.beta]
        return xp.reshape(y, x.shape), (normalised, std, ctx.train, x.shape), updates

    def backward(self, params, cache, dout, need_dx=True):
        normalised, std, batch_stats, x_shape = cache
        xp = namespace_of(dout)
        dout = xp.reshape(dout, (dout.shape[0], -1))
        grads = {self.gamma: xp.sum(normalised * dout, axis=0), self.beta: xp.sum(dout, axis=0)}
        if not need_dx:
            return None, grads
        dnorm = params[self.gamma] * dout
        if batch_stats:  # mean and variance depend on every sample of the batch
            dx = (dnorm - xp.mean(dnorm, axis=0)
                  - normalised * xp.mean(dnorm * normalised, axis=0)) / std
        else:
            dx = dnorm / std
        return xp.reshape(dx, x_shape), grads

    def _running(self, ctx, name):
        if ctx.state is None or name not in ctx.state:
            raise ValueError(f"BatchNormalization needs {name!r} in the state: pass "
                             "state=model.init_state(params) (or the state training returned)")
        return ctx.state[name]

    def __repr__(self):
        return f"BatchNormalization({self.gamma!r}, {self.beta!r}, momentum={self.momentum})"


class Dropout(BaseLayer):
    """Zero each input with probability `ratio` in training; the book scales by 1 − ratio at test.

    `inverted=True` is the modern convention instead: scale the kept inputs by 1/(1 − ratio) in
    training and pass everything through at test. The mask comes from `ctx.key`, or with `mask`
    (a state entry's name) it is `ctx.state[mask]`, 1 where an input is kept, drawn by the
    caller: `xpnet book run` draws it from the book's global `np.random`, as the book does.
    """

    def __init__(self, ratio=0.5, inverted=False, mask=None):
        if not 0 <= ratio < 1:
            raise ValueError(f"dropout ratio must be in [0, 1), got {ratio}")
        self.ratio, self.inverted, self.mask = float(ratio), inverted, mask
        self.random = mask is None

    def forward(self, params, x, ctx=INFERENCE):
        if not ctx.train:
            return (x if self.inverted else x * (1.0 - self.ratio)), None, {}
        if self.mask is not None:
            mask = backend_of(x).xp.astype(ctx.state[self.mask], x.dtype)
        elif ctx.key is None:
            raise ValueError("Dropout in training mode needs a random key (key=...)")
        else:
            backend = backend_of(x)
            keep = backend.uniform(ctx.key, x.shape, x.dtype) > self.ratio  # as the book
            mask = backend.xp.astype(keep, x.dtype)
        if self.inverted:
            mask = mask * (1.0 / (1.0 - self.ratio))
        return x * mask, mask, {}

    def backward(self, params, cache, dout, need_dx=True):
        mask = cache
        if mask is None:  # inference mode
            return (dout if self.inverted else dout * (1.0 - self.ratio)), {}
        return dout * mask, {}

    def __repr__(self):
        extras = (", inverted=True" if self.inverted else "") + \
            (f", mask={self.mask!r}" if self.mask is not None else "")
        return f"Dropout({self.ratio}{extras})"


#: Activation layers by the names the book's models accept (argparse choices: `list(ACTIVATIONS)`).
ACTIVATIONS = {"sigmoid": Sigmoid, "relu": Relu}


def activation_layer(name):
    """A new activation layer from its name ('sigmoid' or 'relu', any case)."""
    try:
        return ACTIVATIONS[str(name).lower()]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}") from None
