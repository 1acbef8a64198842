"""No hidden host <-> device traffic: JAX's transfer guard as the CPU stand-in for a GPU.

On a GPU every implicit copy between host and device is a stall. JAX can refuse them
(`jax.transfer_guard("disallow")`: explicit `device_put`/`device_get` stay allowed), so running the
training epoch and the evaluation under it proves they keep everything on the device, here on
a machine without a GPU.
"""
import numpy as np
import pytest

from xpnet import available_backends, get_backend
from xpnet.nn import MultiLayerNetExtend
from xpnet.nn.optimizers import Adam
from xpnet.nn.batching import batch_order
from xpnet.nn.training import compiled_epoch, initial_train_state, make_train_step

jax = pytest.importorskip("jax") if available_backends()["jax"][0] else None
pytestmark = pytest.mark.skipif(jax is None, reason="jax is not installed")


def _data(n=200, features=20, classes=5):
    rng = np.random.default_rng(0)
    return rng.random((n, features)).astype(np.float32), rng.integers(0, classes, n).astype(np.int32)


def test_compiled_epoch_and_evaluation_make_no_implicit_transfers():
    backend = get_backend("jax")
    # BatchNorm state, Dropout keys, weight decay and Adam: every kind of state a step carries
    net = MultiLayerNetExtend(20, [16, 16], 5, use_batchnorm=True, use_dropout=True,
                              weight_decay_lambda=0.01, backend=backend, seed=0)
    optimizer = Adam()
    x, t = net.to_device(*_data())
    state = initial_train_state(net, optimizer)
    step = make_train_step(net.model, optimizer, backend, backend.key(0))
    order = batch_order(0, 1, x.shape[0], 50, backend)
    epoch = backend.compile(compiled_epoch(step, backend), state, x, t, order)
    count = backend.compile(backend.jit(net.model.correct_count), state.params, x, t, state.net_state)

    with jax.transfer_guard("disallow"):
        for _ in range(2):
            state, losses = epoch(state, x, t, order)
            right = count(state.params, x, t, state.net_state)
        backend.sync((state, right))
        with pytest.raises(Exception, match="Disallowed host-to-device transfer"):
            losses + np.ones(1, np.float32)  # the guard is on: an implicit copy is refused

    assert np.isfinite(backend.to_numpy(losses)).all() and 0 <= int(backend.to_numpy(right)) <= 200


@pytest.mark.parametrize("hidden, weight_decay", [([8], 0.0), ([8, 8, 8], 0.1)])
def test_structured_numerical_gradient_moves_a_few_arrays_per_layer(capfd, hidden, weight_decay):
    """Which inputs a perturbation changes depends on the data, so the bookkeeping happens on
    the host. Counted (JAX logs every transfer under "log_explicit"): one step size per call,
    and per Affine layer its four index arrays to the device (plus, on a GPU, the layer's input
    to the host); the forward pass, the chunks and the weight decay run as compiled programs."""
    from xpnet.nn import MultiLayerNet
    from xpnet.nn.structured_gradient import model_numerical_gradient

    backend = get_backend("jax")
    net = MultiLayerNet(20, hidden, 5, weight_decay_lambda=weight_decay, backend=backend, seed=0,
                        dtype="float64")
    x, t = _data(n=10)
    x[x < 0.5] = 0.0
    x, t = net.to_device(x, t)
    backend.sync(model_numerical_gradient(net.model, net.params, x, t))  # compiles
    capfd.readouterr()
    with jax.transfer_guard("log_explicit"):
        backend.sync(model_numerical_gradient(net.model, net.params, x, t))
    transfers = capfd.readouterr().err.count("transfer:")
    per_layer = 4 if backend.device_name.startswith("cpu") else 5  # + the input to the host
    assert 0 < transfers <= 1 + per_layer * (len(hidden) + 1)
