"""`xpnet gradcheck`: one batch's gradient by backprop, by central differences and (on JAX) by
jax.grad, compared."""

import numpy as np

from xpnet.cli.options import add_data_args, add_model_args, build_net, load_data, positive_int
from xpnet.errors import XpnetError
from xpnet.nn.convnets import CONV_MODELS, SimpleConvNet


def add_parser(commands):
    check = commands.add_parser(
        "gradcheck", help="compare backprop with numerical gradients (and jax.grad on jax)",
        description="Compute the gradient of one batch by backprop, by central differences and "
                    "(on jax) by jax.grad; print the max absolute and relative error of each per "
                    "parameter and the time of each method. Exit status 1 if an error exceeds "
                    "the tolerance. Relative error: max |g - g_backprop| / max |g_backprop|.")
    add_data_args(check)
    add_model_args(check, smooth=True)
    check.add_argument("--batch-size", type=positive_int, default=None,
                       help="images in the batch (default: 100; 1 for simple-conv, as the book checks "
                            "it: each of its 10 filters meets 64 ReLUs per image, so every added "
                            "image adds kinks near the step)")
    check.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    check.add_argument("--tolerance", type=float, default=None,
                       help="relative error accepted on top of the loss's rounding (default: 1e-5 "
                            "for float64, 1e-2 for float32)")
    check.set_defaults(run=run)


def run(args):
    backend, _, data = load_data(args)
    from xpnet.nn.gradcheck import KINK_STEP, gradient_check

    conv = args.model in CONV_MODELS
    if args.batch_size is None:
        args.batch_size = 1 if conv else 100
    (x_train, t_train), _ = data.arrays(normalize=True, flatten=not conv)
    if args.batch_size > len(x_train):
        raise XpnetError(f"--batch-size {args.batch_size} is larger than the training set ({len(x_train)})")
    x, t = x_train[:args.batch_size], t_train[:args.batch_size]
    if args.model == "deep-conv":
        raise XpnetError("gradcheck checks simple-conv (the book's small check net), two-layer or "
                         "multi-layer; deep-conv's numerical gradient takes hours")
    if conv:  # the book's check (ch07/gradient_check.py): 10 filters of 3×3 on random 10×10
        # images; a digit's blank pixels would put ReLU's kink exactly under every bias
        x = np.random.default_rng(args.seed).random((len(t), 1, 10, 10))
        net = SimpleConvNet(input_dim=(1, 10, 10), conv_param={"filter_num": 10, "filter_size": 3,
                                                               "pad": 0, "stride": 1},
                            hidden_size=10, backend=backend, seed=args.seed, dtype=args.dtype)
        description = repr(net)
    else:
        net, description = build_net(args, x_train.shape[1:], backend, args.dtype)
    print(f"model: {description}, {args.dtype}, the first {args.batch_size} training images"
          + (" as labels of random 10×10 images" if conv else ""))
    result = gradient_check(net, x, t, tolerance=args.tolerance)

    methods = list(dict.fromkeys(e.method for e in result.errors))
    print(f"\n{'param':<8}{'shape':<15}" + "".join(f"{m + ' max abs':>20}{'max rel':>10}" for m in methods)
          + f"{'kinks':>7}")
    for name, value in net.params.items():
        cells = {e.method: e for e in result.errors if e.name == name}
        print(f"{name:<8}{str(tuple(value.shape)):<15}"
              + "".join(f"{cells[m].max_abs:>20.2e}{cells[m].max_rel:>10.2e}" for m in methods)
              + f"{cells['numerical'].kinks:>7}")
    backprop = result.seconds["backprop"]
    print("\ntime of one gradient (median of 3, after a first call that compiles on jax):")
    for method, seconds in result.seconds.items():
        ratio = "" if method == "backprop" else f"  = {seconds / backprop:,.1f} × backprop"
        print(f"  {method:<10}{seconds * 1e3:>12.3f} ms{ratio}")
    kinks = sum(e.kinks for e in result.errors)
    if kinks:
        print(f"\nkinks: {kinks} entr{'y' if kinks == 1 else 'ies'} whose ±1e-4 step crossed a kink "
              f"of ReLU or max pooling checked again, and passed, at ±{KINK_STEP:.0e}")
    if not result.passed and (kinks or "relu" in description):
        print("note: ReLU has a kink at 0 (max pooling one where a window's two largest entries "
              "tie). Where a perturbation moves a value across it, the central difference is not "
              "the derivative. Try another --seed, a smaller --batch-size"
              + ("." if conv else " or --activation sigmoid."))
    worst = max(result.errors, key=lambda e: e.max_rel)
    print(f"\n{'OK' if result.passed else 'FAILED'}: largest max rel {worst.max_rel:.2e} "
          f"({worst.method}, {worst.name}); accepted: max abs <= {result.tolerance:.0e} x max|backprop|"
          f" + {result.rounding:.1e} (the loss's rounding / 2h)")
    return 0 if result.passed else 1
