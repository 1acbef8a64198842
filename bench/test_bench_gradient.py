"""Per-batch gradient of TwoLayerNet(784, 50, 10), batch 100 of real digits, float64:
the book's numerical loop (NumPy, the reference), xpnet's numerical gradient and backprop, per backend.
`make bench` prints the speed-ups of one run.

XPNET_BENCH_BOOK_ENTRIES=N times the book's loop on about N entries spread over every parameter
and extrapolates to all of them (each entry costs the same: two whole losses), for machines where
the GPU is fast and the full loop would eat the time; by default it runs over every entry.
"""
import math
import os

import numpy as np
import pytest

from xpnet.data import load_mnist
from xpnet.nn import TwoLayerNet, numerical_gradient

BATCH = 100
BOOK_ENTRIES = int(os.environ.get("XPNET_BENCH_BOOK_ENTRIES", "0"))
SAME_AS_BOOK = 1e-7  # the target: xpnet's numerical gradient equals the book's loop to this


@pytest.fixture(scope="module")
def batch():
    (x, t), _ = load_mnist(dataset="mnist-5k")
    return x[:BATCH].astype(np.float64), t[:BATCH]


def numpy_net():
    return TwoLayerNet(784, 50, 10, seed=0, dtype="float64", backend="numpy")


def book_entries(params, budget):
    """{name: every k-th flat index} with about `budget` entries in all (every entry for 0)."""
    total = sum(p.size for p in params.values())
    stride = max(1, math.ceil(total / budget)) if budget else 1
    return {name: slice(None, None, stride) for name in params}


def book_loop_gradient(net, x, t, picks):
    """The book's TwoLayerNet.numerical_gradient, one element at a time, the whole loss each
    time, over the picked flat entries of each parameter (views, so the loop perturbs the net)."""
    def loss_W(W):
        return net.loss(x, t)  # reads the array numerical_gradient perturbs in place
    return {name: numerical_gradient(loss_W, np.reshape(net.params[name], -1)[pick])
            for name, pick in picks.items()}


@pytest.fixture(scope="module")
def book_gradient(batch):
    """The book loop's values on its entries, to check each backend's numerical gradient."""
    net = numpy_net()
    picks = book_entries(net.params, BOOK_ENTRIES)
    return picks, book_loop_gradient(net, *batch, picks)


def test_book_loop_numpy(benchmark, batch, book_gradient, record_median):
    net = numpy_net()
    picks, expected = book_gradient
    grads = benchmark.pedantic(book_loop_gradient, args=(net, *batch, picks), rounds=1,
                               iterations=1)
    entries = sum(g.size for g in grads.values())
    total = sum(p.size for p in net.params.values())
    benchmark.extra_info.update(entries_timed=entries, entries=total)
    record_median("book loop (numpy)", benchmark, "numpy", scale=total / entries)
    for name in grads:
        np.testing.assert_array_equal(grads[name], expected[name])


def test_numerical_gradient(benchmark, backend, batch, book_gradient, record_median):
    net = TwoLayerNet(784, 50, 10, seed=0, dtype="float64", backend=backend)
    x, t = net.to_device(*batch)
    backend.sync(net.numerical_gradient(x, t))  # compile (JAX) before timing
    grads = benchmark.pedantic(lambda: backend.sync(net.numerical_gradient(x, t)), rounds=5,
                               iterations=1)
    record_median(f"xpnet numerical ({backend.name})", benchmark, backend.name)
    benchmark.extra_info["device"] = backend.device_name
    picks, expected = book_gradient
    for name, pick in picks.items():
        got = np.reshape(backend.to_numpy(grads[name]), -1)[pick]
        np.testing.assert_allclose(got, expected[name], atol=SAME_AS_BOOK, rtol=0, err_msg=name)


def test_backprop(benchmark, backend, batch, record_median):
    net = TwoLayerNet(784, 50, 10, seed=0, dtype="float64", backend=backend)
    x, t = net.to_device(*batch)
    gradient = backend.jit(net.model.loss_and_grad)
    backend.sync(gradient(net.params, x, t))
    benchmark(lambda: backend.sync(gradient(net.params, x, t)))
    record_median(f"backprop ({backend.name})", benchmark, backend.name)
    benchmark.extra_info["device"] = backend.device_name
