"""`xpnet experiment`: one of the book's chapter 6–8 experiments, its numbers and figure saved."""
import argparse
import time
from pathlib import Path

from xpnet.backends import get_backend
from xpnet.cli.options import add_data_args
from xpnet.errors import XpnetError
from xpnet.files import check_writable


def add_parser(commands):
    run = commands.add_parser(
        "experiment", help="run one of the book's chapter 6–8 experiments; save its numbers and plot",
        description="Run one of the book's chapter 6–8 experiments and save <out>/NAME.json (the "
                    "numbers) and <out>/NAME.png (the figure); print what it found.")
    # the registry is imported when an experiment runs, not at every start of `xpnet`
    run.add_argument("name", nargs="?", metavar="NAME", help="the experiment (see --list)")
    run.add_argument("--list", action="store_true", help="list the experiments and exit")
    add_run_args(run)
    run.set_defaults(run=run_experiment)


def add_run_args(parser):
    """The options of any experiment: backend, device, data, seed, where to save, how long."""
    add_data_args(parser)
    parser.add_argument("--out", default=".", metavar="DIR", help="where to save NAME.json and "
                                                                  "NAME.png (default: the current directory)")
    parser.add_argument("--quick", action="store_true", help="a smaller run of a few seconds "
                                                             "(fewer iterations, epochs, weight scales or trials)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar (default: when stderr is a terminal)")


def run_experiment(args):
    from xpnet.experiments import EXPERIMENTS

    if args.list:
        for name, fn in EXPERIMENTS.items():
            print(f"{name:<24}{(fn.__doc__ or '').strip().splitlines()[0]}")
        return 0
    if args.name is None:
        raise XpnetError("give an experiment NAME (xpnet experiment --list shows them)")
    if args.name not in EXPERIMENTS:
        raise XpnetError(f"unknown experiment {args.name!r}; choose one of: {', '.join(EXPERIMENTS)}")
    return run_and_report(args.name, EXPERIMENTS[args.name], args)


def run_and_report(name, experiment, args, **options):
    """Run `experiment` as the options in `args` say, and print what it found and where it saved
    it; a bad backend, device, data set or output folder fails before anything runs."""
    from xpnet.data import resolve_dataset

    backend = get_backend(args.backend, args.device)
    dataset = resolve_dataset(args.dataset)
    try:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise XpnetError(f"cannot create --out {args.out}: {exc.strerror or exc}") from None
    for suffix in (".json", ".png"):
        check_writable(Path(args.out) / f"{name}{suffix}", "--out")
    print(f"experiment {name} on {backend.name} ({backend.device_name})"
          f"{' (quick)' if args.quick else ''}")
    started = time.perf_counter()
    result = experiment(backend=backend, dataset=dataset, out_dir=args.out, quick=args.quick,
                        seed=args.seed, progress=args.progress, **options)
    if result.numbers.get("dataset_description"):  # the experiments that train on data
        auto = " (auto: the MNIST files are not present)" if args.dataset == "auto" and dataset != "mnist" else ""
        print(f"dataset: {result.numbers['dataset_description']}{auto}")
    print(result.summary)
    print(f"time: {time.perf_counter() - started:.2f} s")
    print(f"saved: {result.json}\n       {result.png}")
    return 0
