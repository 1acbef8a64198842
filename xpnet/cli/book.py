"""`xpnet book run SCRIPT`: one of the book's own scripts, unchanged, on any backend."""
from xpnet.cli.options import ADVERTISED_BACKENDS
from xpnet.backends import DEFAULT_BACKEND, ENV_VAR

#: What `load_mnist` of a served script can load (`synthetic` is for timing, not for the book).
BOOK_DATASETS = ("auto", "mnist", "mnist-5k", "fashion-mnist")


def add_parser(commands):
    book = commands.add_parser("book", help="run the book's own scripts on any backend",
                               description="Run the book's own scripts (chapters 3-8) unchanged, "
                                           "on any backend.")
    actions = book.add_subparsers(dest="book_command", required=True, metavar="ACTION")
    run = actions.add_parser(
        "run", help="run SCRIPT with the book's modules served by xpnet",
        description="Run SCRIPT as __main__ in its own folder. Its imports of dataset.mnist, "
                    "common.* and the chapter nets (two_layer_net, simple_convnet, deep_convnet) "
                    "are served by xpnet, computing on --backend; everything else is the script's "
                    "own. Arguments after -- go to the script: xpnet book run SCRIPT [options] "
                    "-- [script arguments].")
    run.add_argument("script", metavar="SCRIPT", help="the script, e.g. ch06/batch_norm_test.py")
    run.add_argument("--backend", default=None,
                     help=f"{' | '.join(ADVERTISED_BACKENDS)} (default: ${ENV_VAR}, else "
                          f"{DEFAULT_BACKEND})")
    run.add_argument("--device", default=None, metavar="D",
                     help="the backend's device, as for xpnet train (default: the library's)")
    run.add_argument("--dataset", choices=BOOK_DATASETS, default="auto",
                     help="what load_mnist loads: auto is mnist when its files are present, else "
                          "mnist-5k (default: auto)")
    run.add_argument("--figures", default=None, metavar="DIR",
                     help="save each figure plt.show() would show as DIR/figure-NN.png instead "
                          "(headless); without it, plt.show() is matplotlib's")
    run.add_argument("--seed", type=int, default=None, metavar="N",
                     help="seed NumPy's global generator before the script starts, so two runs "
                          "print the same numbers (default: unseeded, as the book)")
    run.set_defaults(run=run_book_script, script_args=[])


def run_book_script(args):
    from xpnet.book.runner import run_script

    return run_script(args.script, args.script_args, backend=args.backend, device=args.device,
                      dataset=args.dataset, figures=args.figures, seed=args.seed)
