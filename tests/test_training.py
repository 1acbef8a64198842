"""Training: numpy and jax agree step for step, JAX compiles once, bad data is refused clearly."""
import numpy as np
import pytest

from xpnet.backends import available_backends
from xpnet.errors import DataError
from xpnet.nn import SGD, TwoLayerNet
from xpnet.nn.training import fit

needs_jax = pytest.mark.skipif(not available_backends()["jax"][0],
                               reason=f"jax unavailable: {available_backends()['jax'][1]}")

#: numpy vs jax after 300 SGD steps: the libraries round sums differently (last-bit differences
#: that grow a little over the steps), so agreement is to ~1e-10 in float64 and ~1e-4 in float32.
EQUIVALENCE_TOL = {"float64": 1e-10, "float32": 1e-4}


def toy_data(n=500, features=20, classes=3, seed=0):
    """Learnable inputs: the label is the largest of the first `classes` features."""
    x = np.random.default_rng(seed).random((n, features)).astype(np.float32)
    return x, x[:, :classes].argmax(axis=1)


def train(backend, dtype, epochs=6, **kwargs):
    x, t = toy_data()
    net = TwoLayerNet(20, 10, 3, weight_init_std=0.1, backend=backend, seed=7, dtype=dtype)
    result = fit(net, SGD(lr=0.5), (x[:400], t[:400]), (x[400:], t[400:]), epochs=epochs,
                 batch_size=8, seed=3, progress=False, **kwargs)
    return net, result


@needs_jax
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numpy_and_jax_agree_after_300_steps(dtype):
    (np_net, np_result), (jax_net, jax_result) = (train(b, dtype) for b in ("numpy", "jax"))
    tol = EQUIVALENCE_TOL[dtype]
    np.testing.assert_allclose([e.train_loss for e in jax_result.epochs],
                               [e.train_loss for e in np_result.epochs], rtol=tol, atol=tol)
    for name, value in np_net.params.items():
        np.testing.assert_allclose(np.asarray(jax_net.params[name]), value, rtol=tol, atol=tol,
                                   err_msg=name)
    assert [e.test_acc for e in jax_result.epochs] == [e.test_acc for e in np_result.epochs]
    # and the training actually learned something
    assert np_result.epochs[-1].test_acc > 0.7 and np_result.epochs[-1].train_loss < 0.7  # chance: 1/3, log 3


@needs_jax
def test_jax_compiles_the_train_step_once_per_run():
    traces = []
    x, t = toy_data()
    net = TwoLayerNet(20, 10, 3, backend="jax", seed=0)
    loss_and_grad = net.model.loss_and_grad

    def counting(*args):  # Python code in a jitted function runs only while JAX traces it
        traces.append(1)
        return loss_and_grad(*args)

    net.model.loss_and_grad = counting
    result = fit(net, SGD(lr=0.1), (x, t), (x[:50], t[:50]), epochs=4, batch_size=32, progress=False)
    assert len(result.epochs) == 4
    assert len(traces) == 1
    assert result.compile_seconds > 0


def test_fit_reports_each_epoch_and_leaves_current_params_in_the_net(backend):
    seen = []
    net, result = train(backend, "float32", epochs=3, on_epoch=seen.append)
    assert [e.epoch for e in result.epochs] == [1, 2, 3] and seen == result.epochs
    for e in result.epochs:
        assert 0 <= e.train_acc <= 1 and 0 <= e.test_acc <= 1
        assert e.seconds > 0 and e.eval_seconds > 0
    x, t = toy_data()
    assert net.accuracy(x[400:], t[400:]) == pytest.approx(result.epochs[-1].test_acc)


@pytest.mark.parametrize("bad, message", [
    (lambda x, t: (x, t + 5), r"labels must lie in 0..2, found 5..7"),
    (lambda x, t: (x, t.astype(np.float32)), "labels must be integers"),
    (lambda x, t: (np.where(x > 0.99, np.nan, x), t), "NaN or infinite"),
    (lambda x, t: (x[:, :10], t), r"shape \(N, 20\)"),
    (lambda x, t: (x, t[:-1]), "400 images but 399 labels"),
])
def test_fit_refuses_bad_training_data(bad, message):
    x, t = toy_data()
    net = TwoLayerNet(20, 10, 3, seed=0)
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(DataError, match=message):
        fit(net, SGD(), bad(x[:400], t[:400]), (x[400:], t[400:]), epochs=1, progress=False)
    for name, value in before.items():  # nothing was changed
        np.testing.assert_array_equal(net.params[name], value)


def test_fit_refuses_a_batch_larger_than_the_data():
    x, t = toy_data(n=50)
    with pytest.raises(ValueError, match="batch_size 100 is larger than the training set"):
        fit(TwoLayerNet(20, 10, 3), SGD(), (x, t), (x, t), epochs=1, batch_size=100, progress=False)
