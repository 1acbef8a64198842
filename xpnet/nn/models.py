"""The book's networks: thin, stateful façades over the pure `Sequential` core."""
from xpnet.backends import get_backend, is_floating
from xpnet.nn.init import affine_params, host_rng
from xpnet.nn.layers import Affine, SoftmaxWithLoss, activation_layer
from xpnet.nn.network import Sequential
from xpnet.nn.numerical import DEFAULT_CHUNK_BYTES, structured_numerical_gradient


class Net:
    """What the book's nets share: `params` (W1, b1, …) as the single source of truth.

    Replace or update entries of `params` (`optimizer.update(net.params, grads)`) and every
    method computes with the current arrays. `model` is the pure core
    (`model.loss_and_grad(params, x, t)`) that training code compiles. Initial weights come from
    a host NumPy generator, so one `seed` gives the same params on every backend.
    """

    def __init__(self, sizes, activation, weight_init_std, weight_decay_lambda, backend, seed, dtype):
        self.backend = get_backend(backend)
        self.dtype = dtype
        self.input_size, self.output_size = sizes[0], sizes[-1]
        layers = []
        for i in range(1, len(sizes)):
            layers.append(Affine(f"W{i}", f"b{i}"))
            if i < len(sizes) - 1:
                layers.append(activation_layer(activation))
        self.model = Sequential(layers, SoftmaxWithLoss(), weight_decay=weight_decay_lambda)
        host = affine_params(host_rng(seed), sizes, weight_init_std)
        self.params = {name: self.backend.asarray(value, dtype) for name, value in host.items()}

    def to_device(self, x, t=None):
        """Host or device inputs as arrays of this net's backend: x (and float t) in the net's dtype."""
        x = self.backend.asarray(x, self.dtype)
        if t is None:
            return x
        t = self.backend.asarray(t)
        return x, (self.backend.asarray(t, self.dtype) if is_floating(t.dtype) else t)

    def predict(self, x):
        return self.model.predict(self.params, self.to_device(x))

    def loss(self, x, t):
        return self.model.loss(self.params, *self.to_device(x, t))

    def accuracy(self, x, t):
        """Fraction of samples classified right, as a Python float."""
        x, t = self.to_device(x, t)
        return float(self.model.correct_count(self.params, x, t)) / x.shape[0]

    def gradient(self, x, t):
        """Gradients of the loss by backprop, keyed like `params`."""
        _, grads = self.model.loss_and_grad(self.params, *self.to_device(x, t))
        return grads

    def numerical_gradient(self, x, t, chunk_bytes=DEFAULT_CHUNK_BYTES):
        """Gradients of the loss by central differences (h = 1e-4) for every parameter.

        The same numbers as the book's one-parameter-at-a-time loop, computed in bulk and only
        where each perturbation changes something (see `xpnet.nn.numerical`); `chunk_bytes`
        bounds the memory of one bulk step.
        """
        x, t = self.to_device(x, t)
        return structured_numerical_gradient(self.model, self.params, x, t, chunk_bytes=chunk_bytes)


class TwoLayerNet(Net):
    """Affine → activation → Affine → SoftmaxWithLoss, with the book's constructor and methods."""

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01,
                 activation="sigmoid", backend=None, seed=None, dtype="float32"):
        super().__init__([input_size, hidden_size, output_size], activation, weight_init_std, 0.0,
                         backend, seed, dtype)


class MultiLayerNet(Net):
    """(Affine → activation) × len(hidden_size_list) → Affine → SoftmaxWithLoss, as in chapter 6.

    `weight_init_std`: a number (the std), "relu"/"he" (√(2/n)) or "sigmoid"/"xavier" (√(1/n));
    `weight_decay_lambda` adds ½λΣW² to the loss for every weight matrix.
    """

    def __init__(self, input_size, hidden_size_list, output_size, activation="relu",
                 weight_init_std="relu", weight_decay_lambda=0.0, backend=None, seed=None,
                 dtype="float32"):
        hidden = list(hidden_size_list)
        if not hidden or any(int(size) != size or size <= 0 for size in hidden):
            raise ValueError(f"hidden_size_list must be positive integers, got {hidden_size_list!r}")
        super().__init__([input_size, *hidden, output_size], activation, weight_init_std,
                         weight_decay_lambda, backend, seed, dtype)
        self.hidden_size_list = hidden
        self.weight_decay_lambda = weight_decay_lambda
