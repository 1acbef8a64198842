"""The book's networks: thin, stateful façades over the pure `Sequential` core."""
import numpy as np

from xpnet.backends import get_backend
from xpnet.checks import check_fits_in_memory, check_float_dtype, check_int, check_number, check_seed
from xpnet.data.validation import check_labels
from xpnet.errors import ConfigError
from xpnet.nn.batching import count_in_chunks
from xpnet.nn.init import affine_params, host_rng
from xpnet.nn.layers import Affine, BatchNormalization, Dropout, SoftmaxWithLoss, activation_layer
from xpnet.nn.network import Sequential
from xpnet.nn.structured_gradient import DEFAULT_CHUNK_BYTES, model_numerical_gradient


class Net:
    """What the book's nets share: `params` (W1, b1, …) as the single source of truth.

    Replace or update entries of `params` (`optimizer.update(net.params, grads)`) and every
    method computes with the current arrays. `state` holds BatchNorm's running statistics (empty
    without BatchNorm); like the book's layers, every training-mode forward pass updates it.
    `model` is the pure core (`model.loss_and_grad(params, x, t)`) that training code compiles.
    Initial weights come from a host NumPy generator, so one `seed` gives the same params on
    every backend; Dropout masks come from keys drawn from the same seed.
    """

    def __init__(self, sizes, activation, weight_init_std, weight_decay_lambda, backend, seed, dtype,
                 batchnorm=False, dropout_ratio=None, inverted_dropout=False):
        self.backend = get_backend(backend)
        self.dtype = check_float_dtype(dtype)
        sizes = [check_int(size, name) for size, name in
                 zip(sizes, ["input_size", *["a hidden size"] * (len(sizes) - 2), "output_size"])]
        self.sizes, self.activation = sizes, str(activation).lower()
        self.weight_init_std = (weight_init_std.lower() if isinstance(weight_init_std, str)
                                else weight_init_std)
        self.weight_decay_lambda = weight_decay_lambda
        self.batchnorm, self.dropout = bool(batchnorm), dropout_ratio  # (the ratio or None)
        self.inverted_dropout = bool(inverted_dropout)
        if isinstance(weight_decay_lambda, (int, float)):  # (an array λ is the search's, checked there)
            check_number(weight_decay_lambda, "weight_decay_lambda", low=0)
        if dropout_ratio is not None:
            check_number(dropout_ratio, "dropout_ratio", low=0, high=1, high_open=True)
        # initial weights are drawn in float64 on the host, then copied to the backend
        check_fits_in_memory(sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:])), 8 + 8,
                             "the net's initial weights")
        self.input_size, self.output_size = sizes[0], sizes[-1]
        self.input_shape = (self.input_size,)  # one sample's shape, as fit checks the data
        rng = host_rng(check_seed(seed))
        host = affine_params(rng, sizes, weight_init_std)
        layers = []
        for i in range(1, len(sizes)):
            layers.append(Affine(f"W{i}", f"b{i}"))
            if i == len(sizes) - 1:
                break
            if batchnorm:
                host[f"gamma{i}"], host[f"beta{i}"] = np.ones(sizes[i]), np.zeros(sizes[i])
                layers.append(BatchNormalization(f"gamma{i}", f"beta{i}", f"running_mean{i}",
                                                 f"running_var{i}"))
            layers.append(activation_layer(activation))
            if dropout_ratio is not None:
                layers.append(Dropout(dropout_ratio, inverted=inverted_dropout))
        self.model = Sequential(layers, SoftmaxWithLoss(), weight_decay=weight_decay_lambda)
        self.params = {name: self.backend.asarray(value, dtype) for name, value in host.items()}
        self.state = self.model.init_state(self.params)
        self._keys = np.random.default_rng(rng.integers(2**63))  # seeds of training-mode keys

    def to_device(self, x, t=None):
        """Host or device inputs as arrays of this net's backend: x (and float t) in the net's dtype.
        Labels are checked first (in range, one per sample), on the host for host arrays."""
        if t is not None:
            check_labels(x, t, self.output_size, "t")
        x = self.backend.asarray(x, self.dtype)
        if t is None:
            return x
        t = self.backend.asarray(t)  # on the device once; a float cast happens there
        return x, (self.backend.asarray(t, self.dtype) if self.backend.is_floating(t) else t)

    def next_key(self):
        """A fresh random key for one training-mode pass (its Dropout masks)."""
        return self.backend.key(self._keys.integers(2**31))

    def predict(self, x, train_flg=False):
        x = self.to_device(x)
        if not train_flg:
            return self.model.predict(self.params, x, False, self.state)
        y, _, self.state = self.model.forward(self.params, x, True, self.state, self.next_key())
        return y

    def loss(self, x, t, train_flg=False):
        x, t = self.to_device(x, t)
        if not train_flg:
            return self.model.loss(self.params, x, t, False, self.state)
        y = self.predict(x, train_flg=True)
        loss, _ = self.model.loss_layer.forward(self.params, y, t)
        return loss + self.model.decay_loss(self.params)

    def accuracy(self, x, t):
        """Fraction of samples classified right (inference mode), as a Python float; EVAL_CHUNK
        samples per forward pass, so a conv net's test set needs no gigabytes."""
        x, t = self.to_device(x, t)
        count = count_in_chunks(self.model.correct_count, self.params, x, t, self.state)
        return self.backend.to_numpy(count).item() / x.shape[0]

    def gradient(self, x, t):
        """Gradients of the loss by backprop (training mode), keyed like `params`."""
        x, t = self.to_device(x, t)
        _, grads, self.state = self.model.loss_grad_state(self.params, x, t, self.state,
                                                          self.next_key())
        return grads

    def numerical_gradient(self, x, t, chunk_bytes=DEFAULT_CHUNK_BYTES):
        """Gradients of the training-mode loss by central differences (h = 1e-4), every parameter.

        The same numbers as the book's one-parameter-at-a-time loop, computed in bulk and only
        where each perturbation changes something (see `xpnet.nn.structured_gradient`);
        `chunk_bytes` bounds the memory of one bulk step. All perturbed losses share one Dropout
        mask.
        """
        x, t = self.to_device(x, t)
        return model_numerical_gradient(self.model, self.params, x, t, self.state, self.next_key(),
                                        chunk_bytes=chunk_bytes)

    def config(self):
        """What defines this net, JSON-able: its class and constructor arguments (not the seed
        nor the backend), e.g. {"class": "TwoLayerNet", "input_size": 784, "hidden_size": 50,
        "output_size": 10, "weight_init_std": 0.01, "activation": "sigmoid", "dtype": "float32"}.
        `Net.from_config(config, backend, seed)` builds the net again."""
        return {"class": type(self).__name__, **self._arguments(), "dtype": self.dtype}

    @staticmethod
    def from_config(config, backend=None, seed=None):
        """The net that `config` (from `config()`) describes, its weights drawn from `seed`."""
        arguments = dict(config)
        name = arguments.pop("class", None)
        if name not in NETS:
            raise ConfigError(f"unknown net class {name!r}; known: {', '.join(NETS)}")
        return NETS[name](**arguments, backend=backend, seed=seed)

    def __repr__(self):
        """The one-line description the CLI prints and saves in checkpoints, e.g.
        "MultiLayerNetExtend(784, [100, 100], 10, relu, init he, weight decay 0.1, BatchNorm,
        Dropout 0.5)": the sizes, activation and init, then only what differs from the plain net."""
        lam = float(self.weight_decay_lambda)
        hidden = self.sizes[1] if isinstance(self, TwoLayerNet) else self.sizes[1:-1]
        extras = "".join([f", weight decay {lam}" if lam else "", ", BatchNorm" if self.batchnorm else "",
                          "" if self.dropout is None else f", Dropout {float(self.dropout)}",
                          " inverted" if self.dropout is not None and self.inverted_dropout else ""])
        return (f"{self._name()}({self.input_size}, {hidden}, {self.output_size}, {self.activation}, "
                f"init {_init(self.weight_init_std)}{extras})")

    def _name(self):
        return type(self).__name__

    def _arguments(self):
        """The constructor arguments of this class that define the net (JSON-able values)."""
        raise NotImplementedError


def _init(weight_init_std):
    """weight_init_std as the config holds it: a name (lower case) or a float."""
    return weight_init_std if isinstance(weight_init_std, str) else float(weight_init_std)


class TwoLayerNet(Net):
    """Affine → activation → Affine → SoftmaxWithLoss, with the book's constructor and methods."""

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01,
                 activation="sigmoid", backend=None, seed=None, dtype="float32"):
        super().__init__([input_size, hidden_size, output_size], activation, weight_init_std, 0.0,
                         backend, seed, dtype)

    def _arguments(self):
        return {"input_size": self.input_size, "hidden_size": self.sizes[1],
                "output_size": self.output_size, "weight_init_std": _init(self.weight_init_std),
                "activation": self.activation}


class MultiLayerNet(Net):
    """(Affine → activation) × len(hidden_size_list) → Affine → SoftmaxWithLoss, as in chapter 6.

    `weight_init_std`: a number (the std), "relu"/"he" (√(2/n)) or "sigmoid"/"xavier" (√(1/n));
    `weight_decay_lambda` adds ½λΣW² to the loss for every weight matrix.
    """

    def __init__(self, input_size, hidden_size_list, output_size, activation="relu",
                 weight_init_std="relu", weight_decay_lambda=0.0, backend=None, seed=None,
                 dtype="float32", **extend):
        hidden = list(hidden_size_list)
        if not hidden:
            raise ConfigError(f"hidden_size_list must hold at least one size, got {hidden_size_list!r}")
        super().__init__([input_size, *hidden, output_size], activation, weight_init_std,
                         weight_decay_lambda, backend, seed, dtype, **extend)
        self.hidden_size_list = hidden

    def _arguments(self):
        return {"input_size": self.input_size, "hidden_size_list": self.sizes[1:-1],
                "output_size": self.output_size, "activation": self.activation,
                "weight_init_std": _init(self.weight_init_std),
                "weight_decay_lambda": float(self.weight_decay_lambda)}


class MultiLayerNetExtend(MultiLayerNet):
    """MultiLayerNet with the book's optional BatchNorm and Dropout in every hidden block:
    Affine → BatchNormalization → activation → Dropout.

    `dropout_ration` is the book's spelling; `dropout_ratio` is accepted too. `inverted_dropout`
    switches to the modern convention (scale in training instead of at test).
    """

    def __init__(self, input_size, hidden_size_list, output_size, activation="relu",
                 weight_init_std="relu", weight_decay_lambda=0.0, use_dropout=False,
                 dropout_ration=0.5, use_batchnorm=False, backend=None, seed=None, dtype="float32",
                 dropout_ratio=None, inverted_dropout=False):
        ratio = dropout_ration if dropout_ratio is None else dropout_ratio
        super().__init__(input_size, hidden_size_list, output_size, activation, weight_init_std,
                         weight_decay_lambda, backend, seed, dtype, batchnorm=use_batchnorm,
                         dropout_ratio=ratio if use_dropout else None,
                         inverted_dropout=inverted_dropout)
        self.use_dropout, self.use_batchnorm = use_dropout, use_batchnorm
        self.dropout_ratio = ratio

    def _arguments(self):
        return {**super()._arguments(), "use_dropout": bool(self.use_dropout),
                "dropout_ratio": float(self.dropout_ratio), "use_batchnorm": bool(self.use_batchnorm),
                "inverted_dropout": self.inverted_dropout}

    def _name(self):
        """Without BatchNorm and Dropout it is the book's MultiLayerNet, and says so."""
        return type(self).__name__ if self.use_batchnorm or self.use_dropout else "MultiLayerNet"


#: The book's nets by class name (`Net.from_config`).
NETS = {cls.__name__: cls for cls in (TwoLayerNet, MultiLayerNet, MultiLayerNetExtend)}
#: The nets by the CLI's names (argparse choices: `list(MODELS)`); "multi-layer" is
#: MultiLayerNetExtend, which is MultiLayerNet without use_batchnorm and use_dropout.
MODELS = {"two-layer": TwoLayerNet, "multi-layer": MultiLayerNetExtend}
