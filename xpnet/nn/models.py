"""The book's networks: thin, stateful façades over the pure `Sequential` core."""
from xpnet.backends import get_backend, is_floating
from xpnet.nn.init import affine_params, host_rng
from xpnet.nn.layers import Affine, SoftmaxWithLoss, activation_layer
from xpnet.nn.network import Sequential
from xpnet.nn.numerical import DEFAULT_CHUNK_BYTES, structured_numerical_gradient


class TwoLayerNet:
    """Affine → activation → Affine → SoftmaxWithLoss, with the book's constructor and methods.

    `params` (W1, b1, W2, b2) is the single source of truth: replace or update its entries
    (`optimizer.update(net.params, grads)`) and every method computes with the current arrays.
    `model` is the pure core (`model.loss_and_grad(params, x, t)`) that training code compiles.
    Initial weights come from a host NumPy generator, so one `seed` gives the same params on
    every backend.
    """

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01,
                 activation="sigmoid", backend=None, seed=None, dtype="float32"):
        self.backend = get_backend(backend)
        self.dtype = dtype
        self.input_size, self.output_size = input_size, output_size
        self.model = Sequential(
            [Affine("W1", "b1"), activation_layer(activation), Affine("W2", "b2")], SoftmaxWithLoss())
        host = affine_params(host_rng(seed), [input_size, hidden_size, output_size], weight_init_std)
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
