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
"""
import concurrent.futures
import contextlib
import functools
import math
import multiprocessing
import os
import sqlite3
import threading
import time
from numbers import Real
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from xpnet.backends import get_backend
from xpnet.checks import check_float_dtype, check_int, check_number
from xpnet.data import load_mnist, resolve_dataset, validation_split
from xpnet.errors import ConfigError, XpnetError
from xpnet.files import exclusive_lock
from xpnet.nn.models import MultiLayerNet
from xpnet.nn.optimizers import SGD
from xpnet.nn.stacked import keep_nets, stack, stacked_programs
from xpnet.nn.batching import epoch_orders
from xpnet.nn.training import initial_train_state

STUDY_NAME = "xpnet-hyperparameter-search"
LR_RANGE = (1e-6, 1e-2)             # the book's 10^U(-6, -2)
WEIGHT_DECAY_RANGE = (1e-8, 1e-4)   # the book's 10^U(-8, -4)
HIDDEN = [100] * 6
BATCH_SIZE = 100
#: Pruning: the least relative fall of the mean training loss per epoch since the first epoch.
MIN_LOSS_DROP_PER_EPOCH = 0.001
EXECUTORS = ("sequential", "processes", "dask", "vmap")
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


# --- executors: concurrent.futures style, submit(fn, *args) -> future -----------------------------

class SequentialExecutor(concurrent.futures.Executor):
    """Runs each call at once, in this process; `submit` returns a finished future."""

    workers = 1

    def submit(self, fn, /, *args, **kwargs):
        future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


def process_executor(workers=None):
    """A pool of `workers` local processes (default: one per CPU), started by "spawn" since JAX is
    not fork-safe, and started at once with the cores shared out: BLAS/OpenMP threads per worker
    = CPUs // workers, unless the environment says otherwise (two workers of two spinning
    OpenBLAS threads on two cores run 20 times slower). Each process loads
    the data and compiles once, for all the trials it runs."""
    workers = workers or os.cpu_count() or 1
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    limits = {name: threads for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
              if name not in os.environ}
    pool = concurrent.futures.ProcessPoolExecutor(workers,
                                                  mp_context=multiprocessing.get_context("spawn"),
                                                  initializer=_die_with_parent,
                                                  initargs=(os.getpid(),))
    try:
        with _environment(limits):
            # A process spawns per submit while none is idle: one call each starts them all now.
            for started in [pool.submit(os.getpid) for _ in range(workers)]:
                started.result()
    except concurrent.futures.BrokenExecutor:
        pool.shutdown(wait=False, cancel_futures=True)
        raise XpnetError("the worker processes died while starting. Each one imports the main "
                         "script again (they are spawned): if a script runs the search, put the "
                         "call under `if __name__ == \"__main__\":`, or choose executor "
                         "'sequential' (or 'vmap' on jax)") from None
    pool.workers = workers
    return pool


PARENT_POLL = 0.5   # seconds between a pool worker's looks at its parent


def _die_with_parent(parent):
    """A pool worker's initializer: end this process (at once, as its parent would have ended it)
    once `parent` is no longer its parent, e.g. killed by SIGKILL, which gives the pool no chance
    to stop its workers. A daemon thread looks every PARENT_POLL seconds: the worker is reparented
    when its parent dies. (Linux's PR_SET_PDEATHSIG would tie it to the parent's thread that
    spawned it, not to the process.)"""
    def watch():
        while os.getppid() == parent:
            time.sleep(PARENT_POLL)
        os._exit(1)

    threading.Thread(target=watch, name="xpnet-watch-parent", daemon=True).start()


@contextlib.contextmanager
def _environment(values):
    """os.environ with `values` set (for the processes started meanwhile), restored afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class DaskExecutor(concurrent.futures.Executor):
    """The executor of a Dask cluster (`distributed.Client(address).get_executor()`); shutting it
    down closes the client, not the cluster. Its workers need xpnet and the data set installed.

    The scheduler is probed first, within `timeout` seconds for the whole handshake (Dask's own
    connect timeout stops at the TCP connection: a peer that accepts and says nothing would hold
    the client for ever, one that answers in another protocol makes it allocate the "length" it
    read); a peer that does not answer as a Dask scheduler is refused with one XpnetError line."""

    def __init__(self, address, timeout=DASK_TIMEOUT):
        try:
            import distributed
        except ImportError:
            raise XpnetError("executor 'dask' needs dask.distributed: "
                             "pip install 'xpnet[search]'") from None
        if not address:
            raise _needs_dask_address()
        timeout = check_number(timeout, "timeout", low=0, low_open=True)
        _probe_dask_scheduler(distributed, address, timeout)
        client = distributed.Client.__new__(distributed.Client)
        try:
            client.__init__(address, timeout=timeout, set_as_default=False)
        except Exception as exc:  # noqa: BLE001 -- whatever the client met: one line
            _discard_client(client)
            why = (f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError)
                   and not str(exc) else _one_line(exc))
            raise XpnetError(f"cannot connect to the Dask scheduler at {address}: {why}") from None
        self.client = client
        self.address = address
        self.workers = max(1, sum(self.client.nthreads().values()))
        self._executor = self.client.get_executor(pure=False)

    def submit(self, fn, /, *args, **kwargs):
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait=True, *, cancel_futures=False):
        self._executor.shutdown(wait=wait)
        self.client.close()


def _probe_dask_scheduler(distributed, address, timeout):
    """Return when a Dask scheduler answers at `address` within `timeout` seconds (connection,
    handshake and an "identity" call); otherwise XpnetError. It runs on an event loop of its own
    in a thread of its own, so that it works whether or not the caller runs an event loop."""
    import asyncio

    from distributed.comm import connect, parse_address, parse_host_port, registry

    try:
        scheme, location = parse_address(address)
        registry.get_backend(scheme)
        if scheme in ("tcp", "tls", "ws", "wss") and not 0 < parse_host_port(location)[1] < 65536:
            raise ValueError(f"port out of range in {location!r}")
    except ValueError as exc:
        raise XpnetError(f"{address!r} is not a Dask scheduler address ({_one_line(exc)}); "
                         "give one like tcp://host:8786") from None

    async def identity():
        comm = await connect(address, timeout=max(timeout / 2, timeout - 0.5),
                             **distributed.Security().get_connection_args("client"))
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    outcome = {}

    def probe():
        try:  # connect's own timeout comes first when the connection fails: it says why
            outcome["identity"] = asyncio.run(asyncio.wait_for(identity(), timeout))
        except BaseException as exc:  # noqa: BLE001 -- reported below, in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=probe, name="xpnet-dask-probe", daemon=True)
    thread.start()
    thread.join(timeout + 1)
    exc, answer = outcome.get("error"), outcome.get("identity")
    if exc is None and answer is None:
        exc = TimeoutError()
    if isinstance(exc, (OSError, TimeoutError, asyncio.TimeoutError)):
        while exc.__cause__ is not None:  # connect's OSError names the last attempt's error
            exc = exc.__cause__
        why = (exc.strerror if isinstance(exc, OSError) and exc.strerror
               else _one_line(exc) if str(exc) else "no answer")
        raise XpnetError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
                         f"({why})") from None
    if exc is not None or not isinstance(answer, dict) or answer.get("type") != "Scheduler":
        said = (f"it answered as a Dask {answer['type']}" if isinstance(answer, dict)
                and isinstance(answer.get("type"), str) else "it does not speak Dask's protocol")
        raise XpnetError(f"{address} is not a Dask scheduler ({said}); give the address of "
                         "a running scheduler, e.g. tcp://host:8786") from None


def _discard_client(client):
    """Close a distributed.Client whose start failed, so that its __del__ (at the interpreter's
    exit at the latest) has nothing left to do and prints nothing."""
    with contextlib.suppress(Exception):
        client.close(timeout=1)
    with contextlib.suppress(Exception):
        client.status = "closed"
        client._loop_runner.stop()


def _one_line(exc):
    """An exception as one line: its first line, or its type's name when it says nothing."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _needs_dask_address():
    return ConfigError("executor 'dask' needs dask_address (--dask ADDRESS on the command line): "
                       "the address of a running scheduler, e.g. tcp://host:8786")


def make_executor(name, workers=None, dask_address=None):
    """The executor called `name` ("sequential", "processes" or "dask"; "dask" needs the address
    of a running scheduler: without one, distributed.Client would start a cluster of its own)."""
    if name == "sequential":
        return SequentialExecutor()
    if name == "processes":
        return process_executor(workers)
    if name == "dask":
        if not dask_address:
            raise _needs_dask_address()
        return DaskExecutor(dask_address)
    raise ConfigError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")


# --- trials: JSON spec in, JSON result out ---------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _split(dataset, train_size, validation_rate, seed):
    """Host ((x_train, t_train), (x_val, t_val)): the first train_size training images, split."""
    (x, t), _ = load_mnist(dataset=dataset)  # the test set is never looked at
    if not BATCH_SIZE <= train_size <= len(x):
        raise ValueError(f"train_size must be in {BATCH_SIZE}..{len(x)} for {dataset}, "
                         f"got {train_size}")
    split = validation_split(x[:train_size], t[:train_size], validation_rate, seed)
    if len(split[0][0]) < BATCH_SIZE:
        raise ValueError(f"{train_size} images less {validation_rate:.0%} for validation leave "
                         f"less than one batch of {BATCH_SIZE}")
    return split


@functools.lru_cache(maxsize=4)
def _device_data(dataset, train_size, validation_rate, seed, backend, dtype):
    (x, t), (x_val, t_val) = _split(dataset, train_size, validation_rate, seed)
    be = get_backend(backend)
    return be.asarray(x, dtype), be.asarray(t), be.asarray(x_val, dtype), be.asarray(t_val)


@functools.lru_cache(maxsize=None)
def _epoch_program(backend, dtype):
    """epoch(states, x, t, orders, e, evals) -> (states, mean losses, counts): epoch e + 1 (the
    steps of `orders[e]`) for a stack of trials, then their right answers on each (x, t) of
    `evals`, as `stacked_programs` trains a group of nets (one program on JAX: `lax.scan` over the
    steps, `vmap` over the trials), compiled once per process and stack size. The
    hyperparameters live in the states (lr in opt_state.hyper, λ in weight_decay), so one program
    serves every trial."""
    be = get_backend(backend)
    model = MultiLayerNet(784, HIDDEN, 10, weight_decay_lambda=1.0, backend=be, dtype=dtype).model
    chunk, _ = stacked_programs(be, [(model, SGD())])

    def epoch(states, x, t, orders, e, evals):
        (states,), (losses,), (counts,) = chunk([states], x, t, orders, e, evals)
        return states, be.xp.mean(losses, axis=0), counts

    return be.jit(epoch)


def _initial_state(spec, backend):
    """The TrainState of a trial: He-init weights from the trial's seed (the same on every
    backend), its lr in the optimizer state and its λ as an array."""
    net = MultiLayerNet(784, HIDDEN, 10, weight_decay_lambda=spec["weight_decay"], backend=backend,
                        seed=spec["trial_seed"], dtype=spec["dtype"])
    optimizer = SGD()
    state = initial_train_state(net, optimizer)
    return state._replace(opt_state=optimizer.with_hyper(state.opt_state, lr=spec["lr"]))


def prune_rule(epochs):
    """The JSON pruning rule of a search of `epochs` epochs (see the module's docstring)."""
    epoch = max(2, epochs // 10)
    return {"epoch": epoch, "min_loss_drop": round(MIN_LOSS_DROP_PER_EPOCH * (epoch - 1), 6)}


def _prunes(rule, epoch, losses):
    """True when `rule` says a trial with these per-epoch mean losses is hopeless (NaN: too)."""
    return (rule is not None and epoch == rule["epoch"]
            and not 1 - losses[-1] / losses[0] >= rule["min_loss_drop"])


def run_trial(spec):
    """Train one trial (a JSON spec from the parent) in this process and return its JSON result:
    number, lr, weight_decay, per-epoch train_loss, train_acc and val_acc (the epochs it ran),
    final_val_acc, pruned, seconds. This is what pool and Dask workers run."""
    return run_trials([spec])[0]


def run_trials(specs, on_epoch=None, on_done=None):
    """Train trials alike but for number, lr, weight_decay and trial_seed side by side (on JAX as
    ONE program vmapped over them, see `_epoch_program`), and return their results as
    `run_trial` does.

    The trials share each epoch's batch order. Pruned trials are dropped from the program once a
    quarter of its rows are pruned (until then they are computed and ignored; each new size
    compiles once). `on_epoch(i, epoch, val_acc)` after each epoch a trial ran and `on_done(i,
    result)` when it ends (i: its index in `specs`) are called while the next epoch computes (JAX
    dispatches asynchronously), so the caller's bookkeeping overlaps the training.
    """
    start = time.perf_counter()
    first, epochs = specs[0], specs[0]["epochs"]
    be = get_backend(first["backend"], first.get("device"))  # None: its default device
    x, t, x_val, t_val = _device_data(first["dataset"], first["train_size"],
                                      first["validation_rate"], first["seed"], be, first["dtype"])
    n_train, n_val = x.shape[0], x_val.shape[0]
    orders = be.asarray(epoch_orders(first["seed"], n_train, BATCH_SIZE, epochs), be.index_dtype)
    epoch_fn = _epoch_program(be, first["dtype"])
    # the initial states are made on the host (on JAX twice as fast) and moved at once by `stack`
    states = stack(be, [_initial_state(spec, get_backend("numpy")) for spec in specs])
    results = [{"number": s["number"], "lr": s["lr"], "weight_decay": s["weight_decay"],
                "train_loss": [], "train_acc": [], "val_acc": [], "pruned": False} for s in specs]

    def finish(i):
        results[i]["final_val_acc"] = results[i]["val_acc"][-1]
        results[i]["seconds"] = time.perf_counter() - start  # shared with the program's others
        return on_done, i, results[i]

    rows = list(range(len(specs)))  # the trial of each row of `states`; None once pruned
    calls = []                      # the callbacks of the last epoch
    for epoch in range(1, epochs + 1):
        states, *outputs = epoch_fn(states, x, t, orders, epoch - 1, [(x, t), (x_val, t_val)])
        _call(calls)  # while this epoch computes
        loss, hits = (be.to_numpy(a) for a in outputs)
        calls = []
        for row, i in enumerate(rows):
            if i is None:
                continue
            result = results[i]
            result["train_loss"].append(float(loss[row]))
            result["train_acc"].append(float(hits[row, 0]) / n_train)
            result["val_acc"].append(float(hits[row, 1]) / n_val)
            calls.append((on_epoch, i, epoch, result["val_acc"][-1]))
            if _prunes(first["prune"], epoch, result["train_loss"]):
                result["pruned"], rows[row] = True, None
                calls.append(finish(i))
        alive = [row for row, i in enumerate(rows) if i is not None]
        if not alive:
            break
        if len(alive) <= 0.75 * len(rows):
            states = keep_nets(be, states, alive)
            rows = [rows[row] for row in alive]
    _call(calls + [finish(i) for i in rows if i is not None])
    return results


def _call(calls):
    """Make the calls (fn, *args) whose fn is not None."""
    for fn, *args in calls:
        if fn is not None:
            fn(*args)


# --- the study -------------------------------------------------------------------------------------

@contextlib.contextmanager
def _quiet_optuna():
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


def _sqlite_pragmas(connection, _record):
    # WAL with synchronous=NORMAL: a commit no longer waits for an fsync (4 ms each here, and a
    # search commits every epoch of every trial); the database stays consistent after a crash.
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")


def _sqlite_file(url):
    """The file of an sqlite storage URL (a Path), or None (another database, or in memory)."""
    import sqlalchemy

    if not isinstance(url, str):
        return None
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return None  # the storage says what is wrong with it
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


@contextlib.contextmanager
def _sqlite_guard(url):
    """For an sqlite storage: hold an exclusive flock on FILE.lock while the search uses the study
    (a second search of it is refused: it would fail the first one's running trials), and refuse
    a FILE that is not an sqlite database or fails sqlite's integrity check, leaving it as it
    is (read-only). Other storages: nothing."""
    path = _sqlite_file(url)
    if path is None:
        yield
        return

    def busy(pid):
        return XpnetError(f"the study {path} is in use by another search (pid {pid}); wait for it "
                          "to end, or use another out_dir")
    with exclusive_lock(f"{path}.lock", busy):
        _check_sqlite(path)
        yield


def _check_sqlite(path):
    """XpnetError naming `path` when it is not an sqlite database or is corrupt (opened read-only:
    nothing is written to it, not even a recovery of its journal)."""
    try:
        if path.stat().st_size == 0:
            return
    except OSError:
        return  # no file yet: the storage creates it (or says why it cannot)
    move = "; move it away to start a new search (or use another out_dir)"
    # Read-only; immutable (no -wal or -shm made beside it) unless a journal left by a crash is
    # there to be read with it.
    journal = any(Path(f"{path}{end}").exists() for end in ("-wal", "-journal"))
    try:
        with contextlib.closing(sqlite3.connect(
                f"{path.resolve().as_uri()}?{'mode=ro' if journal else 'immutable=1'}",
                uri=True)) as db:
            problems = [row[0] for row in db.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        name = getattr(exc, "sqlite_errorname", "")
        if name == "SQLITE_NOTADB":
            raise XpnetError(f"{path} is not an sqlite database (so no study){move}") from None
        if name == "SQLITE_CORRUPT":
            raise XpnetError(f"{path} is corrupt (sqlite: {_one_line(exc)}){move}") from None
        return  # cannot open it (permissions, a lock...): the storage says why
    if problems != ["ok"]:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise XpnetError(f"{path} is corrupt (sqlite integrity check failed: "
                         f"{_one_line(problems[0])}{more}){move}")


def _open_study(optuna, url, sampler, seed, config):
    """The study STUDY_NAME in `url`, created or loaded; refused if its config differs."""
    import sqlalchemy

    try:
        storage = optuna.storages.RDBStorage(url)
        if storage.engine.name == "sqlite":
            sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
            storage.engine.dispose()
        # Trials prune themselves (see the module's docstring): the study's pruner has no say.
        study = optuna.create_study(storage=storage, study_name=STUDY_NAME, direction="maximize",
                                    pruner=optuna.pruners.NopPruner(), load_if_exists=True)
    except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
        raise XpnetError(f"cannot open the study storage {url}: "
                         f"{_one_line(getattr(exc, 'orig', None) or exc)}") from None
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
    # `_sqlite_guard` sees to it; elsewhere it is one search per study, as `missing` assumes.
    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(stale.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    # A seed of its own for each resumption: a resumed study must not replay its first trials.
    sampler_seed = int(np.random.SeedSequence([seed, len(study.trials)]).generate_state(1)[0])
    study.sampler = (optuna.samplers.RandomSampler(seed=sampler_seed) if sampler == "random"
                     else optuna.samplers.TPESampler(seed=sampler_seed))
    return study, storage


def _trial_dict(frozen):
    val = [frozen.intermediate_values[e] for e in sorted(frozen.intermediate_values)]
    return {"number": frozen.number, "lr": frozen.params["lr"],
            "weight_decay": frozen.params["weight_decay"],
            "train_loss": frozen.user_attrs.get("train_loss", []),
            "train_acc": frozen.user_attrs.get("train_acc", []), "val_acc": val,
            "final_val_acc": val[-1] if val else frozen.value,
            "pruned": frozen.state.name == "PRUNED", "seconds": frozen.user_attrs.get("seconds")}


def _ranking(trials):
    """Trials best first: by final validation accuracy, finished ones before pruned ones."""
    return sorted(trials, key=lambda t: (not t["pruned"], t["final_val_acc"]), reverse=True)


def suggest_ranges(ranked):
    """The lr and λ ranges spanned by the best tenth of the trials (at least 2, at most TOP):
    the narrowed search space the book's next round would use."""
    best = ranked[:min(TOP, max(2, math.ceil(len(ranked) / 10)))]
    out = {"from_best": len(best)}
    for name in ("lr", "weight_decay"):
        values = [t[name] for t in best]
        out[name] = [min(values), max(values)]
        out[f"log10_{name}"] = [math.log10(min(values)), math.log10(max(values))]
    return out


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
        raise _needs_dask_address()
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

    with _quiet_optuna() as optuna, _sqlite_guard(storage):
        study, opened = _open_study(optuna, storage, sampler, seed, config)
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
            done = [_trial_dict(t) for t in study.get_trials(deepcopy=False, states=finished)]
        finally:
            opened.engine.dispose()
    ranked = _ranking(done)
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
        _run_vmapped(study, missing, group, plan, bar)
        return f"vmap (up to {group} trials per program)"
    if not isinstance(executor, str):  # the caller's own executor
        workers = parallel or getattr(executor, "_max_workers", 1)
        _run_pooled(study, executor, missing, 2 * workers, plan, epochs, bar)
        return type(executor).__name__
    if not missing:
        return executor
    pool = make_executor(executor, parallel, dask_address)
    workers = parallel or pool.workers
    try:
        # Sequential: tell each trial before asking the next (TPE learns from all). Pools: two
        # per worker keep the workers busy while the parent tells the study.
        in_flight = 1 if executor == "sequential" else 2 * workers
        _run_pooled(study, pool, missing, in_flight, plan, epochs, bar)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return f"{executor} ({workers} worker{'s' * (workers > 1)})"


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


def _run_pooled(study, pool, missing, in_flight, plan, epochs, bar):
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


def _run_vmapped(study, missing, group, plan, bar):
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


# --- the experiment: numbers (JSON) and the book's plot of the best 20 (PNG) ------------------------

def plot_best(result, top=TOP):
    """The book's figure: one small panel per best trial, validation accuracy solid, training
    accuracy dashed, against the epoch."""
    from matplotlib.figure import Figure

    by_number = {t["number"]: t for t in result.trials}
    best = [by_number[n] for n in result.ranking[:top]]
    cols = 5
    rows = max(1, math.ceil(len(best) / cols))
    figure = Figure(figsize=(2.4 * cols, 2.1 * rows + 0.6), layout="constrained")
    for k, trial in enumerate(best):
        ax = figure.add_subplot(rows, cols, k + 1)
        x = np.arange(1, len(trial["val_acc"]) + 1)
        ax.plot(x, trial["val_acc"], label="validation")
        ax.plot(x, trial["train_acc"], "--", label="train")
        ax.set_xlim(1, max(2, result.config["epochs"]))
        ax.set_ylim(0.0, 1.0)
        ax.set_xticks([])
        if k % cols:
            ax.set_yticks([])
        pruned = " (pruned)" if trial["pruned"] else ""
        ax.set_title(f"Best-{k + 1}: val {trial['final_val_acc']:.2f}{pruned}\n"
                     f"lr {trial['lr']:.1e}, λ {trial['weight_decay']:.1e}", fontsize=7)
    s = result.suggested
    figure.suptitle(f"{len(result.trials)} trials: validation (solid) and training (dashed) "
                    f"accuracy of the best {len(best)}; suggested lr 10^[{s['log10_lr'][0]:.1f}, "
                    f"{s['log10_lr'][1]:.1f}], λ 10^[{s['log10_weight_decay'][0]:.1f}, "
                    f"{s['log10_weight_decay'][1]:.1f}]", fontsize=9)
    return figure


def summarize(result):
    """A few lines for the terminal: what ran, the best trial, the narrowed ranges."""
    best, s = result.best, result.suggested
    pruned = sum(t["pruned"] for t in result.trials)
    return "\n".join([
        f"{len(result.trials)} trials ({pruned} pruned) of {result.config['epochs']} epochs; "
        f"{result.ran} run now with {result.executor} on {result.backend} in {result.seconds:.1f} s "
        f"({result.trials_per_second:.2f} trials/s)",
        f"best: val acc {best['final_val_acc']:.3f} with lr {best['lr']:.3g}, "
        f"weight decay {best['weight_decay']:.3g} (trial {best['number']})",
        f"suggested (the best {s['from_best']}): lr 10^{s['log10_lr'][0]:.1f} .. "
        f"10^{s['log10_lr'][1]:.1f}, weight decay 10^{s['log10_weight_decay'][0]:.1f} .. "
        f"10^{s['log10_weight_decay'][1]:.1f}"])


def hyperparameter_search_experiment(backend=None, dataset="auto", out_dir=".", quick=False, seed=0,
                                     progress=None, **options):
    """Run `hyperparameter_search` (options: executor, dask_address, sampler, trials, epochs, ...)
    and save hyperparameter-search.json and .png in `out_dir`."""
    from xpnet.experiments.common import save_result

    started = time.perf_counter()
    result = hyperparameter_search(backend=backend, dataset=dataset, out_dir=out_dir, quick=quick,
                                   seed=seed, progress=progress, **options)
    numbers = {"config": result.config, "executor": result.executor, "backend": result.backend,
               "sampler": result.sampler, "storage": result.storage, "ran": result.ran,
               "search_seconds": result.seconds, "trials_per_second": result.trials_per_second,
               "best": result.best, "suggested": result.suggested, "ranking": result.ranking,
               "trials": result.trials}
    return save_result("hyperparameter-search", summarize(result), numbers, plot_best(result),
                       out_dir, started)
