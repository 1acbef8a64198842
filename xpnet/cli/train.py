"""`xpnet train`: one of the book's nets trained with mini-batch gradient descent, with loss,
accuracy and time per epoch."""
import argparse
import sys

from tqdm.auto import tqdm

from xpnet.cli.options import (OPTIMIZER_NAMES, add_data_args, add_model_args, build_net,
                               load_data, positive_int, write_json)
from xpnet.errors import DivergedError, XpnetError
from xpnet.nn.convnets import CONV_MODELS
from xpnet.files import check_writable


def add_parser(commands):
    train = commands.add_parser("train", help="train one of the book's nets on MNIST-format data",
                                description="Train one of the book's nets with mini-batch gradient "
                                            "descent and report loss, accuracy and time per epoch.")
    add_data_args(train)
    add_model_args(train)
    train.add_argument("--epochs", type=positive_int, default=10)
    train.add_argument("--batch-size", type=positive_int, default=100)
    train.add_argument("--optimizer", type=str.lower, default=None, choices=OPTIMIZER_NAMES,
                       help="default: adam for the conv nets (as the book trains them), else sgd")
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
    train.add_argument("--eval-samples", type=positive_int, default=None, metavar="N",
                       help="measure each epoch's accuracies on the first N images of each set "
                            "(the book's evaluate_sample_num_per_epoch; default: all); the final "
                            "test accuracy is always over the whole test set")
    train.add_argument("--json", metavar="PATH", help="also write the per-epoch results to PATH")
    train.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="show a progress bar (default: when stderr is a terminal)")
    train.set_defaults(run=run)


def run(args):
    for flag in ("resume", "overwrite"):
        if getattr(args, flag) and not args.checkpoint:
            raise XpnetError(f"--{flag} needs --checkpoint PATH")
    if args.json is not None:  # found now, not after the training
        check_writable(args.json, "--json")
    backend, name, data = load_data(args)
    from xpnet.nn.optimizers import make_optimizer
    from xpnet.nn.training import fit

    conv = args.model in CONV_MODELS
    (x_train, t_train), (x_test, t_test) = data.arrays(normalize=True, flatten=not conv)
    dtype = args.dtype or ("float64" if args.gradient == "numerical" else "float32")
    net, description = build_net(args, x_train.shape[1:], backend, dtype)
    optimizer = make_optimizer(args.optimizer or ("adam" if conv else "sgd"),
                               **({} if args.lr is None else {"lr": args.lr}))
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
                     resume=args.resume, overwrite=args.overwrite, config=config,
                     eval_samples=args.eval_samples)
    except DivergedError as exc:  # the epochs that ended finite are kept (and checkpointed)
        if args.json is not None:
            report_json.update(epochs=[r._asdict() for r in exc.history], final_test_acc=None,
                               diverged={"epoch": exc.epoch, "batch": exc.batch})
            write_json(args.json, report_json)
        print(f"xpnet: error: {exc}", file=sys.stderr)
        return 3
    if not result.batch_losses:
        print(f"{args.checkpoint} already holds {len(result.epochs)} epochs: nothing to train")
    if backend.compiles:
        print(f"compile time (not in the epoch times): {result.compile_seconds:.3f} s")
    final = result.epochs[-1].test_acc if args.eval_samples is None else net.accuracy(x_test, t_test)
    print(f"final test accuracy: {final:.4f}" + ("  (synthetic data: meaningless)" if data.synthetic else ""))
    if args.json is not None:
        report_json.update(compile_seconds=result.compile_seconds, final_test_acc=final,
                           epochs=[r._asdict() for r in result.epochs], diverged=None)
        write_json(args.json, report_json)
    return 0
