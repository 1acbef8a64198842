"""Which samples each mini-batch holds: every order is drawn on the host from (seed, epoch) alone,
so every backend trains on the same batches and any epoch can be replayed (a resumed run, a
benchmark peer, many nets trained side by side)."""
import numpy as np

from xpnet.backends import get_backend

#: Samples per forward pass where only predictions are needed (accuracy): a conv net's 60,000
#: training images at once would need gigabytes of im2col rows; an MLP loses nothing to it.
EVAL_CHUNK = 500


def chunks(n, size=EVAL_CHUNK):
    """Slices cutting range(n) into consecutive chunks of `size` (the last one may be shorter)."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def count_in_chunks(count, params, x, t, net_state):
    """The sum of `count(params, x[part], t[part], net_state)` (a model's correct_count, compiled
    or not) over the EVAL_CHUNK-sample chunks of (x, t): a device scalar, nothing copied back."""
    return sum(count(params, x[part, ...], t[part, ...], net_state) for part in chunks(x.shape[0]))


def batch_order(seed, epoch, n, batch_size, backend):
    """A device array (n // batch_size, batch_size) of sample indices: epoch `epoch`'s order.

    Drawn from (seed, epoch) alone, so any epoch can be replayed; only full batches (the
    n % batch_size samples a shuffle leaves over wait for the next epoch).
    """
    n_batches = n // batch_size
    order = np.random.default_rng([seed, epoch]).permutation(n)[: n_batches * batch_size]
    return backend.asarray(order.reshape(n_batches, batch_size), dtype=backend.index_dtype)


def epoch_orders(seed, n, batch_size, epochs):
    """Host indices (epochs, n // batch_size, batch_size): epoch e's order as `fit` draws it."""
    host = get_backend("numpy")
    return np.stack([batch_order(seed, e, n, batch_size, host) for e in range(1, epochs + 1)])


def iteration_orders(seed, n, batch_size, iterations, chunk):
    """Host indices (iterations // chunk, chunk, batch_size): `fit`'s shuffled epochs (see
    `batch_order`) one after another, cut into chunks of `chunk` iterations."""
    host, batches, epoch = get_backend("numpy"), [], 1
    while sum(len(b) for b in batches) < iterations:
        batches.append(batch_order(seed, epoch, n, batch_size, host))
        epoch += 1
    return np.concatenate(batches)[:iterations].reshape(-1, chunk, batch_size)
