"""Executors in the concurrent.futures style, `submit(fn, *args) -> future`: in this process
("sequential"), in local processes ("processes"), or on a Dask cluster ("dask", see
xpnet.search.dask). What a pool runs is a module-level function (`run_trial`), which the worker
imports by its module path."""
import concurrent.futures
import contextlib
import multiprocessing
import os
import threading
import time

from xpnet.errors import ConfigError, XpnetError
from xpnet.search.common import EXECUTORS
from xpnet.search.dask import DaskExecutor, needs_dask_address

PARENT_POLL = 0.5   # seconds between a pool worker's looks at its parent


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
                                                  initializer=die_with_parent,
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


def die_with_parent(parent):
    """A pool worker's initializer (module-level: the spawned worker imports it by name): end this
    process (at once, as its parent would have ended it) once `parent` is no longer its parent,
    e.g. killed by SIGKILL, which gives the pool no chance to stop its workers. A daemon thread
    looks every PARENT_POLL seconds: the worker is reparented when its parent dies. (Linux's
    PR_SET_PDEATHSIG would tie it to the parent's thread that spawned it, not to the process.)"""
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


def make_executor(name, workers=None, dask_address=None):
    """The executor called `name` ("sequential", "processes" or "dask"; "dask" needs the address
    of a running scheduler: without one, distributed.Client would start a cluster of its own)."""
    if name == "sequential":
        return SequentialExecutor()
    if name == "processes":
        return process_executor(workers)
    if name == "dask":
        if not dask_address:
            raise needs_dask_address()
        return DaskExecutor(dask_address)
    raise ConfigError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
