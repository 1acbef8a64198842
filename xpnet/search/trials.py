"""Trials: a JSON spec in, a JSON result out. `run_trial` is what pool and Dask workers run (a
module-level function: a spawned worker imports it by its module path); `run_trials` trains many
trials side by side as one program (vmapped on JAX), pruning hopeless ones as it goes.

The data and the compiled epoch are cached per process, so a worker loads and compiles once for
all the trials it runs."""
import functools
import time

from xpnet.backends import get_backend
from xpnet.data import load_mnist, validation_split
from xpnet.nn.batching import epoch_orders
from xpnet.nn.models import MultiLayerNet
from xpnet.nn.optimizers import SGD
from xpnet.nn.stacked import stack, stacked_programs, train_stacked
from xpnet.nn.training import initial_train_state
from xpnet.search.common import BATCH_SIZE, HIDDEN, MIN_LOSS_DROP_PER_EPOCH


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
    model = MultiLayerNet(784, HIDDEN, 10, backend=be, dtype=dtype).model
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
    """The JSON pruning rule of a search of `epochs` epochs (see xpnet.search's docstring)."""
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

    rows = list(range(len(specs)))  # the trial of each row of the states; None once pruned
    calls = []                      # the callbacks of the last epoch

    def after(c, loss, hits):
        """Record epoch c + 1 of every trial still running; the rows to keep, or None."""
        nonlocal rows, calls
        _call(calls)  # while this epoch computes
        loss, hits = be.to_numpy(loss), be.to_numpy(hits)
        calls = []
        for row, i in enumerate(rows):
            if i is None:
                continue
            result = results[i]
            result["train_loss"].append(float(loss[row]))
            result["train_acc"].append(float(hits[row, 0]) / n_train)
            result["val_acc"].append(float(hits[row, 1]) / n_val)
            calls.append((on_epoch, i, c + 1, result["val_acc"][-1]))
            if _prunes(first["prune"], c + 1, result["train_loss"]):
                result["pruned"], rows[row] = True, None
                calls.append(finish(i))
        alive = [row for row, i in enumerate(rows) if i is not None]
        if alive and len(alive) > 0.75 * len(rows):
            return None  # the pruned rows are computed and ignored meanwhile
        rows = [rows[row] for row in alive]
        return alive

    train_stacked(be, epoch_fn, states, x, t, orders, [(x, t), (x_val, t_val)], after)
    _call(calls + [finish(i) for i in rows if i is not None])
    return results


def _call(calls):
    """Make the calls (fn, *args) whose fn is not None."""
    for fn, *args in calls:
        if fn is not None:
            fn(*args)
