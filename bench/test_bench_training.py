"""First benchmarks: one backprop gradient of a batch, and one full training epoch, per backend.

Run with `make bench`. Timings sync the device before the clock stops; the JAX compilation is
done before timing (the first call) and is not part of any round. The full suites (numerical
gradient, PyTorch peer, scaling) grow out of this file.
"""
import numpy as np
import pytest

from xpnet.data import load_dataset
from xpnet.nn import SGD, TwoLayerNet
from xpnet.nn.training import (
    batch_order,
    compiled_epoch,
    initial_train_state,
    make_train_step,
    run_epoch,
)

BATCH = 100


@pytest.fixture(scope="module")
def synthetic():
    """60,000 random images of MNIST shape: timing only, the numbers learned mean nothing."""
    (x, t), _ = load_dataset("synthetic").arrays(normalize=True, flatten=True)
    return x, t


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_backprop_gradient_per_batch(benchmark, backend, dtype, synthetic):
    x, t = synthetic
    net = TwoLayerNet(784, 50, 10, backend=backend, seed=0, dtype=dtype)
    xb, tb = net.to_device(x[:BATCH], t[:BATCH])
    gradient = backend.jit(net.model.loss_and_grad)
    backend.sync(gradient(net.params, xb, tb))  # compile (JAX) before timing

    def one_gradient():
        return backend.sync(gradient(net.params, xb, tb))

    loss, grads = benchmark(one_gradient)
    assert set(grads) == {"W1", "b1", "W2", "b2"} and np.isfinite(float(loss))
    benchmark.extra_info.update(backend=backend.name, dtype=dtype, batch=BATCH, model="784-50-10")


def test_one_epoch_two_layer_sigmoid_sgd(benchmark, backend, synthetic):
    """Model A of the benchmark plan: 784-50-10 sigmoid, SGD lr 0.1, 600 batches of 100, float32."""
    x, t = synthetic
    net = TwoLayerNet(784, 50, 10, backend=backend, seed=0)
    optimizer = SGD(lr=0.1)
    step = make_train_step(net.model, optimizer, backend, backend.key(0))
    # as fit runs it: one compiled program per epoch on JAX, eager steps elsewhere
    epoch = compiled_epoch(step, backend) if backend.compiles else (
        lambda state, x, t, order: run_epoch(step, state, x, t, order))
    x_dev, t_dev = net.to_device(x, t)
    order = batch_order(0, 1, len(x), BATCH, backend)
    state = {"train": initial_train_state(net, optimizer)}
    backend.sync(epoch(state["train"], x_dev, t_dev, order))  # compile (JAX) and warm up

    def one_epoch():
        state["train"], losses = backend.sync(epoch(state["train"], x_dev, t_dev, order))
        return losses

    losses = benchmark.pedantic(one_epoch, rounds=3, iterations=1, warmup_rounds=0)
    assert len(losses) == len(x) // BATCH
    benchmark.extra_info.update(backend=backend.name, dataset="synthetic (timing only)",
                                batches=len(losses), model="784-50-10 sigmoid SGD")
