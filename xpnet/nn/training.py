"""Mini-batch training: data on the device once, one pure step, a whole epoch compiled on JAX.

A run is a sequence of pure steps over a `TrainState`; everything random is derived from the
seed (the batch order of epoch e from (seed, e), Dropout keys from the step number), so a run
resumed from a checkpoint continues exactly as if it had never stopped.
"""
import contextlib
import sys
import time
from typing import Any, NamedTuple

import numpy as np
from tqdm.auto import tqdm

from xpnet.backends import backend_of, namespace_of
from xpnet.checks import check_classification_data, check_int, check_seed
from xpnet.errors import ConfigError, DataError, DivergedError
from xpnet.nn.batching import batch_order
from xpnet.nn.checkpoint import claim_checkpoint, load_checkpoint, save_checkpoint
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
    weight_decay: Any    # λ as an array (None without decay): one compiled step serves any value


def initial_train_state(net, optimizer):
    """The TrainState of a run starting from `net`'s current params and state."""
    backend = net.backend
    decays = net.model.decayed_weights()
    weight_decay = net.model.decay(net.params[decays[0]]) if decays else None
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


def fit(net, optimizer, train, test, epochs, batch_size=100, seed=0, on_epoch=None, progress=None,
        gradient="backprop", checkpoint=None, resume=False, eval_samples=None, config=None,
        overwrite=False):
    """Train `net` with `optimizer` on host arrays `train=(x, t)` up to epoch `epochs`.

    Each epoch visits the training set in a shuffled order drawn from (seed, epoch), so every
    backend sees the same batches. On JAX (backprop) an epoch is one compiled program; elsewhere
    the steps run eagerly. After every epoch `net.params`/`net.state` hold the current arrays,
    `on_epoch(EpochResult)` is called and, with `checkpoint` (a path), the run is saved there.
    `resume=True` continues the run saved at `checkpoint` (`epochs` is the total, so a run saved
    after epoch 1 and resumed with epochs=2 trains one more); `config` (a JSON-able dict of what
    defines the run) must match the one saved. An existing checkpoint is never replaced unless
    `overwrite=True`, nor a file that is not one; two runs cannot share one (`claim_checkpoint`).
    A non-finite loss raises DivergedError before the net or the checkpoint take its params.
    `eval_samples`: evaluate accuracy on the first N samples of each set only (the book's
    evaluate_sample_num_per_epoch).
    `progress`: show a progress bar (True), hide it (False), or show it when stderr is a terminal.
    """
    backend = net.backend
    (x_train, t_train), (x_test, t_test) = train, test
    epochs, batch_size = check_int(epochs, "epochs"), check_int(batch_size, "batch_size")
    seed = check_seed(seed)
    if eval_samples is not None:
        check_int(eval_samples, "eval_samples")
    check_classification_data(x_train, t_train, net.input_size, net.output_size, "training data")
    check_classification_data(x_test, t_test, net.input_size, net.output_size, "test data")
    n_train = x_train.shape[0]
    n_batches = n_train // batch_size
    if n_batches == 0:
        raise ConfigError(f"batch size {batch_size} is larger than the training set "
                          f"({n_train} samples)")
    config = {"batch_size": batch_size, "seed": seed, "gradient": gradient, **(config or {})}

    if resume and checkpoint is None:
        raise ConfigError("resume=True needs the checkpoint path")
    claim = contextlib.nullcontext() if checkpoint is None else \
        claim_checkpoint(checkpoint, resume=resume, overwrite=overwrite)
    with claim:  # refused at once if the checkpoint is in use, not ours to replace, or unwritable
        state = initial_train_state(net, optimizer)
        history = []
        if resume:
            state, meta = load_checkpoint(checkpoint, state, backend, config)
            try:
                history = [EpochResult(**e) for e in meta["history"]]
            except TypeError as exc:
                raise DataError(f"{checkpoint}: damaged checkpoint metadata: history: {exc}") from None
            net.params.update(state.params)
            net.state.update(state.net_state)

        x_train, t_train = net.to_device(x_train, t_train)
        x_test, t_test = net.to_device(x_test, t_test)
        x_eval, t_eval = _first(x_train, eval_samples), _first(t_train, eval_samples)
        x_test_eval, t_test_eval = _first(x_test, eval_samples), _first(t_test, eval_samples)
        step = make_train_step(net.model, optimizer, backend, backend.key(seed), gradient)
        compiled = backend.compiles and gradient == "backprop"
        epoch_fn = compiled_epoch(step, backend) if compiled else None
        correct_count = backend.jit(net.model.correct_count)

        compile_seconds = 0.0
        if backend.compiles:  # pay for compilation before the clocks start; nothing is run
            start = time.perf_counter()
            order = batch_order(seed, 1, n_train, batch_size, backend)
            if compiled:
                epoch_fn = backend.compile(epoch_fn, state, x_train, t_train, order)
            count_train = backend.compile(correct_count, state.params, x_eval, t_eval, state.net_state)
            count_test = backend.compile(correct_count, state.params, x_test_eval, t_test_eval, state.net_state)
            compile_seconds = time.perf_counter() - start
        else:
            count_train = count_test = correct_count

        batch_losses = []
        first = len(history) + 1
        bar = tqdm(total=max(0, epochs - first + 1) * n_batches, unit="batch",
                   desc=f"training on {backend.name}", disable=None if progress is None else not progress,
                   file=sys.stderr, leave=False, dynamic_ncols=True)
        # a non-finite loss stops the run with DivergedError: NumPy's overflow warnings would only repeat it
        with bar, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for epoch in range(first, epochs + 1):
                order = batch_order(seed, epoch, n_train, batch_size, backend)
                start = time.perf_counter()
                if compiled:
                    state, losses = epoch_fn(state, x_train, t_train, order)
                    bar.update(n_batches)
                else:
                    state, losses = run_epoch(step, state, x_train, t_train, order, on_batch=bar.update)
                backend.sync(state)
                seconds = time.perf_counter() - start
                losses = backend.to_numpy(losses)
                diverged = np.flatnonzero(~np.isfinite(losses))
                if diverged.size:  # stop before the net or the checkpoint takes the broken params
                    raise DivergedError(epoch, int(diverged[0]) + 1, float(losses[diverged[0]]), history)

                start = time.perf_counter()
                train_acc = _value(count_train(state.params, x_eval, t_eval, state.net_state)) / x_eval.shape[0]
                test_acc = (_value(count_test(state.params, x_test_eval, t_test_eval, state.net_state))
                            / x_test_eval.shape[0])
                eval_seconds = time.perf_counter() - start
                net.params.update(state.params)
                net.state.update(state.net_state)
                batch_losses.extend(float(v) for v in losses)
                result = EpochResult(epoch, float(np.mean(losses)), train_acc, test_acc, seconds, eval_seconds)
                history.append(result)
                if checkpoint is not None:
                    save_checkpoint(checkpoint, state, {"epoch": epoch, "config": config,
                                                        "history": [r._asdict() for r in history]})
                if on_epoch is not None:
                    on_epoch(result)
        return FitResult(history, compile_seconds, batch_losses)


def _first(array, n):
    """The first `n` rows of `array` (all for None or more than it has)."""
    return array if n is None or n >= array.shape[0] else array[:n, ...]


def _value(scalar):
    """A 0-d array of any backend as a Python number (one device -> host copy: a sync, so
    only at logging boundaries)."""
    return backend_of(scalar).to_numpy(scalar).item()
