"""Training (xpnet/nn/training.py): every backend agrees with NumPy step for step, JAX compiles
once, data on the host or the device, bad data refused clearly. Checkpoints and resuming:
test_checkpoint.py; callbacks: test_callbacks.py; the Trainer: test_trainer.py."""
import functools

import numpy as np
import pytest

from xpnet.backends import available_backends, dtype_name, get_backend
from xpnet.errors import DataError
from xpnet.nn import OPTIMIZERS, SGD, Adam, MultiLayerNetExtend, TwoLayerNet, make_optimizer
from xpnet.nn.batching import batch_order
from xpnet.nn.training import fit, initial_train_state, make_train_step


def needs(*names):
    """Skip unless every backend of `names` can run here."""
    missing = [n for n in names if not available_backends()[n][0]]
    return pytest.mark.skipif(bool(missing), reason="; ".join(
        f"backend {n} unavailable: {available_backends()[n][1]}" for n in missing))


needs_jax = needs("jax")

#: Another backend vs NumPy after 300 SGD steps: the libraries round sums differently (last-bit
#: differences that grow a little over the steps), so agreement is to ~1e-10 in float64 and ~1e-4
#: in float32.
EQUIVALENCE_TOL = {"float64": 1e-10, "float32": 1e-4}
#: BatchNorm and Adam divide by small square roots: agreement with NumPy after 75 steps (float64).
ADAM_RTOL, ADAM_ATOL = 1e-9, 1e-10
#: Backends whose random keys are the portable integer hash of `Backend.key/fold_in/uniform`, so
#: their Dropout masks are NumPy's; JAX draws them from its own PRNG.
PORTABLE_KEYS = ("numpy", "torch", "cupy", "array-api-strict")


def toy_data(n=500, features=20, classes=3, seed=0):
    """Learnable inputs: the label is the largest of the first `classes` features."""
    x = np.random.default_rng(seed).random((n, features)).astype(np.float32)
    return x, x[:, :classes].argmax(axis=1)


def small_net(backend, dtype):
    return TwoLayerNet(20, 10, 3, weight_init_std=0.1, backend=backend, seed=7, dtype=dtype)


def train(backend, dtype, epochs=6, data=None, **kwargs):
    """`small_net` trained by SGD on `data` ((x_train, t_train), (x_test, t_test); default: the
    toy data, on the host) for `epochs` epochs of 50 steps."""
    if data is None:
        x, t = toy_data()
        data = (x[:400], t[:400]), (x[400:], t[400:])
    net = small_net(backend, dtype)
    result = fit(net, SGD(lr=0.5), *data, epochs=epochs, batch_size=8, seed=3, progress=False, **kwargs)
    return net, result


def host_params(net):
    """Host copies of the net's params (copies: NumPy's to_numpy returns the array itself)."""
    return {name: np.array(net.backend.to_numpy(value), copy=True) for name, value in net.params.items()}


@functools.lru_cache(maxsize=None)
def reference_run(backend_name, dtype, epochs=6):
    """(host params, FitResult) of `train` on a backend, computed once per session: the reference
    other runs are compared with."""
    net, result = train(get_backend(backend_name), dtype, epochs)
    return host_params(net), result


def assert_epochs_agree(result, expected, rtol, atol=0.0):
    """Same epochs, losses within tolerance, the same accuracies."""
    assert [e.epoch for e in result.epochs] == [e.epoch for e in expected.epochs]
    np.testing.assert_allclose([e.train_loss for e in result.epochs],
                               [e.train_loss for e in expected.epochs], rtol=rtol, atol=atol)
    assert [(e.train_acc, e.test_acc) for e in result.epochs] == \
        [(e.train_acc, e.test_acc) for e in expected.epochs]


def test_every_backend_agrees_with_numpy_after_300_steps(backend, dtype):
    """Same seed, same initial params, same batches: after 300 SGD steps every backend's params
    are NumPy's up to rounding."""
    assert all(backend.owns(p) for p in small_net(backend, dtype).params.values())
    np.testing.assert_array_equal(host_params(small_net(backend, dtype))["W1"],
                                  small_net("numpy", dtype).params["W1"])
    np_params, np_result = reference_run("numpy", dtype)
    net, result = train(backend, dtype)
    tol = EQUIVALENCE_TOL[dtype]
    assert len(result.batch_losses) == 300
    assert_epochs_agree(result, np_result, rtol=tol, atol=tol)
    np.testing.assert_allclose(result.batch_losses, reference_run("numpy", dtype)[1].batch_losses,
                               rtol=tol, atol=tol)
    for name, value in np_params.items():
        assert backend.owns(net.params[name]) and dtype_name(net.params[name].dtype) == dtype
        np.testing.assert_allclose(backend.to_numpy(net.params[name]), value, rtol=tol, atol=tol,
                                   err_msg=name)
    # and the training actually learned something
    assert np_result.epochs[-1].test_acc > 0.7 and np_result.epochs[-1].train_loss < 0.7  # chance: 1/3, log 3


@needs_jax
def test_jax_compiles_the_train_step_once_per_run():
    traces = []
    x, t = toy_data()
    net = TwoLayerNet(20, 10, 3, backend="jax", seed=0)
    loss_grad_state = net.model.loss_grad_state

    def counting(*args):  # Python code in a jitted function runs only while JAX traces it
        traces.append(1)
        return loss_grad_state(*args)

    net.model.loss_grad_state = counting
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
    assert all(backend.owns(p) for p in net.params.values())


def test_fit_accepts_data_already_on_the_device(backend):
    """Backend arrays (here float64 images for a float32 net: cast on the device) train exactly
    as the same data given on the host."""
    x, t = toy_data()
    xd, td = backend.asarray(x, "float64"), backend.asarray(t)
    assert backend.owns(xd) and backend.owns(td)
    net, result = train(backend, "float32", epochs=2,
                        data=((xd[:400, ...], td[:400]), (xd[400:, ...], td[400:])))
    params, expected = reference_run(backend.name, "float32", epochs=2)
    assert result.batch_losses == expected.batch_losses
    assert_epochs_agree(result, expected, rtol=0)
    for name, value in params.items():
        np.testing.assert_array_equal(backend.to_numpy(net.params[name]), value, err_msg=name)


def test_one_hot_float_labels_train_as_integer_labels(backend):
    """One-hot float64 rows on the host (training) and float32 rows on the device (test): the
    labels are moved once and cast on the device; the gradient y - t is the one of the integer
    labels, so the params are the same; the losses differ only by rounding."""
    x, t = toy_data()
    one_hot = np.eye(3)[t]
    data = (x[:400], one_hot[:400]), (x[400:], backend.asarray(one_hot[400:], "float32"))
    net, result = train(backend, "float32", epochs=2, data=data)
    params, expected = reference_run(backend.name, "float32", epochs=2)
    assert_epochs_agree(result, expected, rtol=1e-5)
    np.testing.assert_allclose(result.batch_losses, expected.batch_losses, rtol=1e-5)
    for name, value in params.items():
        np.testing.assert_array_equal(backend.to_numpy(net.params[name]), value, err_msg=name)
    test_acc = result.epochs[-1].test_acc
    assert net.accuracy(x[400:], one_hot[400:]) == net.accuracy(x[400:], t[400:]) == test_acc


@pytest.mark.parametrize("bad, message", [
    (lambda x, t: (x, t + 5), r"labels must lie in 0..2, found 5..7"),
    (lambda x, t: (x, t.astype(np.float32)), "labels must be integers"),
    (lambda x, t: (np.where(x > 0.99, np.nan, x), t), "NaN or infinite"),
    (lambda x, t: (x[:, :10], t), r"shape \(N, 20\)"),
    (lambda x, t: (x, t[:-1]), "400 samples but 399 labels"),
])
def test_fit_refuses_bad_training_data(backend, bad, message):
    """Checked where the data is: on the host (numpy) or on the device."""
    x, t = toy_data()
    net = TwoLayerNet(20, 10, 3, seed=0, backend=backend)
    before = host_params(net)
    x_bad, t_bad = (backend.asarray(a) for a in bad(x[:400], t[:400]))
    with pytest.raises(DataError, match=message):
        fit(net, SGD(), (x_bad, t_bad), (x[400:], t[400:]), epochs=1, progress=False)
    for name, value in before.items():  # nothing was changed
        np.testing.assert_array_equal(backend.to_numpy(net.params[name]), value)


def test_fit_refuses_a_batch_larger_than_the_data():
    x, t = toy_data(n=50)
    with pytest.raises(ValueError, match="batch size 100 is larger than the training set"):
        fit(TwoLayerNet(20, 10, 3), SGD(), (x, t), (x, t), epochs=1, batch_size=100, progress=False)


# --- chapter 6: BatchNorm, Dropout, Adam, compiled epochs ----------------------------------

def extend_net(backend, dtype="float64", dropout=True, seed=5):
    return MultiLayerNetExtend(20, [12, 10], 3, use_batchnorm=True, use_dropout=dropout,
                               dropout_ratio=0.2, weight_decay_lambda=0.01, backend=backend, seed=seed,
                               dtype=dtype)


def fit_extend(net, epochs, **kwargs):
    x, t = toy_data()
    return fit(net, Adam(lr=0.01), (x[:400], t[:400]), (x[400:], t[400:]), epochs=epochs,
               batch_size=16, seed=11, progress=False, **kwargs)


@functools.lru_cache(maxsize=None)
def reference_extend_run(dropout):
    """(host params and state, FitResult) of 3 epochs of `fit_extend` on NumPy, computed once."""
    net = extend_net("numpy", dropout=dropout)
    result = fit_extend(net, 3)
    return {**host_params(net), **net.state}, result


@pytest.mark.parametrize("dropout", [False, True], ids=["batchnorm", "batchnorm-dropout"])
def test_every_backend_agrees_with_numpy_with_batchnorm_dropout_and_adam(backend, dropout):
    """Dropout masks are drawn on the device (array-api-strict's device1 refuses anything else);
    NumPy, torch and array-api-strict hash the same keys into the same masks."""
    net = extend_net(backend, dropout=dropout)
    result = fit_extend(net, 3)
    # learned on every backend (chance is 1/3); Dropout slows the first epochs down
    losses = [e.train_loss for e in result.epochs]
    assert losses[0] > losses[1] > losses[2] and result.epochs[-1].test_acc > (0.6 if dropout else 0.7)
    assert all(backend.owns(a) for a in {**net.params, **net.state}.values())
    if dropout and backend.name not in PORTABLE_KEYS:
        pytest.skip(f"{backend.name} draws Dropout masks from its own PRNG keys: its run trains "
                    "(checked) but cannot match NumPy's masks")
    expected, np_result = reference_extend_run(dropout)
    np.testing.assert_allclose([e.train_loss for e in result.epochs],
                               [e.train_loss for e in np_result.epochs], rtol=1e-10)
    assert [e.test_acc for e in result.epochs] == [e.test_acc for e in np_result.epochs]
    for name, value in expected.items():
        here = {**net.params, **net.state}[name]
        np.testing.assert_allclose(backend.to_numpy(here), value, rtol=ADAM_RTOL, atol=ADAM_ATOL,
                                   err_msg=name)


@needs_jax
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_compiled_epoch_serves_new_learning_rates_and_decays_without_recompiling(name):
    from xpnet.nn.training import compiled_epoch, make_train_step

    jax_backend = get_backend("jax")
    net = extend_net("jax")
    optimizer = make_optimizer(name)
    x, t = net.to_device(*toy_data())
    epoch = compiled_epoch(make_train_step(net.model, optimizer, jax_backend, jax_backend.key(0)),
                           jax_backend)
    state = initial_train_state(net, optimizer)
    order = batch_order(0, 1, 500, 50, jax_backend)
    results = []
    for lr, decay in ((0.01, 0.01), (0.001, 0.01), (0.001, 0.1)):
        start = state._replace(opt_state=optimizer.with_hyper(state.opt_state, lr=lr),
                               weight_decay=jax_backend.asarray(decay, "float64"))
        end, losses = epoch(start, x, t, order)
        assert losses.shape == (10,) and int(end.step) == 10
        results.append(np.asarray(end.params["W1"]))
    assert epoch._cache_size() == 1
    assert not np.allclose(results[0], results[1]) and not np.allclose(results[1], results[2])


def test_a_torch_train_step_traces_as_one_graph():
    """`torch.compile` (XPNET_TORCH_COMPILE=1) pays only if a step is one graph: no host keys,
    no Python numbers taken from tensors. TorchDynamo's explain traces without compiling."""
    if not available_backends()["torch"][0]:
        pytest.skip("torch is not installed")
    import torch

    backend = get_backend("torch", "cpu")
    net = MultiLayerNetExtend(20, [8, 8], 5, use_batchnorm=True, use_dropout=True,
                              weight_decay_lambda=0.01, backend=backend, seed=0)
    rng = np.random.default_rng(0)
    x, t = net.to_device(rng.random((200, 20)).astype(np.float32), rng.integers(0, 5, 200))
    optimizer = Adam()
    step = make_train_step(net.model, optimizer, backend, backend.key(0))
    order = batch_order(0, 1, 200, 50, backend)
    explained = torch._dynamo.explain(step)(initial_train_state(net, optimizer), x, t, order, 0)
    assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons
