"""What the `xpnet` subcommands share: the data and model options, their argument types, loading
the data set, building the net they describe, and writing results atomically."""
import argparse
import json
import math

from xpnet.backends import BACKEND_NAMES, DEFAULT_BACKEND, DEVICE_VAR, ENV_VAR, get_backend
from xpnet.errors import XpnetError
from xpnet.files import atomic_write
from xpnet.nn.layers import ACTIVATIONS
from xpnet.nn.convnets import CONV_MODELS
from xpnet.nn.models import MODELS
from xpnet.nn.optimizers import OPTIMIZERS

#: The backends --help advertises; array-api-strict (a test backend) is accepted too.
ADVERTISED_BACKENDS = tuple(n for n in BACKEND_NAMES if n != "array-api-strict")
#: The choices of --model, --activation and --optimizer: the registries' names.
MODEL_NAMES, ACTIVATION_NAMES, OPTIMIZER_NAMES = tuple(MODELS), tuple(ACTIVATIONS), tuple(OPTIMIZERS)


def add_data_args(parser):
    parser.add_argument("--backend", default=None,
                        help=f"{' | '.join(ADVERTISED_BACKENDS)} (default: ${ENV_VAR}, "
                             f"else {DEFAULT_BACKEND})")
    parser.add_argument("--device", default=None, metavar="D",
                        help="the backend's device: cpu; cuda or cuda:N (torch, cupy); gpu or gpu:N "
                             f"(jax); mps (torch) (default: ${DEVICE_VAR}, else the library's "
                             "default: a GPU where jax or torch has one)")
    parser.add_argument("--dataset", default="auto",
                        help="mnist, mnist-5k, fashion-mnist, synthetic, or auto: mnist when its "
                             "files are present, else mnist-5k (default: auto)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial weights and batch order (default: 0)")


def add_model_args(parser, smooth=False):
    parser.add_argument("--model", choices=MODEL_NAMES, default="two-layer",
                        help="TwoLayerNet (chapter 4/5), MultiLayerNet (chapter 6), SimpleConvNet "
                             "(chapter 7) or DeepConvNet (chapter 8)")
    parser.add_argument("--hidden", type=positive_int, default=50,
                        help="hidden units of two-layer (default: 50)")
    parser.add_argument("--hidden-sizes", type=_sizes, default=[100, 100, 100, 100],
                        help="hidden layer sizes of multi-layer (default: 100,100,100,100)")
    if smooth:
        parser.add_argument("--activation", choices=ACTIVATION_NAMES, default="sigmoid",
                            help="default: sigmoid, which is smooth; ReLU's kink at 0 spoils central "
                                 "differences wherever a perturbation moves a pre-activation across it")
    else:
        parser.add_argument("--activation", choices=ACTIVATION_NAMES, default=None,
                            help="default: sigmoid for two-layer, relu for multi-layer (as in the book)")
    parser.add_argument("--weight-init", "--weight-init-std", dest="weight_init", type=_weight_init,
                        default=None, help="std of the initial weights, or xavier|sigmoid (√(1/n)) "
                                           "or he|relu (√(2/n)); default: 0.01 for two-layer, "
                                           "he for multi-layer")
    parser.add_argument("--weight-decay", type=float, default=0.0,
                        help="L2 weight decay λ of multi-layer (default: 0)")
    parser.add_argument("--batchnorm", action="store_true",
                        help="multi-layer: BatchNormalization after every hidden Affine")
    parser.add_argument("--dropout", type=_ratio, default=None, metavar="RATIO",
                        help="multi-layer: Dropout of this ratio after every hidden activation")
    parser.add_argument("--final-dropout", action=argparse.BooleanOptionalAction, default=None,
                        help="deep-conv: the book's Dropout after the last Affine (default: on, "
                             "as the book's deep_convnet.py)")


def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _sizes(text):
    try:
        return [positive_int(part) for part in text.split(",")]
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"must be positive integers separated by commas, "
                                         f"e.g. 100,100,100; got {text!r}") from None


def _ratio(text):
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _weight_init(text):
    from xpnet.nn.init import INIT_SCALES

    if text.lower() in INIT_SCALES:
        return text.lower()
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or one of {', '.join(INIT_SCALES)}; "
                                         f"got {text!r}") from None


def load_data(args):
    """The backend (checked before any data is read) and the data set's host arrays."""
    from xpnet.data import load_dataset, resolve_dataset

    backend = get_backend(args.backend, args.device)
    name = resolve_dataset(args.dataset)
    if args.dataset == "auto":
        why = "its files are present" if name == "mnist" else "the MNIST files are not present"
        print(f"dataset auto: using {name} ({why})")
    data = load_dataset(name)
    print(f"dataset: {data.description}")
    print(f"backend: {backend.name} on {backend.device_name}")
    return backend, name, data


def build_net(args, input_shape, backend, dtype):
    """The net that --model and its options describe for samples of `input_shape`, and its
    one-line description (its repr, which checkpoints keep as the run's model)."""
    if args.final_dropout is not None and args.model != "deep-conv":
        raise XpnetError("--final-dropout is an option of deep-conv")
    if args.model in CONV_MODELS:
        options = {} if args.final_dropout is None else {"final_dropout": args.final_dropout}
        for flag, value in (("--weight-decay", args.weight_decay), ("--batchnorm", args.batchnorm),
                            ("--dropout", args.dropout), ("--activation", args.activation),
                            ("--weight-init", args.weight_init)):
            if value:
                raise XpnetError(f"{flag} is an option of the two-layer and multi-layer nets; "
                                 f"{args.model} is the book's net as it is")
        net = MODELS[args.model](input_dim=input_shape, backend=backend, seed=args.seed, dtype=dtype,
                                 **options)
        return net, repr(net)
    input_size = input_shape[0]
    if args.model == "two-layer":
        for flag, value in (("--weight-decay", args.weight_decay), ("--batchnorm", args.batchnorm),
                            ("--dropout", args.dropout)):
            if value:
                raise XpnetError(f"{flag} needs --model multi-layer (TwoLayerNet has none, as in the book)")
        net = MODELS["two-layer"](input_size, args.hidden, 10, activation=args.activation or "sigmoid",
                                  weight_init_std=0.01 if args.weight_init is None else args.weight_init,
                                  backend=backend, seed=args.seed, dtype=dtype)
    else:
        net = MODELS["multi-layer"](
            input_size, args.hidden_sizes, 10, activation=args.activation or "relu",
            weight_init_std="he" if args.weight_init is None else args.weight_init,
            weight_decay_lambda=args.weight_decay, use_dropout=args.dropout is not None,
            dropout_ratio=0.5 if args.dropout is None else args.dropout,
            use_batchnorm=args.batchnorm, backend=backend, seed=args.seed, dtype=dtype)
    return net, repr(net)


def write_json(path, document):
    """Write `document` as strict JSON: a non-finite number (never valid JSON) becomes null."""
    def strict(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: strict(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [strict(v) for v in value]
        return value
    write_atomically(path, json.dumps(strict(document), indent=2, allow_nan=False) + "\n")


def write_atomically(path, text):
    """Write `text` to `path`: an interruption leaves the old file or the new one, never a mix."""
    try:
        with atomic_write(path, "w") as f:
            f.write(text)
    except OSError as exc:
        raise XpnetError(f"cannot write {path}: {exc.strerror or exc}") from None
