"""Per-batch gradient of TwoLayerNet(784, 50, 10), batch 100 of real digits, float64:
the book's numerical loop (NumPy, the reference), xpnet's numerical gradient and backprop, per backend.
`make bench` prints the speed-ups of one run."""
import numpy as np
import pytest

from xpnet.data import load_mnist
from xpnet.nn import TwoLayerNet, numerical_gradient

BATCH = 100


@pytest.fixture(scope="module")
def batch():
    (x, t), _ = load_mnist(dataset="mnist-5k")
    return x[:BATCH].astype(np.float64), t[:BATCH]


def book_loop_gradient(net, x, t):
    """The book's TwoLayerNet.numerical_gradient: one element at a time, the whole loss each time."""
    def loss_W(W):
        return net.loss(x, t)  # reads the array numerical_gradient perturbs in place
    return {name: numerical_gradient(loss_W, net.params[name]) for name in net.params}


def test_book_loop_numpy(benchmark, batch, record_median):
    net = TwoLayerNet(784, 50, 10, seed=0, dtype="float64", backend="numpy")
    grads = benchmark.pedantic(book_loop_gradient, args=(net, *batch), rounds=1, iterations=1)
    record_median("book loop (numpy)", benchmark, "numpy")
    fast = net.numerical_gradient(*batch)
    for name in grads:  # the target: the same values to 1e-7
        np.testing.assert_allclose(fast[name], grads[name], atol=1e-7, rtol=0)


def test_numerical_gradient(benchmark, backend, batch, record_median):
    net = TwoLayerNet(784, 50, 10, seed=0, dtype="float64", backend=backend)
    x, t = net.to_device(*batch)
    backend.sync(net.numerical_gradient(x, t))  # compile (JAX) before timing
    grads = benchmark.pedantic(lambda: backend.sync(net.numerical_gradient(x, t)), rounds=5,
                               iterations=1)
    record_median(f"xpnet numerical ({backend.name})", benchmark, backend.name)
    assert set(grads) == {"W1", "b1", "W2", "b2"}


def test_backprop(benchmark, backend, batch, record_median):
    net = TwoLayerNet(784, 50, 10, seed=0, dtype="float64", backend=backend)
    x, t = net.to_device(*batch)
    gradient = backend.jit(net.model.loss_and_grad)
    backend.sync(gradient(net.params, x, t))
    benchmark(lambda: backend.sync(gradient(net.params, x, t)))
    record_median(f"backprop ({backend.name})", benchmark, backend.name)
