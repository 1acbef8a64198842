"""The book's convolutional nets (chapters 7 and 8) on the same `Net` façade as the MLPs.

`SimpleConvNet` and `DeepConvNet` build a `Sequential` of the chapter-7 layers and draw their
initial weights on the host (NumPy, one seed → the same params on every backend); `predict`,
`loss`, `accuracy`, `gradient`, `numerical_gradient`, `to_device` and `config` are `Net`'s.
"""
import math

import numpy as np

from xpnet.backends import get_backend
from xpnet.checks import check_float_dtype, check_int, check_number, check_seed
from xpnet.errors import ConfigError
from xpnet.nn.conv import Convolution, Pooling, conv_output_size
from xpnet.nn.init import host_rng
from xpnet.nn.layers import Affine, Dropout, Relu, SoftmaxWithLoss
from xpnet.nn.models import MODELS, NETS, Net
from xpnet.nn.network import Sequential


def _input_dim(input_dim):
    dims = tuple(input_dim) if isinstance(input_dim, (list, tuple)) else None
    if dims is None or len(dims) != 3:
        raise ConfigError(f"input_dim must be (channels, height, width), got {input_dim!r}")
    return tuple(check_int(d, "each of input_dim") for d in dims)


def _conv_param(param, name):
    """A conv_param dict (filter_num, filter_size, pad, stride) with its values checked."""
    if not isinstance(param, dict) or set(param) - {"filter_num", "filter_size", "pad", "stride"}:
        raise ConfigError(f"{name} must be a dict of filter_num, filter_size, pad, stride; "
                          f"got {param!r}")
    return {"filter_num": check_int(param.get("filter_num", 30), f"{name}['filter_num']"),
            "filter_size": check_int(param.get("filter_size", 5), f"{name}['filter_size']"),
            "pad": check_int(param.get("pad", 0), f"{name}['pad']", minimum=0),
            "stride": check_int(param.get("stride", 1), f"{name}['stride']")}


def _output_size(size, filter_size, stride, pad, what):
    try:
        return conv_output_size(size, filter_size, stride, pad)
    except ValueError as err:
        raise ConfigError(f"{what}: {err}") from None


class ConvNet(Net):
    """What the conv nets share: the `Net` attributes its methods use, from host params and layers.

    `Net.__init__` builds Affine stacks from a list of sizes, so a conv net sets the same
    attributes (backend, dtype, model, params, state, input/output sizes, keys) itself.
    """

    def _build(self, input_dim, output_size, layers, host, backend, seed_rng, dtype):
        self.backend = get_backend(backend)
        self.dtype = check_float_dtype(dtype)
        self.input_dim = input_dim
        self.input_size, self.output_size = math.prod(input_dim), output_size
        self.input_shape = input_dim
        self.weight_decay_lambda, self.batchnorm, self.dropout = 0.0, False, None
        self.inverted_dropout = False
        self.model = Sequential(layers, SoftmaxWithLoss())
        self.params = {name: self.backend.asarray(value, self.dtype) for name, value in host.items()}
        self.state = self.model.init_state(self.params)
        self._keys = np.random.default_rng(seed_rng.integers(2**63))  # seeds of training-mode keys

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._arguments().items())
        return f"{type(self).__name__}({args})"


class SimpleConvNet(ConvNet):
    """Convolution → ReLU → Pooling(2×2, stride 2) → Affine → ReLU → Affine → SoftmaxWithLoss
    (the book's chapter-7 net); params W1 (FN, C, FS, FS), b1, W2, b2, W3, b3."""

    def __init__(self, input_dim=(1, 28, 28),
                 conv_param={"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1},
                 hidden_size=100, output_size=10, weight_init_std=0.01, backend=None, seed=0,
                 dtype="float32"):
        input_dim = _input_dim(input_dim)
        conv = _conv_param(conv_param, "conv_param")
        hidden_size, output_size = check_int(hidden_size, "hidden_size"), check_int(output_size, "output_size")
        std = check_number(weight_init_std, "weight_init_std", low=0)
        channels, size = input_dim[0], input_dim[1]
        if input_dim[1] != input_dim[2]:
            raise ConfigError(f"SimpleConvNet takes square images (the book's), got {input_dim}")
        fn, fs = conv["filter_num"], conv["filter_size"]
        conv_size = _output_size(size, fs, conv["stride"], conv["pad"], "SimpleConvNet")
        pool_output_size = fn * (conv_size // 2) ** 2
        if pool_output_size == 0:
            raise ConfigError(f"SimpleConvNet: the convolution's {conv_size}x{conv_size} output is "
                              "too small for 2x2 pooling")
        rng = host_rng(check_seed(seed))
        host = {"W1": std * rng.standard_normal((fn, channels, fs, fs)), "b1": np.zeros(fn),
                "W2": std * rng.standard_normal((pool_output_size, hidden_size)),
                "b2": np.zeros(hidden_size),
                "W3": std * rng.standard_normal((hidden_size, output_size)),
                "b3": np.zeros(output_size)}
        layers = [Convolution("W1", "b1", conv["stride"], conv["pad"]), Relu(),
                  Pooling(2, 2, stride=2), Affine("W2", "b2"), Relu(), Affine("W3", "b3")]
        self.conv_param, self.hidden_size, self.weight_init_std = conv, hidden_size, std
        self._build(input_dim, output_size, layers, host, backend, rng, dtype)

    def _arguments(self):
        return {"input_dim": list(self.input_dim), "conv_param": dict(self.conv_param),
                "hidden_size": self.hidden_size, "output_size": self.output_size,
                "weight_init_std": self.weight_init_std}


#: The book's six 3×3 convolutions of DeepConvNet (filter_num, pad); a 2×2 pool after each pair.
DEEP_CONVS = ((16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1))


class DeepConvNet(ConvNet):
    """The book's chapter-8 net (about 99 % on MNIST):

        conv 16 - relu - conv 16 - relu - pool - conv 32 - relu - conv 32 - relu - pool -
        conv 64 - relu - conv 64 - relu - pool - affine 50 - relu - dropout 0.5 - affine 10 -
        dropout 0.5 - softmax

    3×3 filters, stride 1, pads 1, 1, 1, 2, 1, 1; He init (√(2/fan-in)) with the book's fan-ins
    (C·3·3 for the convolutions, 64·4·4 and hidden_size for the affines); params W1..W8, b1..b8.
    The book's dropout after the last Affine is kept (`final_dropout=False` drops it).
    """

    def __init__(self, input_dim=(1, 28, 28), hidden_size=50, output_size=10, backend=None, seed=0,
                 dtype="float32", dropout_ratio=0.5, final_dropout=True):
        input_dim = _input_dim(input_dim)
        hidden_size, output_size = check_int(hidden_size, "hidden_size"), check_int(output_size, "output_size")
        ratio = check_number(dropout_ratio, "dropout_ratio", low=0, high=1, high_open=True)
        rng = host_rng(check_seed(seed))
        host, layers = {}, []
        channels, (h, w) = input_dim[0], input_dim[1:]
        for i, (filters, pad) in enumerate(DEEP_CONVS, start=1):
            fan_in = channels * 3 * 3
            host[f"W{i}"] = math.sqrt(2.0 / fan_in) * rng.standard_normal((filters, channels, 3, 3))
            host[f"b{i}"] = np.zeros(filters)
            layers += [Convolution(f"W{i}", f"b{i}", 1, pad), Relu()]
            h, w = (_output_size(s, 3, 1, pad, f"DeepConvNet conv {i}") for s in (h, w))
            channels = filters
            if i % 2 == 0:
                layers.append(Pooling(2, 2, stride=2))
                h, w = (_output_size(s, 2, 2, 0, f"DeepConvNet pool after conv {i}") for s in (h, w))
        flat = channels * h * w  # 64·4·4 for 28×28 images
        host["W7"] = math.sqrt(2.0 / flat) * rng.standard_normal((flat, hidden_size))
        host["b7"] = np.zeros(hidden_size)
        host["W8"] = math.sqrt(2.0 / hidden_size) * rng.standard_normal((hidden_size, output_size))
        host["b8"] = np.zeros(output_size)
        layers += [Affine("W7", "b7"), Relu(), Dropout(ratio), Affine("W8", "b8")]
        if final_dropout:
            layers.append(Dropout(ratio))
        self.hidden_size, self.dropout_ratio, self.final_dropout = hidden_size, ratio, bool(final_dropout)
        self._build(input_dim, output_size, layers, host, backend, rng, dtype)
        self.dropout = ratio

    def _arguments(self):
        return {"input_dim": list(self.input_dim), "hidden_size": self.hidden_size,
                "output_size": self.output_size, "dropout_ratio": self.dropout_ratio,
                "final_dropout": self.final_dropout}


# Registered where nets are found by class name (Net.from_config) and by the CLI's --model.
NETS.update({cls.__name__: cls for cls in (SimpleConvNet, DeepConvNet)})
MODELS.update({"simple-conv": SimpleConvNet, "deep-conv": DeepConvNet})
#: The CLI names of the conv nets: they take (N, C, H, W) images and train with Adam by default.
CONV_MODELS = ("simple-conv", "deep-conv")
