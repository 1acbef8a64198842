"""The registry of the chapter-6 experiments, and the decorator that registers one and gives it
what every experiment opens and closes with.

    @experiment("batchnorm", data=True, train_size=1000)
    def batchnorm(run):               # run: the Run (backend, data, quick, seed, ...)
        ...                           # the comparison itself
        return summary, numbers, figure

registers `batchnorm(backend=None, dataset="auto", out_dir=".", quick=False, seed=0,
progress=None) -> ExperimentResult`: it starts the clock, resolves the backend, loads the data
set when the experiment trains on data, runs the body, and saves its numbers and figure as
`out_dir/batchnorm.json` and `.png`.
"""
import inspect
import time
from typing import Any, NamedTuple

from xpnet.backends import get_backend
from xpnet.experiments.common import save_result
from xpnet.experiments.helpers import describe, load_data

#: Command name -> experiment function, in the order the experiments' modules register them.
EXPERIMENTS = {}


class Run(NamedTuple):
    """What an experiment's body is given: how it was asked to run, its backend and its data."""
    backend: Any      # a Backend, resolved
    data: Any         # helpers.Data, or None for an experiment that trains on no data set
    dataset: str      # the data set as asked ("auto", "mnist-5k", ...)
    out_dir: Any
    quick: bool
    seed: int
    progress: Any     # None: a progress bar when stderr is a terminal

    def describe(self, **settings):
        """The numbers every experiment's JSON starts with: where and how it ran, and `settings`
        (what it compares: model, optimizer, sizes ...)."""
        return describe(self.backend, self.data, self.quick, self.seed, **settings)


def experiment(name, data=False, train_size=None):
    """Decorator: register `body(run, **options) -> (summary, numbers, figure)` under `name` as
    the experiment `fn(backend=None, dataset="auto", out_dir=".", quick=False, seed=0,
    progress=None, **options) -> ExperimentResult`. With `data`, `run.data` holds the data set
    (its training set cut to the first `train_size` images; None: all). The experiment's
    `seconds` include loading the data and saving the files."""
    def register(body):
        def run(backend=None, dataset="auto", out_dir=".", quick=False, seed=0, progress=None,
                **options):
            started = time.perf_counter()
            backend = get_backend(backend)
            loaded = load_data(dataset, train_size) if data else None
            summary, numbers, figure = body(
                Run(backend, loaded, dataset, out_dir, quick, seed, progress), **options)
            return save_result(name, summary, numbers, figure, out_dir, started)

        for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(run, attribute, getattr(body, attribute))
        run.__signature__ = _signature(run, body)
        EXPERIMENTS[name] = run
        return run
    return register


def _signature(run, body):
    """The experiment's signature: the six parameters every experiment takes, then the body's
    own options (its parameters after `run`), which it is given through `**options`."""
    common = list(inspect.signature(run).parameters.values())[:-1]
    own = list(inspect.signature(body).parameters.values())[1:]
    return inspect.Signature(common + own)
