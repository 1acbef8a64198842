"""Mini-batch training: data on the device once, one pure step, a whole epoch compiled on JAX.

A run is a sequence of pure steps over a `TrainState`; everything random is derived from the
seed (the batch order of epoch e from (seed, e), Dropout keys from the step number), so a run
resumed from a checkpoint continues exactly as if it had never stopped.

The pieces are pure: `make_train_step`, `run_epoch`/`compiled_epoch`, `accuracy`, and
`prepare_epochs`, which puts a run's data on the device and compiles its epoch and evaluation
ahead. `fit` is the loop over them; what happens around it (a progress bar, checkpoints, a line
per epoch, a user's own) are callbacks (xpnet.nn.callbacks), called with a `Run`.
"""
import contextlib
import time
from typing import Any, NamedTuple

import numpy as np

from xpnet.backends import backend_of, namespace_of
from xpnet.checks import check_int, check_seed
from xpnet.data.validation import check_classification_data
from xpnet.errors import ConfigError, DivergedError
from xpnet.nn.batching import EVAL_CHUNK, batch_order, count_in_chunks
from xpnet.nn.callbacks import Callback, Checkpoint, LambdaCallback, ProgressBar
from xpnet.nn.structured_gradient import model_numerical_gradient

#: How `fit` computes gradients: backprop (chapter 5) or central differences (chapter 4).
GRADIENTS = ("backprop", "numerical")


class EpochResult(NamedTuple):
    epoch: int
    train_loss: float    # mean of the epoch's mini-batch losses
    train_acc: float     # accuracy on the training set (or its first eval_samples) after the epoch
    test_acc: float
    seconds: float       # wall time of the epoch's training steps, device synced
    eval_seconds: float  # wall time of the two accuracy evaluations


class FitResult(NamedTuple):
    epochs: list           # EpochResult of every epoch of the run (resumed ones included)
    compile_seconds: float  # compiling the epoch and evaluation (0 where nothing compiles)
    batch_losses: list     # loss of every mini-batch trained in this call, as floats


class TrainState(NamedTuple):
    """Everything a training step changes, as arrays (what a checkpoint stores)."""
    params: dict
    opt_state: Any
    net_state: dict      # BatchNorm running statistics ({} without BatchNorm)
    step: Any            # int32 0-d: batches trained so far; Dropout keys derive from it
    weight_decay: Any    # λ as a 0-d array (0 without decay): one compiled step serves any value


def initial_train_state(net, optimizer):
    """The TrainState of a run starting from `net`'s current params and state."""
    backend = net.backend
    weight_decay = net.model.decay(net.params[net.model.decayed_weights()[0]])
    return TrainState(dict(net.params), optimizer.init(net.params), dict(net.state),
                      backend.xp.zeros((), dtype=backend.xp.int32, device=backend.device), weight_decay)


def make_train_step(model, optimizer, backend, key, gradient="backprop"):
    """step(state, x, t, order, i) -> (state, loss): one update on batch `order[i]`.

    The whole data set stays on the device and the batch is gathered inside the step. The loss
    is the one of the params before the update. `key` is the run's random key.
    """
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
    loss_of = backend.jit(lambda p, x, t, s, k, wd: model.loss(p, x, t, True, s, k, wd))

    xp = backend.xp

    def step(state, x, t, order, i):
        batch = order[i, ...]
        xb, tb = xp.take(x, batch, axis=0), xp.take(t, batch, axis=0)
        k = backend.fold_in(key, state.step) if model.random else None
        if gradient == "backprop":
            loss, grads, net_state = model.loss_grad_state(state.params, xb, tb, state.net_state, k,
                                                           state.weight_decay)
        else:  # eager: the structured numerical gradient runs compiled chunks of its own
            loss = loss_of(state.params, xb, tb, state.net_state, k, state.weight_decay)
            grads = model_numerical_gradient(model, state.params, xb, tb, state.net_state, k,
                                             state.weight_decay)
            net_state = state.net_state
            if net_state:  # BatchNorm: the training-mode forward pass updates the running values
                net_state = model.forward(state.params, xb, True, net_state, k)[2]
        params, opt_state = optimizer.apply(state.params, grads, state.opt_state)
        return state._replace(params=params, opt_state=opt_state, net_state=net_state,
                              step=state.step + 1), loss

    return step


def run_epoch(step, state, x, t, order, on_batch=None):
    """Apply `step` to every batch of `order` eagerly; returns (state, the batch losses as one
    array), as the compiled epoch does."""
    losses = []
    for i in range(order.shape[0]):
        state, loss = step(state, x, t, order, i)
        losses.append(loss)
        if on_batch is not None:
            on_batch()
    return state, namespace_of(x).stack(losses)


def compiled_epoch(step, backend):
    """epoch(state, x, t, order) -> (state, losses) as one program: `lax.scan` under `jax.jit`."""
    def epoch(state, x, t, order):
        return backend.scan(lambda s, i: step(s, x, t, order, i), state, order.shape[0])
    return backend.jit(epoch)


def accuracy(count, state, x, t):
    """The fraction of (x, t) that `count` (the model's correct_count, compiled or not) gets right
    with the params of `state`, EVAL_CHUNK samples per call: one device -> host copy, so only at
    logging boundaries."""
    return _value(count_in_chunks(count, state.params, x, t, state.net_state)) / x.shape[0]


def _compiled_count(backend, model, state, x, t):
    """model.correct_count for accuracy(·, x, t): compiled ahead for its chunks' shape where the
    backend compiles (a shorter last chunk compiles on first use)."""
    jitted = backend.jit(model.correct_count)
    if not backend.compiles:
        return jitted
    size = min(x.shape[0], EVAL_CHUNK)
    full = backend.compile(jitted, state.params, x[:size, ...], t[:size, ...], state.net_state)
    return lambda params, xb, tb, net_state: (full if xb.shape[0] == size else jitted)(
        params, xb, tb, net_state)


class Programs(NamedTuple):
    """What `prepare_epochs` makes of a run: its data on the device, its programs compiled."""
    train_epoch: Any        # (state, epoch, on_batches) -> (state, host losses, seconds)
    evaluate: Any           # state -> (train_acc, test_acc, seconds)
    compile_seconds: float  # compiling both ahead (0 where nothing compiles)


def prepare_epochs(net, optimizer, state, train, test, batch_size, seed, gradient="backprop",
                   eval_samples=None):
    """Programs training `net` from TrainState `state` on host or device arrays `train=(x, t)`.

    The data goes to the device once. On a compiling backend the epoch (backprop: one
    program) and the evaluations are compiled here, nothing run, so the epoch clocks never include
    compilation. `train_epoch` trains epoch `epoch` (its batch order drawn from (seed, epoch)),
    calls `on_batches(n)` as batches are done and times the steps, device synced; `evaluate`
    gives the accuracies on the first `eval_samples` (None: all) of each set and their time."""
    backend = net.backend
    (x_train, t_train), (x_test, t_test) = net.to_device(*train), net.to_device(*test)
    x_eval, t_eval = _first(x_train, eval_samples), _first(t_train, eval_samples)
    x_test_eval, t_test_eval = _first(x_test, eval_samples), _first(t_test, eval_samples)
    step = make_train_step(net.model, optimizer, backend, backend.key(seed), gradient)
    compiled = backend.compiles and gradient == "backprop"
    epoch_fn = compiled_epoch(step, backend) if compiled else None
    n_train, start = x_train.shape[0], time.perf_counter()
    # pay for compilation before the clocks start; nothing is run
    if compiled:
        order = batch_order(seed, 1, n_train, batch_size, backend)
        epoch_fn = backend.compile(epoch_fn, state, x_train, t_train, order)
    count_train = _compiled_count(backend, net.model, state, x_eval, t_eval)
    count_test = _compiled_count(backend, net.model, state, x_test_eval, t_test_eval)
    compile_seconds = time.perf_counter() - start if backend.compiles else 0.0

    def train_epoch(state, epoch, on_batches):
        order = batch_order(seed, epoch, n_train, batch_size, backend)
        start = time.perf_counter()
        if compiled:
            state, losses = epoch_fn(state, x_train, t_train, order)
            on_batches(order.shape[0])
        else:
            state, losses = run_epoch(step, state, x_train, t_train, order, on_batch=lambda: on_batches(1))
        backend.sync(state)
        seconds = time.perf_counter() - start
        return state, backend.to_numpy(losses), seconds

    def evaluate(state):
        start = time.perf_counter()
        train_acc = accuracy(count_train, state, x_eval, t_eval)
        test_acc = accuracy(count_test, state, x_test_eval, t_test_eval)
        return train_acc, test_acc, time.perf_counter() - start

    return Programs(train_epoch, evaluate, compile_seconds)


class Run:
    """A training run in progress, as `fit` shows it to its callbacks (see xpnet.nn.callbacks).

    `net`, `optimizer`, `backend`, `epochs` (the last epoch), `n_batches` (per epoch), `config`
    (what defines the run: a checkpoint's must match it), `state` (the TrainState so far: a
    callback may replace it, e.g. with a new learning rate in its opt_state), `history` (the
    EpochResults so far, resumed ones included), `batch_losses` (those trained in this call);
    `stop_training = True` ends the run after the current epoch."""

    def __init__(self, net, optimizer, epochs, n_batches, config):
        self.net, self.optimizer, self.backend = net, optimizer, net.backend
        self.epochs, self.n_batches, self.config = epochs, n_batches, config
        self.state = initial_train_state(net, optimizer)
        self.history, self.batch_losses, self.stop_training = [], [], False

    def restore(self, state, history):
        """Go on from a saved TrainState after the epochs of `history` (EpochResults as dicts;
        a TypeError, with nothing changed, where one does not fit)."""
        self.history = [EpochResult(**e) for e in history]
        self.take(state)

    def take(self, state):
        """Make `state` the run's, and its params and BatchNorm state the net's."""
        self.state = state
        self.net.params.update(state.params)
        self.net.state.update(state.net_state)


def fit(net, optimizer, train, test, epochs, batch_size=100, seed=0, *, callbacks=(), on_epoch=None,
        progress=None, checkpoint=None, resume=False, overwrite=False, config=None,
        gradient="backprop", eval_samples=None):
    """Train `net` with `optimizer` on `train=(x, t)` (host or device arrays) up to epoch `epochs`.

    Each epoch visits the training set in a shuffled order drawn from (seed, epoch), so every
    backend sees the same batches. On JAX (backprop) an epoch is one compiled program; elsewhere
    the steps run eagerly. After every epoch `net.params`/`net.state` hold the current arrays and
    the `callbacks` (xpnet.nn.callbacks) are called with its EpochResult. A non-finite loss
    raises DivergedError before the net or any callback (a checkpoint) takes its params.
    `eval_samples`: evaluate accuracy on the first N samples of each set only (the book's
    evaluate_sample_num_per_epoch). `config`: a JSON-able dict of what else defines the run
    (with batch_size, seed and gradient it is `run.config`).
    Conveniences that add callbacks: `on_epoch(EpochResult)` (a LambdaCallback);
    `progress` (a ProgressBar: True shows it, False hides it, None shows it on a terminal;
    none is added where `callbacks` holds one);
    `checkpoint` (a path), `resume`, `overwrite` (a Checkpoint: save after every epoch; continue
    the run saved there, `epochs` being the total; replace an existing checkpoint).
    """
    epochs, batch_size, seed, n_batches = _check(net, train, test, epochs, batch_size, seed, eval_samples)
    if resume and checkpoint is None:
        raise ConfigError("resume=True needs the checkpoint path")
    callbacks = _callbacks(callbacks, on_epoch, progress, checkpoint, resume, overwrite)
    run = Run(net, optimizer, epochs, n_batches,
              {"batch_size": batch_size, "seed": seed, "gradient": gradient, **(config or {})})

    def call(hook, *args):
        for callback in callbacks:
            getattr(callback, hook)(*args)

    with contextlib.ExitStack() as ends:
        for callback in callbacks:
            callback.on_train_begin(run)
            ends.callback(callback.on_train_end, run)
        programs = prepare_epochs(net, optimizer, run.state, train, test, batch_size, seed, gradient,
                                  eval_samples)
        # a non-finite loss stops the run with DivergedError: NumPy's overflow warnings would only repeat it
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for epoch in range(len(run.history) + 1, epochs + 1):
                call("on_epoch_begin", run, epoch)
                state, losses, seconds = programs.train_epoch(run.state, epoch,
                                                              lambda n: call("on_batches", n))
                diverged = np.flatnonzero(~np.isfinite(losses))
                if diverged.size:  # stop before the net or the checkpoint takes the broken params
                    raise DivergedError(epoch, int(diverged[0]) + 1, float(losses[diverged[0]]), run.history)
                train_acc, test_acc, eval_seconds = programs.evaluate(state)
                run.take(state)
                run.batch_losses.extend(float(v) for v in losses)
                result = EpochResult(epoch, float(np.mean(losses)), train_acc, test_acc, seconds,
                                     eval_seconds)
                run.history.append(result)
                call("on_epoch_end", run, result)
                if run.stop_training:
                    break
    return FitResult(run.history, programs.compile_seconds, run.batch_losses)


def _check(net, train, test, epochs, batch_size, seed, eval_samples):
    """(epochs, batch_size, seed, batches per epoch) once the settings and both data sets are
    checked: before anything is claimed, moved or compiled."""
    epochs, batch_size = check_int(epochs, "epochs"), check_int(batch_size, "batch_size")
    seed = check_seed(seed)
    if eval_samples is not None:
        check_int(eval_samples, "eval_samples")
    check_classification_data(*train, net.input_shape, net.output_size, "training data")
    check_classification_data(*test, net.input_shape, net.output_size, "test data")
    n_batches = train[0].shape[0] // batch_size
    if n_batches == 0:
        raise ConfigError(f"batch size {batch_size} is larger than the training set "
                          f"({train[0].shape[0]} samples)")
    return epochs, batch_size, seed, n_batches


def _callbacks(callbacks, on_epoch, progress, checkpoint, resume, overwrite):
    """The callbacks of a fit: the user's and those its convenience arguments ask for."""
    callbacks = list(callbacks)
    for callback in callbacks:
        if not isinstance(callback, Callback):
            raise TypeError(f"callbacks must be xpnet.nn.callbacks.Callback objects, got {callback!r}")
    if on_epoch is not None:
        callbacks.insert(0, LambdaCallback(on_epoch_end=lambda run, result: on_epoch(result)))
    if checkpoint is not None:  # first: the others see the resumed run, and it saves before on_epoch
        callbacks.insert(0, Checkpoint(checkpoint, resume=resume, overwrite=overwrite))
    if not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(ProgressBar(progress))
    return callbacks


def _first(array, n):
    """The first `n` rows of `array` (all for None or more than it has)."""
    return array if n is None or n >= array.shape[0] else array[:n, ...]


def _value(scalar):
    """A 0-d array of any backend as a Python number (one device -> host copy: a sync, so
    only at logging boundaries)."""
    return backend_of(scalar).to_numpy(scalar).item()
