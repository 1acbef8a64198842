"""What the modules of the search share: the book's search space and sizes, the choices of
executor and sampler, the result of a search, and errors as one line."""
from typing import NamedTuple

STUDY_NAME = "xpnet-hyperparameter-search"
LR_RANGE = (1e-6, 1e-2)             # the book's 10^U(-6, -2)
WEIGHT_DECAY_RANGE = (1e-8, 1e-4)   # the book's 10^U(-8, -4)
HIDDEN = [100] * 6
BATCH_SIZE = 100
#: Pruning: the least relative fall of the mean training loss per epoch since the first epoch.
MIN_LOSS_DROP_PER_EPOCH = 0.001
#: Where trials run: in this process, in local processes, on a Dask cluster, or vmapped on JAX.
EXECUTORS = ("sequential", "processes", "dask", "vmap")
#: How trials are planned: the book's random search, or Optuna's TPE (Bayesian optimisation).
SAMPLERS = ("random", "tpe")
TOP = 20            # trials plotted, as in the book
DASK_TIMEOUT = 5    # seconds to reach a Dask scheduler


class SearchResult(NamedTuple):
    trials: list          # every finished trial of the study (dicts, see run_trial), by number
    best: dict            # the trial with the best final validation accuracy (not pruned)
    ranking: list         # trial numbers, best first (finished before pruned)
    suggested: dict       # narrowed ranges: lr and weight_decay spanned by the best trials
    ran: int              # trials run by this call (the others came from the storage)
    seconds: float        # wall time of this call's trials, study bookkeeping included
    trials_per_second: float
    executor: str         # e.g. "processes (2 workers)"
    backend: str
    sampler: str
    storage: str
    config: dict          # what defines the study's trials (a resumed study must match)


def one_line(exc):
    """An exception as one line: its first line, or its type's name when it says nothing."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
