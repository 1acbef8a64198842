"""`hyperparameter_search`: check the request, open the study, plan the missing trials (Optuna's
ask), run them the way the executor says and tell the study how they ended."""
import functools
import math
import time
from numbers import Real
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from xpnet.backends import get_backend
from xpnet.checks import check_float_dtype, check_int, check_number
from xpnet.data import resolve_dataset
from xpnet.errors import ConfigError, XpnetError
from xpnet.search.common import (BATCH_SIZE, EXECUTORS, HIDDEN, LR_RANGE, SAMPLERS,
                                 WEIGHT_DECAY_RANGE, SearchResult)
from xpnet.search.dask import needs_dask_address
from xpnet.search.executors import make_executor
from xpnet.search.report import ranking, suggest_ranges
from xpnet.search.storage import sqlite_guard
from xpnet.search.study import open_study, quiet_optuna, run_pooled, run_vmapped, trial_dict
from xpnet.search.trials import prune_rule


def hyperparameter_search(trials=None, epochs=None, backend=None, executor=None, dask_address=None,
                          sampler="random", prune=True, storage=None, out_dir=".", seed=0,
                          dataset="auto", train_size=500, validation_rate=0.2, quick=False,
                          progress=None, parallel=None, dtype="float32"):
    """Run the book's hyperparameter search until the study holds `trials` finished trials.

    trials/epochs: default 100 x 50 (the book), 8 x 5 with `quick`.
    executor: "processes" (the default; "dask" when dask_address is given), "sequential", "dask"
      or "vmap" (JAX only), or any concurrent.futures executor (yours to shut down).
    sampler: "random" (the book's method, seeded) or "tpe" (Bayesian optimisation).
    prune: stop hopeless trials early (`prune_rule`).
    storage: an Optuna storage URL, default sqlite:///<out_dir>/search.db.
    parallel: trials in flight (default: the executor's workers; vmap: all missing trials in one
      program with the random sampler, groups of 10 with TPE, so that it learns between them).
    dtype: of weights and data (float64 makes the backends agree to the last digit).
    Returns a SearchResult; `seconds` and `trials_per_second` cover this call's trials, workers'
    start, compilation and the study's bookkeeping included.
    """
    trials = _whole(trials if trials is not None else (8 if quick else 100), "trials")
    epochs = _whole(epochs if epochs is not None else (5 if quick else 50), "epochs")
    train_size = check_int(train_size, "train_size", minimum=BATCH_SIZE)
    validation_rate = check_number(validation_rate, "validation_rate", 0, 1, True, True)
    held_out = int(train_size * validation_rate)  # as validation_split holds out
    if held_out == 0 or train_size - held_out < BATCH_SIZE:
        raise ConfigError(f"validation_rate {validation_rate} of train_size {train_size} leaves "
                          f"{held_out} images for validation and {train_size - held_out} for "
                          f"training (at least 1 and {BATCH_SIZE}, one batch)")
    seed = check_int(seed, "seed", minimum=0)
    parallel = None if parallel is None else check_int(parallel, "parallel")
    dtype = check_float_dtype(dtype)
    if sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    executor = executor or ("dask" if dask_address else "processes")
    if isinstance(executor, str) and executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if dask_address and executor != "dask":
        raise ConfigError(f"dask_address is for executor 'dask', not {executor!r}")
    if executor == "dask" and not dask_address:
        raise needs_dask_address()
    be = get_backend(backend)
    if executor == "vmap" and not be.vectorizes:
        raise XpnetError(f"executor 'vmap' compiles the trials into one vectorized program "
                         f"(jax.vmap) and needs backend 'jax', not {be.name!r}")
    rule = prune_rule(epochs) if prune else None
    config = {"epochs": epochs, "dataset": resolve_dataset(dataset), "train_size": train_size,
              "validation_rate": validation_rate, "seed": seed, "dtype": dtype, "hidden": HIDDEN,
              "batch_size": BATCH_SIZE, "prune": rule, "lr_range": list(LR_RANGE),
              "weight_decay_range": list(WEIGHT_DECAY_RANGE)}
    if storage is None:
        try:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise XpnetError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
        storage = f"sqlite:///{Path(out_dir).resolve() / 'search.db'}"

    with quiet_optuna() as optuna, sqlite_guard(storage):
        study, opened = open_study(optuna, storage, sampler, seed, config)
        try:
            finished = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
            missing = max(0, trials - len(study.get_trials(deepcopy=False, states=finished)))
            plan = functools.partial(_plan, config=config, backend=be.name, device=be.device_name)
            start = time.perf_counter()
            with tqdm(total=missing * epochs, unit="trial-epoch", desc="hyperparameter search",
                      disable=None if progress is None else not progress, leave=False) as bar:
                label = _execute(study, missing, executor, parallel, dask_address, sampler, plan,
                                 epochs, bar)
            seconds = time.perf_counter() - start
            done = [trial_dict(t) for t in study.get_trials(deepcopy=False, states=finished)]
        finally:
            opened.engine.dispose()
    ranked = ranking(done)
    complete = [t for t in ranked if not t["pruned"]]
    return SearchResult(
        trials=sorted(done, key=lambda t: t["number"]), best=complete[0] if complete else ranked[0],
        ranking=[t["number"] for t in ranked], suggested=suggest_ranges(ranked), ran=missing,
        seconds=seconds, trials_per_second=missing / seconds if missing else 0.0,
        executor=label, backend=be.name, sampler=sampler, storage=storage, config=config)


def _whole(value, name):
    """`value` as an int, if it is a whole number ≥ 1 (5.0 too, as before; not True, NaN, 2.5)."""
    if (isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value)
            or value != int(value) or value < 1):
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _plan(trial, config, backend, device):
    """The JSON spec of an asked trial: the sampler's lr and λ plus everything else it needs."""
    return {"number": trial.number, "lr": trial.suggest_float("lr", *LR_RANGE, log=True),
            "weight_decay": trial.suggest_float("weight_decay", *WEIGHT_DECAY_RANGE, log=True),
            "trial_seed": int(np.random.SeedSequence([config["seed"], trial.number])
                              .generate_state(1)[0]),
            "backend": backend, "device": device,
            **{k: config[k] for k in ("epochs", "dataset", "train_size", "validation_rate", "seed",
                                      "dtype", "prune")}}


def _execute(study, missing, executor, parallel, dask_address, sampler, plan, epochs, bar):
    """Run the `missing` trials the way `executor` says; returns a description of it."""
    if executor == "vmap":
        group = parallel or (missing if sampler == "random" else 10) or 1
        run_vmapped(study, missing, group, plan, bar)
        return f"vmap (up to {group} trials per program)"
    if not isinstance(executor, str):  # the caller's own executor
        workers = parallel or getattr(executor, "_max_workers", 1)
        run_pooled(study, executor, missing, 2 * workers, plan, epochs, bar)
        return type(executor).__name__
    if not missing:
        return executor
    pool = make_executor(executor, parallel, dask_address)
    workers = parallel or pool.workers
    try:
        # Sequential: tell each trial before asking the next (TPE learns from all). Pools: two
        # per worker keep the workers busy while the parent tells the study.
        in_flight = 1 if executor == "sequential" else 2 * workers
        run_pooled(study, pool, missing, in_flight, plan, epochs, bar)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return f"{executor} ({workers} worker{'s' * (workers > 1)})"
