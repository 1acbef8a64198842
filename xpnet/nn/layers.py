"""The book's chapter-5 layers as pure functions of explicit params.

A layer holds only hyperparameters and the *names* of its parameters. `forward(params, x)` reads
the current arrays from `params` and returns `(y, cache)`; `backward(params, cache, dout)` returns
`(dx, grads)` with `grads` keyed like `params`. Nothing is stored on `self` during a step, so the
same layer object serves NumPy eagerly and JAX under `jax.jit`, and replacing `params["W1"]` can
never leave a layer computing with a stale array.
"""
from xpnet.backends import namespace_of
from xpnet.nn.functions import cross_entropy_error, one_hot, sigmoid, softmax


class Affine:
    """y = x·W + b, with x of shape (N, ...) flattened to (N, D) as the book does."""

    def __init__(self, weight="W", bias="b"):
        self.weight = weight
        self.bias = bias

    def forward(self, params, x):
        W, b = params[self.weight], params[self.bias]
        x2 = x.reshape(x.shape[0], -1)
        if x2.shape[1] != W.shape[0]:
            raise ValueError(f"Affine({self.weight}): input has {x2.shape[1]} features per sample "
                             f"(shape {tuple(x.shape)}) but {self.weight} has shape {tuple(W.shape)}")
        return x2 @ W + b, (x2, x.shape)

    def backward(self, params, cache, dout):
        x2, x_shape = cache
        dx = (dout @ params[self.weight].T).reshape(x_shape)
        return dx, {self.weight: x2.T @ dout, self.bias: dout.sum(axis=0)}

    def __repr__(self):
        return f"Affine({self.weight!r}, {self.bias!r})"


class Relu:
    """max(x, 0); the gradient passes where x > 0 (0 at x == 0, as in the book)."""

    #: Works element by element on inputs of any shape (the numerical gradient relies on it).
    elementwise = True

    def forward(self, params, x):
        mask = x > 0
        return namespace_of(x).where(mask, x, 0), mask

    def backward(self, params, cache, dout):
        return namespace_of(dout).where(cache, dout, 0), {}

    def __repr__(self):
        return "Relu()"


class Sigmoid:
    """1 / (1 + exp(-x)); the backward pass uses y(1 - y) from the forward output."""

    elementwise = True

    def forward(self, params, x):
        y = sigmoid(x)
        return y, y

    def backward(self, params, cache, dout):
        y = cache
        return dout * (1.0 - y) * y, {}

    def __repr__(self):
        return "Sigmoid()"


class SoftmaxWithLoss:
    """Softmax followed by the batch-averaged cross-entropy; t is one-hot or integer labels."""

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


#: Activation layers by the names the book's models accept.
ACTIVATIONS = {"sigmoid": Sigmoid, "relu": Relu}


def activation_layer(name):
    """A new activation layer from its name ('sigmoid' or 'relu')."""
    try:
        return ACTIVATIONS[str(name).lower()]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}") from None
