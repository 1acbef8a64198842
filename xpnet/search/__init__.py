"""The book's chapter-6 hyperparameter search, on Optuna: random search on a log scale.

    result = hyperparameter_search(executor="vmap", backend="jax")   # 100 trials x 50 epochs
    result.best, result.suggested, result.trials_per_second

Each trial trains the book's MultiLayerNet (784, 6 x 100 ReLU, 10; He init; SGD, batch 100) with
lr = 10^U(-6, -2) and weight decay λ = 10^U(-8, -4) on the first 500 training images, 20% of them
held out for validation (never the test set), and records the validation and training accuracy
after every epoch.

The study lives in the parent process and in its storage (sqlite by default): trials are planned
with Optuna's ask/tell, so a second run adds only the trials still missing. What crosses to a
worker is a JSON-able spec (hyperparameters, data set, sizes, seeds, backend and device names);
what comes back is a JSON-able result. Trials run through one concurrent.futures-style executor
(`submit(fn, *args) -> future`): in this process ("sequential"), in local processes
("processes"), on a Dask cluster ("dask"); or, on JAX, all trials at once as one compiled
program vmapped over the hyperparameters ("vmap").

Pruning stops hopeless trials: those whose learning rate is too small to learn anything in the
epochs given. At epoch W = max(2, epochs // 10) a trial is pruned when its mean training loss has
fallen by less than 0.1% per epoch since its first epoch (on the book's setup this prunes about
half the trials, all of them at chance level after 50 epochs; validation accuracy is no early
signal here, the best trials sit at 0.1 for 10 epochs). The rule travels in the JSON spec and is
applied inside the trial, since a worker cannot talk to the study; the parent then reports the
epochs run and tells the study the trial was pruned. It depends on the trial alone, so every
executor prunes the same trials.

The modules, each importing only those before it:
  common     the search space and sizes, EXECUTORS, SAMPLERS, SearchResult
  dask       DaskExecutor (and the probe of its scheduler)
  executors  make_executor: sequential, local processes (dying with their parent), dask
  trials     run_trial (what workers run), run_trials (vmapped, pruning), prune_rule
  storage    the sqlite study's lock, pragmas and integrity check
  study      Optuna: open/resume the study, ask and tell through an executor or vmapped
  report     ranking, suggest_ranges, summarize, plot_best
  run        hyperparameter_search
The experiment that saves a search's JSON and PNG is xpnet.experiments.search (this package
never imports xpnet.experiments).
"""
from xpnet.search.common import (BATCH_SIZE, DASK_TIMEOUT, EXECUTORS, HIDDEN, LR_RANGE,
                                 MIN_LOSS_DROP_PER_EPOCH, SAMPLERS, STUDY_NAME, TOP,
                                 WEIGHT_DECAY_RANGE, SearchResult)
from xpnet.search.dask import DaskExecutor
from xpnet.search.executors import SequentialExecutor, make_executor, process_executor
from xpnet.search.report import plot_best, suggest_ranges, summarize
from xpnet.search.run import hyperparameter_search
from xpnet.search.trials import prune_rule, run_trial, run_trials

__all__ = ["BATCH_SIZE", "DASK_TIMEOUT", "EXECUTORS", "HIDDEN", "LR_RANGE",
           "MIN_LOSS_DROP_PER_EPOCH", "SAMPLERS", "STUDY_NAME", "TOP", "WEIGHT_DECAY_RANGE",
           "DaskExecutor", "SearchResult", "SequentialExecutor", "hyperparameter_search",
           "make_executor", "plot_best", "process_executor", "prune_rule", "run_trial",
           "run_trials", "suggest_ranges", "summarize"]
