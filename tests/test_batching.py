"""Batch orders (xpnet/nn/batching.py): each epoch a permutation drawn from (seed, epoch) alone,
the same on every backend, and the book's iteration-based runs as fit's epochs back to back."""
import numpy as np

from xpnet.backends import get_backend
from xpnet.nn.batching import EVAL_CHUNK, batch_order, chunks, iteration_orders


def test_batch_orders_hold_each_sample_once_in_the_backends_index_dtype(backend):
    order = batch_order(3, 2, 1050, 100, backend)
    assert order.shape == (10, 100) and order.dtype == backend.index_dtype
    indices = backend.to_numpy(order).ravel()
    assert len(set(indices.tolist())) == 1000 and indices.min() >= 0 and indices.max() < 1050
    # the same (seed, epoch) gives the same order on every backend; another epoch another one
    assert np.array_equal(indices, batch_order(3, 2, 1050, 100, get_backend("numpy")).ravel())
    assert not np.array_equal(indices, backend.to_numpy(batch_order(3, 3, 1050, 100, backend)).ravel())
    if backend.name == "numpy":  # NumPy gathers with intp indices without converting them first
        assert order.dtype == np.intp


def test_iteration_orders_are_fits_epochs_back_to_back():
    orders = iteration_orders(5, 1000, 128, 20, 10)
    assert orders.shape == (2, 10, 128)
    first_epoch = orders.reshape(-1, 128)[:7].ravel()  # 1000 // 128 = 7 batches per epoch
    assert len(set(first_epoch.tolist())) == 7 * 128  # a permutation: no sample twice in an epoch
    assert not np.array_equal(orders.reshape(-1, 128)[7], orders.reshape(-1, 128)[0])


def test_chunks_cover_every_sample_once_in_order():
    parts = chunks(1234, 500)
    assert [(p.start, p.stop) for p in parts] == [(0, 500), (500, 1000), (1000, 1234)]
    assert np.concatenate([np.arange(1234)[p] for p in chunks(1234)]).tolist() == list(range(1234))
    assert chunks(0) == [] and chunks(EVAL_CHUNK) == [slice(0, EVAL_CHUNK)]
