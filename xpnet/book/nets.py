"""The book's nets as its scripts use them: NumPy in, NumPy out, the work on the run's backend.

Each class takes the book's constructor arguments and builds xpnet's pure model of the same net
(`xpnet.nn.models`, `xpnet.nn.convnets`) on the session's backend in float64. `params` holds
host NumPy arrays drawn from the global `np.random` in the book's order, so a seeded script
starts from the book's very weights; Dropout masks are drawn from it too, as the book's layers
do. Every call reads `params` afresh and runs one compiled program (on JAX) for the whole net.
"""
import math
from typing import NamedTuple

import numpy as np

from xpnet.book.arrays import to_host
from xpnet.book.params_file import load_params, save_params
from xpnet.book.session import BOOK_DTYPE, current
from xpnet.errors import ConfigError
from xpnet.nn import convnets, models
from xpnet.nn.batching import count_in_chunks
from xpnet.nn.init import init_std
from xpnet.nn.layers import Affine, Dropout
from xpnet.nn.network import Sequential
from xpnet.nn.structured_gradient import model_numerical_gradient

_PROGRAMS = {}  # (backend, model structure) -> _Programs


class _Programs:
    """A model's functions, jitted once per backend and structure (its repr, weight decay λ
    left out: it is an argument), so a script that builds thirty nets of one shape, or a search
    over λ, compiles each program once on JAX.

    With a `layout` (backends that do not share host memory) the params go in as one flat
    vector and the gradients come out as one: two transfers a step instead of two per parameter.
    """

    def __init__(self, backend, model, layout=None):
        self.model = model  # (λ 0: the programs take it as an argument)

        def taking(fn):  # fn(params, ...) -> program(params or flat vector, ...)
            if layout is None:
                return backend.jit(fn)
            return backend.jit(lambda flat, *rest: fn(layout.unpack(backend.xp, flat), *rest))

        def gradient(params, x, t, state, decay):
            loss, grads, new_state = model.loss_grad_state(params, x, t, state, None, decay)
            return loss, (grads if layout is None else layout.pack(backend.xp, grads)), new_state

        self.predict = taking(lambda p, x, s: model.predict(p, x, False, s))
        self.train_predict = taking(lambda p, x, s: model.forward(p, x, True, s)[::2])
        self.loss = taking(lambda p, x, t, s, decay: model.loss(p, x, t, False, s, None, decay))
        self.train_loss = taking(lambda p, x, t, s, decay: _train_loss(model, p, x, t, s, decay))
        self.gradient = taking(gradient)
        self.correct = taking(model.correct_count)


class _Layout(NamedTuple):
    """Where each parameter lies in one flat vector: names (in the book's gradient order) and
    shapes."""
    names: tuple
    shapes: tuple

    def bounds(self):
        ends = np.cumsum([math.prod(shape) for shape in self.shapes]).tolist()
        return zip(self.names, self.shapes, [0, *ends[:-1]], ends)

    def pack(self, xp, tree):
        return xp.concat([xp.reshape(tree[name], (-1,)) for name in self.names])

    def unpack(self, xp, flat):
        return {name: xp.reshape(flat[start:stop], shape)
                for name, shape, start, stop in self.bounds()}

    def pack_host(self, params):
        """The host params as one float64 vector; a replaced entry of the wrong shape is refused."""
        for name, shape in zip(self.names, self.shapes):
            if np.shape(params[name]) != shape:
                raise ConfigError(f"params[{name!r}] has shape {np.shape(params[name])}, the net "
                                  f"needs {shape}")
        return np.concatenate([np.ravel(np.asarray(params[name], dtype=np.float64))
                               for name in self.names])

    def unpack_host(self, flat):
        """{name: writable view of `flat`} (a read-only `flat` is copied once)."""
        flat = flat if flat.flags.writeable else flat.copy()
        return {name: flat[start:stop].reshape(shape) for name, shape, start, stop in self.bounds()}


def _train_loss(model, params, x, t, state, decay):
    scores, _, new_state = model.forward(params, x, True, state)
    loss = model.loss_layer.forward(params, scores, t)[0] + model.decay_loss(params, decay)
    return loss, new_state


def init_scale(weight_init_std):
    """shape -> the std of a weight of that shape (`xpnet.nn.init.init_std`), the fan-in being a
    matrix's rows or a filter's C·FH·FW, as the book's nets count it."""
    def scale(shape):
        return init_std(weight_init_std, math.prod(shape[1:]) if len(shape) == 4 else shape[0])
    return scale


class BookNet:
    """What the served nets share. `params` (W1, b1, …) is the single source of truth: every
    method reads it afresh, so `params[key] -= lr * grad[key]`, `optimizer.update(params, grads)`
    and replacing an entry all take effect on every backend. BatchNorm's running statistics
    stay on the device; each training-mode pass updates them, as the book's layers do."""

    #: Whether `loss(x, t)` runs in training mode by default (the book's DeepConvNet does).
    loss_trains = False

    def __init__(self, net, scale):
        self._net, self._backend = net, net.backend
        layers, self._masks, width = [], [], None
        for layer in net.model.layers:
            if isinstance(layer, Affine):
                width = net.params[layer.weight].shape[1]
            if isinstance(layer, Dropout):  # its mask comes from np.random, as the book's
                name = f"dropout_mask{len(self._masks) + 1}"
                self._masks.append((name, width, layer.ratio))
                layer = Dropout(layer.ratio, mask=name)
            layers.append(layer)
        self.params = {name: _initial(name, tuple(value.shape), scale)
                       for name, value in net.params.items()}  # W1, W2, … drawn in order
        self._state, net.params = net.state, {}
        order = [name for layer in layers for name in vars(layer).values()
                 if isinstance(name, str) and name in self.params]
        self._layout = _Layout(tuple(order), tuple(self.params[n].shape for n in order))
        packed = None if self._backend.shares_host_memory else self._layout
        structure = Sequential(layers, net.model.loss_layer)  # λ goes in as an argument
        key = (self._backend, repr(structure), packed)
        if key not in _PROGRAMS:
            _PROGRAMS[key] = _Programs(self._backend, structure, packed)
        self._programs, self._decay = _PROGRAMS[key], net.model.weight_decay

    def predict(self, x, train_flg=False):
        x, params = self._net.to_device(x), self._device_params()
        if not train_flg:
            return to_host(self._backend, self._programs.predict(params, x, self._state))
        y, state = self._programs.train_predict(params, x, self._training_state(x.shape[0]))
        self._keep(state)
        return to_host(self._backend, y)

    def loss(self, x, t, train_flg=None):
        x, t = self._inputs(x, t)
        params = self._device_params()
        if not (self.loss_trains if train_flg is None else train_flg):
            loss = self._programs.loss(params, x, t, self._state, self._decay)
        else:
            loss, state = self._programs.train_loss(params, x, t, self._training_state(x.shape[0]),
                                                    self._decay)
            self._keep(state)
        return np.float64(self._backend.to_numpy(loss))

    def accuracy(self, x, t, batch_size=100):
        """The fraction classified right in inference mode (`batch_size` is the book's; xpnet
        counts in chunks of its own, which gives the same number)."""
        x, t = self._inputs(x, t)
        count = count_in_chunks(self._programs.correct, self._device_params(), x, t, self._state)
        return np.float64(self._backend.to_numpy(count)) / x.shape[0]

    def gradient(self, x, t):
        """Backprop in training mode: {name: host array}, in the book's order."""
        x, t = self._inputs(x, t)
        _, grads, state = self._programs.gradient(self._device_params(), x, t,
                                                  self._training_state(x.shape[0]), self._decay)
        self._keep(state)
        return self._host_grads(grads)

    def numerical_gradient(self, x, t):
        """Central differences of the training-mode loss for every parameter: the book's numbers
        (h = 1e-4) computed in bulk (`xpnet.nn.structured_gradient`). The Dropout masks are drawn
        once for all of them, where the book draws new ones for every perturbed loss."""
        x, t = self._inputs(x, t)
        params = {name: self._backend.asarray(value, BOOK_DTYPE)
                  for name, value in self.params.items()}
        grads = model_numerical_gradient(self._programs.model, params, x, t,
                                         self._training_state(x.shape[0]),
                                         weight_decay=self._decay)
        return {name: to_host(self._backend, grads[name]) for name in self._layout.names}

    def save_params(self, file_name="params.pkl"):
        save_params(file_name, self.params, type(self).__name__)

    def load_params(self, file_name="params.pkl"):
        self.params.update(load_params(file_name, self.params))

    def _inputs(self, x, t):
        """x and t on the device; labels may also be an (N, 1) column, as some scripts slice
        them. Host floats go over already in float64 (no cast on the device afterwards)."""
        t = np.asarray(t) if isinstance(t, (list, tuple)) else t
        if getattr(t, "ndim", 0) == 2 and t.shape[1] == 1 and t.shape[0] == len(x):
            t = t[:, 0]
        if isinstance(t, np.ndarray) and t.dtype.kind == "f":
            t = t.astype(np.float64, copy=False)
        return self._net.to_device(x, t)

    def _device_params(self):
        """The params as the programs take them: each one (no copy where memory is shared), or
        all packed into one vector moved in one transfer."""
        if self._backend.shares_host_memory:
            return {name: self._backend.asarray(value, BOOK_DTYPE)
                    for name, value in self.params.items()}
        return self._backend.asarray(self._layout.pack_host(self.params), BOOK_DTYPE)

    def _training_state(self, n):
        """BatchNorm's state plus, per Dropout layer in order, the book's mask np.random.rand(N, D)
        > ratio, drawn from the global generator."""
        state = dict(self._state)
        for name, width, ratio in self._masks:
            state[name] = self._backend.asarray(np.random.rand(n, width) > ratio)
        return state

    def _keep(self, state):
        masks = {name for name, _, _ in self._masks}
        self._state = {k: v for k, v in state.items() if k not in masks}

    def _host_grads(self, grads):
        """What `gradient`'s program returned, as {name: writable host array}."""
        if self._backend.shares_host_memory:
            return {name: to_host(self._backend, grads[name]) for name in self._layout.names}
        return self._layout.unpack_host(self._backend.to_numpy(grads))


def _initial(name, shape, scale):
    """A parameter's initial value as the book makes it: weights scale·randn, γ ones, others 0."""
    if name.startswith("W"):
        return scale(shape) * np.random.randn(*shape)
    return np.ones(shape) if name.startswith("gamma") else np.zeros(shape)


def _backend():
    return current().backend


class TwoLayerNet(BookNet):
    """Chapter 4's (sigmoid; for scripts in a folder named ch04) or chapter 5's (ReLU) net."""

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01):
        activation = "sigmoid" if current().chapter == "ch04" else "relu"
        super().__init__(models.TwoLayerNet(input_size, hidden_size, output_size, weight_init_std,
                                            activation, _backend(), dtype=BOOK_DTYPE),
                         init_scale(weight_init_std))


class MultiLayerNet(BookNet):
    def __init__(self, input_size, hidden_size_list, output_size, activation="relu",
                 weight_init_std="relu", weight_decay_lambda=0):
        super().__init__(models.MultiLayerNet(input_size, hidden_size_list, output_size, activation,
                                              weight_init_std, weight_decay_lambda, _backend(),
                                              dtype=BOOK_DTYPE),
                         init_scale(weight_init_std))


class MultiLayerNetExtend(BookNet):
    def __init__(self, input_size, hidden_size_list, output_size, activation="relu",
                 weight_init_std="relu", weight_decay_lambda=0, use_dropout=False,
                 dropout_ration=0.5, use_batchnorm=False):
        super().__init__(models.MultiLayerNetExtend(
            input_size, hidden_size_list, output_size, activation, weight_init_std,
            weight_decay_lambda, use_dropout, dropout_ration, use_batchnorm, _backend(),
            dtype=BOOK_DTYPE), init_scale(weight_init_std))


class SimpleConvNet(BookNet):
    def __init__(self, input_dim=(1, 28, 28),
                 conv_param={"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1},
                 hidden_size=100, output_size=10, weight_init_std=0.01):
        super().__init__(convnets.SimpleConvNet(input_dim, conv_param, hidden_size, output_size,
                                                weight_init_std, _backend(), dtype=BOOK_DTYPE),
                         init_scale(weight_init_std))


class DeepConvNet(BookNet):
    """The book's chapter-8 net with its fixed layers; `loss(x, t)` runs in training mode, as
    the book's does. A `conv_param_N` other than the book's is refused."""

    loss_trains = True

    def __init__(self, input_dim=(1, 28, 28), conv_param_1=None, conv_param_2=None,
                 conv_param_3=None, conv_param_4=None, conv_param_5=None, conv_param_6=None,
                 hidden_size=50, output_size=10):
        given = (conv_param_1, conv_param_2, conv_param_3, conv_param_4, conv_param_5, conv_param_6)
        for i, (value, (filters, pad)) in enumerate(zip(given, convnets.DEEP_CONVS), start=1):
            book = {"filter_num": filters, "filter_size": 3, "pad": pad, "stride": 1}
            if value is not None and value != book:
                raise ConfigError(f"DeepConvNet: conv_param_{i}={value!r} is not the book's "
                                  f"{book}; xpnet's DeepConvNet has the book's layers only")
        super().__init__(convnets.DeepConvNet(input_dim, hidden_size, output_size, _backend(),
                                              dtype=BOOK_DTYPE), init_scale("he"))
