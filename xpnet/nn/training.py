"""Mini-batch training: data on the device once, one pure step, compiled whole on JAX."""
import sys
import time
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from xpnet.errors import DataError
from xpnet.nn.init import host_rng
from xpnet.nn.numerical import structured_numerical_gradient


class EpochResult(NamedTuple):
    epoch: int
    train_loss: float    # mean of the epoch's mini-batch losses
    train_acc: float     # accuracy on the whole training set after the epoch
    test_acc: float
    seconds: float       # wall time of the epoch's training steps, device synced
    eval_seconds: float  # wall time of the two accuracy evaluations


class FitResult(NamedTuple):
    epochs: list
    compile_seconds: float  # first call of the compiled step and evaluation (0 where nothing compiles)


def check_classification_data(x, t, num_features, num_classes, name):
    """Raise DataError unless host arrays x (N, num_features) and t (labels or one-hot) fit a classifier."""
    x, t = np.asarray(x), np.asarray(t)
    if x.ndim != 2 or x.shape[1] != num_features:
        raise DataError(f"{name}: images must have shape (N, {num_features}), got {x.shape}; "
                        "load them with flatten=True")
    if x.shape[0] == 0:
        raise DataError(f"{name}: the data set is empty")
    if t.shape[:1] != x.shape[:1]:
        raise DataError(f"{name}: {x.shape[0]} images but {t.shape[0] if t.ndim else 0} labels")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DataError(f"{name}: images contain NaN or infinite values")
    if t.ndim == 1:
        if not np.issubdtype(t.dtype, np.integer):
            raise DataError(f"{name}: labels must be integers, got dtype {t.dtype}")
        if t.min() < 0 or t.max() >= num_classes:
            raise DataError(f"{name}: labels must lie in 0..{num_classes - 1}, "
                            f"found {t.min()}..{t.max()}")
    elif t.shape != (x.shape[0], num_classes):
        raise DataError(f"{name}: one-hot labels must have shape {(x.shape[0], num_classes)}, got {t.shape}")


#: How `fit` computes gradients: backprop (chapter 5) or central differences (chapter 4).
GRADIENTS = ("backprop", "numerical")


def make_train_step(model, optimizer, backend, gradient="backprop"):
    """step(params, opt_state, x, t, order, i) -> (params, opt_state, loss) on batch `order[i]`.

    The whole data set stays on the device and the batch is gathered inside the step, so on JAX
    one compiled program serves every batch of every epoch. With `gradient="numerical"` the
    gradient is `structured_numerical_gradient` (whose chunks are compiled on JAX) and the
    loss and the update are compiled separately.
    """
    if gradient == "numerical":
        return _numerical_train_step(model, optimizer, backend)
    if gradient != "backprop":
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")

    def step(params, opt_state, x, t, order, i):
        batch = order[i]
        loss, grads = model.loss_and_grad(params, x[batch], t[batch])
        params, opt_state = optimizer.apply(params, grads, opt_state)
        return params, opt_state, loss

    return backend.jit(step)


def _numerical_train_step(model, optimizer, backend):
    loss_of, apply = backend.jit(model.loss), backend.jit(optimizer.apply)

    def step(params, opt_state, x, t, order, i):
        batch = order[i]
        xb, tb = x[batch], t[batch]
        loss = loss_of(params, xb, tb)  # before the update, as the backprop step reports it
        grads = structured_numerical_gradient(model, params, xb, tb)
        params, opt_state = apply(params, grads, opt_state)
        return params, opt_state, loss

    return step


def shuffled_batches(rng, n, batch_size, backend):
    """A device array (n // batch_size, batch_size) of sample indices in a fresh random order.

    Only full batches: the len % batch_size samples left over by this shuffle wait for the next.
    """
    n_batches = n // batch_size
    order = rng.permutation(n)[: n_batches * batch_size].reshape(n_batches, batch_size)
    return backend.asarray(order.astype(np.int32))


def run_epoch(step, params, opt_state, x, t, order, on_batch=None):
    """Apply `step` to every batch of `order`; returns (params, opt_state, list of batch losses)."""
    losses = []
    for i in range(order.shape[0]):
        params, opt_state, loss = step(params, opt_state, x, t, order, i)
        losses.append(loss)
        if on_batch is not None:
            on_batch()
    return params, opt_state, losses


def fit(net, optimizer, train, test, epochs, batch_size=100, seed=0, on_epoch=None, progress=None,
        gradient="backprop"):
    """Train `net` (a TwoLayerNet or alike) with `optimizer` on host arrays `train=(x, t)`.

    Each epoch visits the training set in a fresh shuffled order (host generator seeded with
    `seed`, so every backend sees the same batches) in full batches.
    After every epoch `net.params` holds the current arrays and `on_epoch(EpochResult)` is called.
    `progress`: show a progress bar (True), hide it (False), or show it when stderr is a terminal.
    `gradient`: "backprop", or "numerical" for the chapter-4 loop with central differences.
    """
    backend, xp = net.backend, net.backend.xp
    (x_train, t_train), (x_test, t_test) = train, test
    check_classification_data(x_train, t_train, net.input_size, net.output_size, "training data")
    check_classification_data(x_test, t_test, net.input_size, net.output_size, "test data")
    n_train = len(x_train)
    n_batches = n_train // batch_size
    if n_batches == 0:
        raise ValueError(f"batch_size {batch_size} is larger than the training set ({n_train} samples)")

    x_train, t_train = net.to_device(x_train, t_train)
    x_test, t_test = net.to_device(x_test, t_test)
    step = make_train_step(net.model, optimizer, backend, gradient)
    correct_count = backend.jit(net.model.correct_count)
    params, opt_state = dict(net.params), optimizer.init(net.params)
    rng = host_rng(seed)

    compile_seconds = 0.0
    if backend.compiles:  # pay for compilation before the clocks start; results are discarded
        start = time.perf_counter()
        warm_order = backend.asarray(np.zeros((n_batches, batch_size), np.int32))
        backend.sync(step(params, opt_state, x_train, t_train, warm_order, 0))
        backend.sync((correct_count(params, x_train, t_train), correct_count(params, x_test, t_test)))
        compile_seconds = time.perf_counter() - start

    results = []
    bar = tqdm(total=epochs * n_batches, unit="batch", desc=f"training on {backend.name}",
               disable=None if progress is None else not progress, file=sys.stderr, leave=False,
               dynamic_ncols=True)
    with bar:
        for epoch in range(1, epochs + 1):
            order = shuffled_batches(rng, n_train, batch_size, backend)
            start = time.perf_counter()
            params, opt_state, losses = run_epoch(step, params, opt_state, x_train, t_train, order,
                                                  on_batch=bar.update)
            backend.sync(params)
            seconds = time.perf_counter() - start

            start = time.perf_counter()
            train_acc = float(correct_count(params, x_train, t_train)) / n_train
            test_acc = float(correct_count(params, x_test, t_test)) / len(x_test)
            eval_seconds = time.perf_counter() - start
            net.params.update(params)
            result = EpochResult(epoch, float(xp.mean(xp.stack(losses))), train_acc, test_acc,
                                 seconds, eval_seconds)
            results.append(result)
            if on_epoch is not None:
                on_epoch(result)
    return FitResult(results, compile_seconds)

