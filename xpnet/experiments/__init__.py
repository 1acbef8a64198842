"""The book's chapter-6 experiments as functions that save their numbers and a picture.

Every experiment is `run(backend=None, dataset="auto", out_dir=".", quick=False, seed=0,
progress=None) -> ExperimentResult`, registered in EXPERIMENTS under its command name
(`xpnet experiment NAME`). `quick=True` shrinks it to seconds (for tests); the full size is the
book's setup.
"""
from xpnet.experiments.common import ExperimentResult, save_result

#: Command name -> experiment function; filled by the modules that define the experiments.
EXPERIMENTS = {}


def experiment(name):
    """Decorator: register an experiment function under `name`."""
    def register(fn):
        EXPERIMENTS[name] = fn
        return fn
    return register


__all__ = ["EXPERIMENTS", "ExperimentResult", "experiment", "save_result"]

# The experiments register themselves on import (after EXPERIMENTS exists), in the book's order.
from xpnet.experiments import optimizers, weight_init, batchnorm, regularization  # noqa: E402,F401

# `hyperparameter-search` (figure 6-24) lives in xpnet.search, with the search itself (Optuna and
# Dask are imported only when a search runs).
from xpnet.search import hyperparameter_search_experiment  # noqa: E402

EXPERIMENTS["hyperparameter-search"] = hyperparameter_search_experiment
