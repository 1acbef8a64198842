"""Figure 6-24: the book's hyperparameter search (xpnet.search), saved as an experiment."""
from xpnet.experiments.registry import experiment
from xpnet.search import hyperparameter_search, plot_best, summarize


@experiment("hyperparameter-search")
def hyperparameter_search_experiment(run, *, trials=None, epochs=None, executor=None,
                                     sampler=None, dask_address=None, **options):
    """Figure 6-24: random search of lr and weight decay on a log scale; the best 20 trials.

    Runs `hyperparameter_search` (trials, epochs, executor, sampler, dask_address, and its other
    options: parallel, prune, storage, train_size, validation_rate, dtype; None: the default,
    sampler "random") and saves hyperparameter-search.json and .png in `out_dir`; the study itself
    is kept in `out_dir/search.db` (unless `storage` says otherwise) and resumes."""
    result = hyperparameter_search(trials=trials, epochs=epochs, backend=run.backend,
                                   executor=executor, dask_address=dask_address,
                                   sampler=sampler or "random", out_dir=run.out_dir, seed=run.seed,
                                   dataset=run.dataset, quick=run.quick, progress=run.progress,
                                   **options)
    numbers = {"config": result.config, "executor": result.executor, "backend": result.backend,
               "sampler": result.sampler, "storage": result.storage, "ran": result.ran,
               "search_seconds": result.seconds, "trials_per_second": result.trials_per_second,
               "best": result.best, "suggested": result.suggested, "ranking": result.ranking,
               "trials": result.trials}
    return summarize(result), numbers, plot_best(result)
