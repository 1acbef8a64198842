"""The `xpnet` command line: `xpnet train`, `xpnet gradcheck`, `xpnet experiment`, `xpnet info` (also `python -m xpnet ...`)."""
import argparse
import json
import math
import os
import platform
import sys
from pathlib import Path

from tqdm.auto import tqdm

import xpnet
from xpnet.backends import (BACKEND_NAMES, DEFAULT_BACKEND, DEVICE_VAR, ENV_VAR, available_backends,
                            get_backend)
from xpnet.errors import DivergedError, XpnetError
from xpnet.files import atomic_write, check_writable

#: The backends --help advertises; array-api-strict (a test backend) is accepted too.
ADVERTISED_BACKENDS = tuple(n for n in BACKEND_NAMES if n != "array-api-strict")


def main(argv=None):
    """Run the command line; returns the exit status (2 for a user error, printed as one line)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except XpnetError as exc:
        print(f"xpnet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xpnet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `xpnet info | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _parser():
    parser = argparse.ArgumentParser(prog="xpnet", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"xpnet {xpnet.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train TwoLayerNet or MultiLayerNet(Extend) on MNIST-format data",
                                description="Train one of the book's nets with mini-batch gradient "
                                            "descent and report loss, accuracy and time per epoch.")
    _add_data_args(train)
    _add_model_args(train)
    train.add_argument("--epochs", type=_positive_int, default=10)
    train.add_argument("--batch-size", type=_positive_int, default=100)
    train.add_argument("--optimizer", type=str.lower, default="sgd",
                       choices=("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"))
    train.add_argument("--lr", type=float, default=None,
                       help="learning rate (default: the book's for the optimizer: 0.01, Adam 0.001)")
    train.add_argument("--gradient", choices=("backprop", "numerical"), default="backprop",
                       help="how gradients are computed: backprop (chapter 5) or central "
                            "differences (chapter 4; float64 unless --dtype says otherwise)")
    train.add_argument("--dtype", choices=("float32", "float64"), default=None,
                       help="default: float32 for backprop, float64 for numerical gradients")
    train.add_argument("--checkpoint", metavar="PATH",
                       help="save the run to PATH (.npz) after every epoch")
    train.add_argument("--resume", action="store_true",
                       help="continue the run saved at --checkpoint; --epochs is the total")
    train.add_argument("--overwrite", action="store_true",
                       help="start the run at --checkpoint over (without it, an existing "
                            "checkpoint is never replaced)")
    train.add_argument("--json", metavar="PATH", help="also write the per-epoch results to PATH")
    train.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="show a progress bar (default: when stderr is a terminal)")
    train.set_defaults(run=_train)

    check = commands.add_parser(
        "gradcheck", help="compare backprop with numerical gradients (and jax.grad on jax)",
        description="Compute the gradient of one batch by backprop, by central differences and "
                    "(on jax) by jax.grad; print the max absolute and relative error of each per "
                    "parameter and the time of each method. Exit status 1 if an error exceeds "
                    "the tolerance. Relative error: max |g - g_backprop| / max |g_backprop|.")
    _add_data_args(check)
    _add_model_args(check, smooth=True)
    check.add_argument("--batch-size", type=_positive_int, default=100)
    check.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    check.add_argument("--tolerance", type=float, default=None,
                       help="relative error accepted on top of the loss's rounding (default: 1e-5 "
                            "for float64, 1e-2 for float32)")
    check.set_defaults(run=_gradcheck)

    run = commands.add_parser(
        "experiment", help="run one of the book's chapter-6 experiments; save its numbers and plot",
        description="Run one of the book's chapter-6 comparisons and save <out>/NAME.json (the "
                    "numbers) and <out>/NAME.png (the figure); print what it found.")
    # the registry is imported when an experiment runs, not at every start of `xpnet`
    run.add_argument("name", nargs="?", metavar="NAME", help="the experiment (see --list)")
    run.add_argument("--list", action="store_true", help="list the experiments and exit")
    _add_data_args(run)
    run.add_argument("--out", default=".", metavar="DIR", help="where to save NAME.json and NAME.png "
                                                               "(default: the current directory)")
    run.add_argument("--quick", action="store_true", help="a smaller run of a few seconds (fewer "
                                                          "iterations, epochs or weight scales)")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="show a progress bar (default: when stderr is a terminal)")
    search = run.add_argument_group("hyperparameter-search options")
    search.add_argument("--trials", type=_positive_int, help="trials in the study (default: 100)")
    search.add_argument("--epochs", type=_positive_int, help="epochs per trial (default: 50)")
    search.add_argument("--executor", choices=("sequential", "processes", "dask", "vmap"),
                        help="where trials run (default: local processes; vmap: all trials as "
                             "one compiled program, jax only)")
    search.add_argument("--sampler", choices=("random", "tpe"),
                        help="random: the book's method (default); tpe: Bayesian optimisation")
    search.add_argument("--dask", dest="dask_address", metavar="ADDRESS",
                        help="run the trials on the Dask cluster at ADDRESS (tcp://host:8786)")
    run.set_defaults(run=_experiment)

    info = commands.add_parser("info", help="list backends, devices and versions")
    info.set_defaults(run=_info)
    return parser


def _add_data_args(parser):
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


def _add_model_args(parser, smooth=False):
    parser.add_argument("--model", choices=("two-layer", "multi-layer"), default="two-layer",
                        help="TwoLayerNet (chapter 4/5) or MultiLayerNet (chapter 6)")
    parser.add_argument("--hidden", type=_positive_int, default=50,
                        help="hidden units of two-layer (default: 50)")
    parser.add_argument("--hidden-sizes", type=_sizes, default=[100, 100, 100, 100],
                        help="hidden layer sizes of multi-layer (default: 100,100,100,100)")
    if smooth:
        parser.add_argument("--activation", choices=("sigmoid", "relu"), default="sigmoid",
                            help="default: sigmoid, which is smooth; ReLU's kink at 0 spoils central "
                                 "differences wherever a perturbation moves a pre-activation across it")
    else:
        parser.add_argument("--activation", choices=("sigmoid", "relu"), default=None,
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


def _positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _sizes(text):
    try:
        return [_positive_int(part) for part in text.split(",")]
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


def _load_data(args):
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


def _build_net(args, input_size, backend, dtype):
    """The net that --model and its options describe, and a one-line description of it."""
    from xpnet.nn import MultiLayerNetExtend, TwoLayerNet

    if args.model == "two-layer":
        for flag, value in (("--weight-decay", args.weight_decay), ("--batchnorm", args.batchnorm),
                            ("--dropout", args.dropout)):
            if value:
                raise XpnetError(f"{flag} needs --model multi-layer (TwoLayerNet has none, as in the book)")
        activation = args.activation or "sigmoid"
        init = 0.01 if args.weight_init is None else args.weight_init
        net = TwoLayerNet(input_size, args.hidden, 10, weight_init_std=init, activation=activation,
                          backend=backend, seed=args.seed, dtype=dtype)
        return net, f"TwoLayerNet({input_size}, {args.hidden}, 10, {activation}, init {init})"
    activation = args.activation or "relu"
    init = "he" if args.weight_init is None else args.weight_init
    net = MultiLayerNetExtend(input_size, args.hidden_sizes, 10, activation=activation,
                              weight_init_std=init, weight_decay_lambda=args.weight_decay,
                              use_dropout=args.dropout is not None, dropout_ratio=args.dropout or 0.5,
                              use_batchnorm=args.batchnorm, backend=backend, seed=args.seed, dtype=dtype)
    extras = "".join([f", weight decay {args.weight_decay}" if args.weight_decay else "",
                      ", BatchNorm" if args.batchnorm else "",
                      f", Dropout {args.dropout}" if args.dropout is not None else ""])
    name = "MultiLayerNetExtend" if args.batchnorm or args.dropout is not None else "MultiLayerNet"
    sizes = ", ".join(map(str, args.hidden_sizes))
    return net, f"{name}({input_size}, [{sizes}], 10, {activation}, init {init}{extras})"


def _train(args):
    for flag in ("resume", "overwrite"):
        if getattr(args, flag) and not args.checkpoint:
            raise XpnetError(f"--{flag} needs --checkpoint PATH")
    if args.json is not None:  # found now, not after the training
        check_writable(args.json, "--json")
    backend, name, data = _load_data(args)
    from xpnet.nn.optimizers import make_optimizer
    from xpnet.nn.training import fit

    (x_train, t_train), (x_test, t_test) = data.arrays(normalize=True, flatten=True)
    dtype = args.dtype or ("float64" if args.gradient == "numerical" else "float32")
    net, description = _build_net(args, x_train.shape[1], backend, dtype)
    optimizer = make_optimizer(args.optimizer, **({} if args.lr is None else {"lr": args.lr}))
    print(f"model: {description}, {optimizer!r}, batch {args.batch_size}, {dtype}, "
          f"{args.gradient} gradients")

    def report(r):
        tqdm.write(f"epoch {r.epoch:>3}/{args.epochs}  train_loss {r.train_loss:.4f}  "
                   f"train_acc {r.train_acc:.4f}  test_acc {r.test_acc:.4f}  "
                   f"time {r.seconds:.3f} s  (eval {r.eval_seconds:.3f} s)", file=sys.stdout)

    config = {"dataset": name, "model": description, "optimizer": repr(optimizer), "dtype": dtype}
    report_json = {"backend": backend.name, "device": backend.device_name, "dataset": name,
                   "synthetic": data.synthetic, "model": description, "gradient": args.gradient,
                   "dtype": dtype}
    try:
        result = fit(net, optimizer, (x_train, t_train), (x_test, t_test), epochs=args.epochs,
                     batch_size=args.batch_size, seed=args.seed, on_epoch=report,
                     progress=args.progress, gradient=args.gradient, checkpoint=args.checkpoint,
                     resume=args.resume, overwrite=args.overwrite, config=config)
    except DivergedError as exc:  # the epochs that ended finite are kept (and checkpointed)
        if args.json is not None:
            report_json.update(epochs=[r._asdict() for r in exc.history], final_test_acc=None,
                               diverged={"epoch": exc.epoch, "batch": exc.batch})
            _write_json(args.json, report_json)
        print(f"xpnet: error: {exc}", file=sys.stderr)
        return 3
    if not result.batch_losses:
        print(f"{args.checkpoint} already holds {len(result.epochs)} epochs: nothing to train")
    if backend.compiles:
        print(f"compile time (not in the epoch times): {result.compile_seconds:.3f} s")
    final = result.epochs[-1].test_acc
    print(f"final test accuracy: {final:.4f}" + ("  (synthetic data: meaningless)" if data.synthetic else ""))
    if args.json is not None:
        report_json.update(compile_seconds=result.compile_seconds, final_test_acc=final,
                           epochs=[r._asdict() for r in result.epochs], diverged=None)
        _write_json(args.json, report_json)
    return 0


def _gradcheck(args):
    backend, _, data = _load_data(args)
    from xpnet.nn.gradcheck import gradient_check

    (x_train, t_train), _ = data.arrays(normalize=True, flatten=True)
    if args.batch_size > len(x_train):
        raise XpnetError(f"--batch-size {args.batch_size} is larger than the training set ({len(x_train)})")
    net, description = _build_net(args, x_train.shape[1], backend, args.dtype)
    x, t = x_train[:args.batch_size], t_train[:args.batch_size]
    print(f"model: {description}, {args.dtype}, the first {args.batch_size} training images")
    result = gradient_check(net, x, t, tolerance=args.tolerance)

    methods = list(dict.fromkeys(e.method for e in result.errors))
    print(f"\n{'param':<8}{'shape':<12}" + "".join(f"{m + ' max abs':>20}{'max rel':>10}" for m in methods))
    for name, value in net.params.items():
        cells = {e.method: e for e in result.errors if e.name == name}
        print(f"{name:<8}{str(tuple(value.shape)):<12}"
              + "".join(f"{cells[m].max_abs:>20.2e}{cells[m].max_rel:>10.2e}" for m in methods))
    backprop = result.seconds["backprop"]
    print("\ntime of one gradient (median of 3, after a first call that compiles on jax):")
    for method, seconds in result.seconds.items():
        ratio = "" if method == "backprop" else f"  = {seconds / backprop:,.1f} × backprop"
        print(f"  {method:<10}{seconds * 1e3:>12.3f} ms{ratio}")
    worst = max(result.errors, key=lambda e: e.max_rel)
    print(f"\n{'OK' if result.passed else 'FAILED'}: largest max rel {worst.max_rel:.2e} "
          f"({worst.method}, {worst.name}); accepted: max abs <= {result.tolerance:.0e} x max|backprop|"
          f" + {result.rounding:.1e} (the loss's rounding / 2h)")
    if not result.passed and "relu" in description:
        print("note: ReLU has a kink at 0. Where a perturbation of ±1e-4 moves a pre-activation "
              "across it, the central difference is not the derivative. Try --activation sigmoid "
              "or a smaller --batch-size.")
    return 0 if result.passed else 1


def _experiment(args):
    import time

    from xpnet.data import resolve_dataset
    from xpnet.experiments import EXPERIMENTS

    if args.list:
        for name, fn in EXPERIMENTS.items():
            print(f"{name:<24}{(fn.__doc__ or '').strip().splitlines()[0]}")
        return 0
    if args.name is None:
        raise XpnetError("give an experiment NAME (xpnet experiment --list shows them)")
    if args.name not in EXPERIMENTS:
        raise XpnetError(f"unknown experiment {args.name!r}; choose one of: {', '.join(EXPERIMENTS)}")
    options = {k: getattr(args, k) for k in ("trials", "epochs", "executor", "sampler", "dask_address")
               if getattr(args, k) is not None}
    if options and args.name != "hyperparameter-search":
        raise XpnetError(f"--{next(iter(options)).replace('_address', '')} is an option of "
                         "hyperparameter-search only")
    # a bad backend, device, data set or output folder fails before anything runs
    backend = get_backend(args.backend, args.device)
    dataset = resolve_dataset(args.dataset)
    try:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise XpnetError(f"cannot create --out {args.out}: {exc.strerror or exc}") from None
    for suffix in (".json", ".png"):
        check_writable(Path(args.out) / f"{args.name}{suffix}", "--out")
    print(f"experiment {args.name} on {backend.name} ({backend.device_name})"
          f"{' (quick)' if args.quick else ''}")
    started = time.perf_counter()
    result = EXPERIMENTS[args.name](backend=backend, dataset=dataset, out_dir=args.out,
                                    quick=args.quick, seed=args.seed, progress=args.progress,
                                    **options)
    if result.numbers.get("dataset_description"):  # the experiments that train on data
        auto = " (auto: the MNIST files are not present)" if args.dataset == "auto" and dataset != "mnist" else ""
        print(f"dataset: {result.numbers['dataset_description']}{auto}")
    print(result.summary)
    print(f"time: {time.perf_counter() - started:.2f} s")
    print(f"saved: {result.json}\n       {result.png}")
    return 0


def _write_json(path, document):
    """Write `document` as strict JSON: a non-finite number (never valid JSON) becomes null."""
    def strict(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: strict(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [strict(v) for v in value]
        return value
    _write_atomically(path, json.dumps(strict(document), indent=2, allow_nan=False) + "\n")


def _write_atomically(path, text):
    """Write `text` to `path`: an interruption leaves the old file or the new one, never a mix."""
    try:
        with atomic_write(path, "w") as f:
            f.write(text)
    except OSError as exc:
        raise XpnetError(f"cannot write {path}: {exc.strerror or exc}") from None


def _info(args):
    print(f"xpnet {xpnet.__version__} on Python {platform.python_version()} ({platform.machine()})")
    default = os.environ.get(ENV_VAR) or DEFAULT_BACKEND
    print(f"default backend: {default} (set {ENV_VAR} or pass --backend)")
    device = os.environ.get(DEVICE_VAR)
    how = f"{DEVICE_VAR}={device}; --device overrides it" if device else \
        f"the library's default; set {DEVICE_VAR} or pass --device"
    try:
        print(f"default device: {get_backend().device_name} ({how})")
    except XpnetError as exc:
        print(f"default device: none usable ({exc})")
    for name, (ok, reason) in available_backends().items():
        print(f"\n{name}: {'available' if ok else 'unavailable'}: {reason}")
        if not ok:
            continue
        try:
            backend = get_backend(name)
        except Exception as exc:  # noqa: BLE001 -- a diagnostic: report and go on to the next
            print(f"  not usable{f' on {DEVICE_VAR}={device}' if device else ''}: {exc}")
            continue
        print(f"  default device: {backend.device_name}")
        print(f"  devices: {', '.join(backend.devices())}")
        print("  versions: " + ", ".join(f"{k} {v}" for k, v in backend.versions().items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
