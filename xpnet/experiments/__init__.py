"""The book's chapter-6 to 8 experiments as functions that save their numbers and a picture.

Every experiment is `run(backend=None, dataset="auto", out_dir=".", quick=False, seed=0,
progress=None) -> ExperimentResult`, registered in EXPERIMENTS under its command name
(`xpnet experiment NAME`; the registry and its decorator are in xpnet.experiments.registry).
`quick=True` shrinks it to seconds (for tests); the full size is the book's setup.
"""
from xpnet.experiments.common import ExperimentResult, save_result
from xpnet.experiments.registry import EXPERIMENTS, Run, experiment
# The experiments register themselves on import, in the book's order, except that the chapter-7
# and 8 ones (`conv-filters`, `misclassified`) come before the last one, `hyperparameter-search`
# (figure 6-24), which runs xpnet.search (Optuna and Dask are imported only when a search runs).
from xpnet.experiments import (optimizers, weight_init, batchnorm, regularization,  # noqa: F401
                               convnets, search)

__all__ = ["EXPERIMENTS", "ExperimentResult", "Run", "experiment", "save_result"]
