"""The `xpnet` command line: `xpnet train`, `xpnet info` (also `python -m xpnet ...`)."""
import argparse
import json
import os
import platform
import sys

from tqdm.auto import tqdm

import xpnet
from xpnet.backends import BACKEND_NAMES, DEFAULT_BACKEND, ENV_VAR, available_backends, get_backend
from xpnet.errors import XpnetError
from xpnet.files import atomic_write


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


def _parser():
    parser = argparse.ArgumentParser(prog="xpnet", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"xpnet {xpnet.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train the book's TwoLayerNet with mini-batch SGD",
                                description="Train TwoLayerNet with mini-batch SGD and report "
                                            "loss, accuracy and time per epoch.")
    train.add_argument("--backend", default=None,
                       help=f"{' | '.join(BACKEND_NAMES)} (default: $XPNET_BACKEND, else numpy)")
    train.add_argument("--dataset", default="auto",
                       help="mnist, mnist-5k, fashion-mnist, synthetic, or auto: mnist when its "
                            "files are present, else mnist-5k (default: auto)")
    train.add_argument("--epochs", type=_positive_int, default=10)
    train.add_argument("--batch-size", type=_positive_int, default=100)
    train.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (default: 0.1)")
    train.add_argument("--hidden", type=_positive_int, default=50, help="hidden units (default: 50)")
    train.add_argument("--activation", choices=("sigmoid", "relu"), default="sigmoid")
    train.add_argument("--weight-init-std", type=float, default=0.01)
    train.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    train.add_argument("--seed", type=int, default=0, help="seed of the initial weights and batch order")
    train.add_argument("--json", metavar="PATH", help="also write the per-epoch results to PATH")
    train.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="show a progress bar (default: when stderr is a terminal)")
    train.set_defaults(run=_train)

    info = commands.add_parser("info", help="list backends, devices and versions")
    info.set_defaults(run=_info)
    return parser


def _positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _train(args):
    from xpnet.data import load_dataset, resolve_dataset
    from xpnet.nn import SGD, TwoLayerNet
    from xpnet.nn.training import fit

    backend = get_backend(args.backend)  # fail on a bad backend before loading any data
    name = resolve_dataset(args.dataset)
    if args.dataset == "auto":
        why = "its files are present" if name == "mnist" else "the MNIST files are not present"
        print(f"dataset auto: using {name} ({why})")
    data = load_dataset(name)
    print(f"dataset: {data.description}")
    print(f"backend: {backend.name} on {', '.join(backend.devices())}")
    (x_train, t_train), (x_test, t_test) = data.arrays(normalize=True, flatten=True)

    net = TwoLayerNet(x_train.shape[1], args.hidden, 10, weight_init_std=args.weight_init_std,
                      activation=args.activation, backend=backend, seed=args.seed, dtype=args.dtype)
    print(f"model: TwoLayerNet({x_train.shape[1]}, {args.hidden}, 10, activation={args.activation!r}),"
          f" SGD(lr={args.lr}), batch {args.batch_size}, {args.dtype}")

    def report(r):
        tqdm.write(f"epoch {r.epoch:>3}/{args.epochs}  train_loss {r.train_loss:.4f}  "
                   f"train_acc {r.train_acc:.4f}  test_acc {r.test_acc:.4f}  "
                   f"time {r.seconds:.3f} s  (eval {r.eval_seconds:.3f} s)", file=sys.stdout)

    result = fit(net, SGD(args.lr), (x_train, t_train), (x_test, t_test), epochs=args.epochs,
                 batch_size=args.batch_size, seed=args.seed, on_epoch=report, progress=args.progress)
    if backend.compiles:
        print(f"compile time (first step and evaluation, not in the epoch times): "
              f"{result.compile_seconds:.3f} s")
    final = result.epochs[-1].test_acc
    print(f"final test accuracy: {final:.4f}" + ("  (synthetic data: meaningless)" if data.synthetic else ""))
    if args.json:
        report_json = {
            "backend": backend.name, "dataset": name, "synthetic": data.synthetic,
            "compile_seconds": result.compile_seconds,
            "epochs": [r._asdict() for r in result.epochs], "final_test_acc": final,
        }
        _write_atomically(args.json, json.dumps(report_json, indent=2) + "\n")
    return 0


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
    for name, (ok, reason) in available_backends().items():
        print(f"\n{name}: {'available' if ok else 'unavailable'}: {reason}")
        if ok:
            backend = get_backend(name)
            print(f"  devices: {', '.join(backend.devices())}")
            print("  versions: " + ", ".join(f"{k} {v}" for k, v in backend.versions().items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
