"""`xpnet search`: the book's chapter-6 random search of learning rate and weight decay (Optuna,
pruned), on one machine's processes, a Dask cluster or as one vmapped program on JAX."""
from xpnet.cli.experiment import add_run_args, run_and_report
from xpnet.cli.options import positive_int
from xpnet.search.common import EXECUTORS, SAMPLERS


def add_parser(commands):
    search = commands.add_parser(
        "search", help="the book's hyperparameter search (lr, weight decay); save its trials and plot",
        description="Search the learning rate and weight decay of MultiLayerNet 6 x 100 as the book "
                    "does (100 trials, 50 epochs, pruned), then save <out>/hyperparameter-search"
                    ".json and .png and the study <out>/search.db (a later run resumes it).")
    add_run_args(search)
    search.add_argument("--trials", type=positive_int, help="trials in the study (default: 100)")
    search.add_argument("--epochs", type=positive_int, help="epochs per trial (default: 50)")
    search.add_argument("--executor", choices=EXECUTORS,
                        help="where trials run (default: local processes; vmap: all trials as "
                             "one compiled program, jax only)")
    search.add_argument("--sampler", choices=SAMPLERS,
                        help="random: the book's method (default); tpe: Bayesian optimisation")
    search.add_argument("--dask", dest="dask_address", metavar="ADDRESS",
                        help="run the trials on the Dask cluster at ADDRESS (tcp://host:8786)")
    search.set_defaults(run=run)


def run(args):
    from xpnet.experiments.search import hyperparameter_search_experiment

    options = {k: getattr(args, k) for k in ("trials", "epochs", "executor", "sampler", "dask_address")}
    return run_and_report("hyperparameter-search", hyperparameter_search_experiment, args, **options)
