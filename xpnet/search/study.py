"""The Optuna study of a search, in the parent process: opened (or resumed) in its storage, asked
for trials and told how they ended, through an executor or as vmapped groups in this process.
Optuna is imported only when a search runs."""
import concurrent.futures
import contextlib

import numpy as np

from xpnet.errors import XpnetError
from xpnet.search.common import STUDY_NAME, one_line
from xpnet.search.storage import sqlite_pragmas
from xpnet.search.trials import run_trial, run_trials


@contextlib.contextmanager
def quiet_optuna():
    """Optuna logs a line per trial; the search reports through its own progress bar."""
    try:
        import optuna
    except ImportError:
        raise XpnetError("the hyperparameter search needs optuna: "
                         "pip install 'xpnet[search]'") from None
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield optuna
    finally:
        optuna.logging.set_verbosity(level)


def open_study(optuna, url, sampler, seed, config):
    """The study STUDY_NAME in `url`, created or loaded, and its storage; refused if its config
    differs."""
    import sqlalchemy

    try:
        storage = optuna.storages.RDBStorage(url)
        if storage.engine.name == "sqlite":
            sqlalchemy.event.listen(storage.engine, "connect", sqlite_pragmas)
            storage.engine.dispose()
        # Trials prune themselves (see xpnet.search's docstring): the study's pruner has no say.
        study = optuna.create_study(storage=storage, study_name=STUDY_NAME, direction="maximize",
                                    pruner=optuna.pruners.NopPruner(), load_if_exists=True)
    except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
        raise XpnetError(f"cannot open the study storage {url}: "
                         f"{one_line(getattr(exc, 'orig', None) or exc)}") from None
    saved = study.user_attrs.get("config")
    if saved is None:
        study.set_user_attr("config", config)
    elif saved != config:
        diff = ", ".join(f"{k} {saved.get(k)!r} (now {config.get(k)!r})" for k in config
                         if saved.get(k) != config.get(k))
        raise XpnetError(f"the study in {url} was made with {diff}; use another out_dir or "
                         "storage, or delete it")
    # Trials left RUNNING by a search that was killed never end: they fail now, and count as
    # missing like any failed trial. No other search of the study runs now: in sqlite,
    # `sqlite_guard` sees to it; elsewhere it is one search per study, as `missing` assumes.
    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(stale.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    # A seed of its own for each resumption: a resumed study must not replay its first trials.
    sampler_seed = int(np.random.SeedSequence([seed, len(study.trials)]).generate_state(1)[0])
    study.sampler = (optuna.samplers.RandomSampler(seed=sampler_seed) if sampler == "random"
                     else optuna.samplers.TPESampler(seed=sampler_seed))
    return study, storage


def trial_dict(frozen):
    """A finished trial of the study as the dict `run_trial` returns."""
    val = [frozen.intermediate_values[e] for e in sorted(frozen.intermediate_values)]
    return {"number": frozen.number, "lr": frozen.params["lr"],
            "weight_decay": frozen.params["weight_decay"],
            "train_loss": frozen.user_attrs.get("train_loss", []),
            "train_acc": frozen.user_attrs.get("train_acc", []), "val_acc": val,
            "final_val_acc": val[-1] if val else frozen.value,
            "pruned": frozen.state.name == "PRUNED", "seconds": frozen.user_attrs.get("seconds")}


def _finish(study, trial, result):
    """Keep a trial's training curves and tell the study how it ended."""
    from optuna.trial import TrialState

    trial.set_user_attr("train_loss", result["train_loss"])
    trial.set_user_attr("train_acc", result["train_acc"])
    trial.set_user_attr("seconds", result["seconds"])
    if result["pruned"]:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, result["final_val_acc"])


def _fail(study, trials):
    from optuna.trial import TrialState

    for trial in trials:
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def run_pooled(study, pool, missing, in_flight, plan, epochs, bar):
    """Ask/tell through an executor: keep `in_flight` trials submitted; as each returns, report
    its validation accuracy per epoch and tell the study."""
    running, asked = {}, 0
    try:
        while asked < missing or running:
            while asked < missing and len(running) < in_flight:
                trial = study.ask()
                try:
                    future = pool.submit(run_trial, plan(trial))
                except BaseException:
                    _fail(study, [trial])
                    raise
                running[future] = trial
                asked += 1
            done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                result = future.result()
                trial = running.pop(future)
                for epoch, acc in enumerate(result["val_acc"], start=1):
                    trial.report(acc, epoch)
                _finish(study, trial, result)
                bar.update(epochs)
    except BaseException:
        for future in running:
            future.cancel()
        _fail(study, running.values())
        raise


def run_vmapped(study, missing, group, plan, bar):
    """Ask `group` trials at a time and train each group as one vmapped program, in this process;
    its epochs are reported to the study while the next ones compute."""
    while missing > 0:
        asked = []
        try:
            asked.extend(study.ask() for _ in range(min(group, missing)))
            specs = [plan(trial) for trial in asked]
        except BaseException:
            _fail(study, asked)
            raise
        epochs = specs[0]["epochs"]

        def on_epoch(i, epoch, acc):
            asked[i].report(acc, epoch)
            bar.update(1)

        def on_done(i, result):
            _finish(study, asked[i], result)
            bar.update(epochs - len(result["val_acc"]))

        try:
            run_trials(specs, on_epoch, on_done)
        except BaseException:
            _fail(study, asked)
            raise
        missing -= len(asked)
