"""Training: numpy and jax agree step for step, JAX compiles once, bad data is refused clearly."""
import numpy as np
import pytest

from xpnet.backends import available_backends, get_backend
from xpnet.errors import DataError
from xpnet.nn import OPTIMIZERS, SGD, Adam, MultiLayerNet, MultiLayerNetExtend, TwoLayerNet, make_optimizer
from xpnet.nn.checkpoint import _flatten, load_checkpoint, save_checkpoint
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


# --- chapter 6: checkpoints, exact resume, compiled epochs, Trainer ---------------------------

def extend_net(backend, dtype="float64", dropout=True, seed=5):
    return MultiLayerNetExtend(20, [12, 10], 3, use_batchnorm=True, use_dropout=dropout,
                               dropout_ratio=0.2, weight_decay_lambda=0.01, backend=backend, seed=seed,
                               dtype=dtype)


def fit_extend(net, epochs, **kwargs):
    x, t = toy_data()
    return fit(net, Adam(lr=0.01), (x[:400], t[:400]), (x[400:], t[400:]), epochs=epochs,
               batch_size=16, seed=11, progress=False, **kwargs)


def test_resumed_run_ends_exactly_where_a_straight_run_ends(backend, tmp_path):
    straight = extend_net(backend)
    straight_result = fit_extend(straight, 3)
    path = tmp_path / "run.npz"
    fit_extend(extend_net(backend), 1, checkpoint=path)
    resumed = extend_net(backend, seed=99)  # other initial weights: all must come from the file
    resumed_result = fit_extend(resumed, 3, checkpoint=path, resume=True)
    assert [r.epoch for r in resumed_result.epochs] == [1, 2, 3]
    assert len(resumed_result.batch_losses) == 2 * (400 // 16)
    for a, b in zip(resumed_result.epochs, straight_result.epochs):
        assert (a.train_loss, a.train_acc, a.test_acc) == (b.train_loss, b.train_acc, b.test_acc)
    for name, value in straight.params.items():
        np.testing.assert_array_equal(backend.to_numpy(resumed.params[name]), backend.to_numpy(value))
    for name, value in straight.state.items():
        np.testing.assert_array_equal(backend.to_numpy(resumed.state[name]), backend.to_numpy(value))
    # resuming a finished run trains nothing and leaves the saved params in the net
    again = extend_net(backend, seed=7)
    assert fit_extend(again, 3, checkpoint=path, resume=True).batch_losses == []
    np.testing.assert_array_equal(backend.to_numpy(again.params["W1"]), backend.to_numpy(straight.params["W1"]))


@needs_jax
def test_a_checkpoint_loads_on_every_backend(tmp_path):
    from xpnet.backends import get_backend
    from xpnet.nn.training import initial_train_state

    path = tmp_path / "numpy.npz"
    saved_net = extend_net("numpy")
    fit_extend(saved_net, 1, checkpoint=path)
    saved, meta = load_checkpoint(path, initial_train_state(saved_net, Adam()), get_backend("numpy"))
    jax_net = extend_net("jax")
    loaded, meta_jax = load_checkpoint(path, initial_train_state(jax_net, Adam()), get_backend("jax"))
    assert meta == meta_jax and meta["epoch"] == 1 and len(meta["history"]) == 1
    flat_saved, flat_loaded = {}, {}
    _flatten(saved, "", flat_saved)
    _flatten(loaded, "", flat_loaded)
    assert sorted(flat_saved) == sorted(flat_loaded) and "opt_state/m/W1" in flat_saved
    assert "net_state/running_mean1" in flat_saved and "opt_state/hyper/lr" in flat_saved
    for name, value in flat_saved.items():
        assert type(flat_loaded[name]).__module__.startswith("jax")
        np.testing.assert_array_equal(np.asarray(flat_loaded[name]), value, err_msg=name)
    # and the jax net trains on from it
    assert fit_extend(jax_net, 2, checkpoint=path, resume=True).epochs[-1].epoch == 2


def test_an_interrupted_save_leaves_the_previous_checkpoint(tmp_path):
    path = tmp_path / "run.npz"
    save_checkpoint(path, {"w": np.arange(3.0)}, {"epoch": 1})
    before = path.read_bytes()
    # the second array cannot be written (objects would need pickle): the save fails midway
    with pytest.raises(ValueError, match="allow_pickle=False"):
        save_checkpoint(path, {"a": np.ones(1000), "z": np.array([object()], dtype=object)}, {"epoch": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.npz"]  # no temporary file left


def test_bad_checkpoints_are_named(tmp_path):
    from xpnet.backends import get_backend

    numpy = get_backend("numpy")
    template = {"w": np.zeros(3)}
    with pytest.raises(DataError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.npz", template, numpy)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match="is not a readable xpnet checkpoint"):
        load_checkpoint(garbage, template, numpy)
    other = tmp_path / "other.npz"
    save_checkpoint(other, {"w": np.zeros(4)}, {})
    with pytest.raises(DataError, match=r"w is float64\[4\], this run needs float64\[3\]"):
        load_checkpoint(other, template, numpy)
    with pytest.raises(DataError, match=r"missing \['v'\]"):
        load_checkpoint(other, {"w": np.zeros(4), "v": np.zeros(1)}, numpy)


def test_resume_refuses_a_checkpoint_of_a_different_run(tmp_path):
    path = tmp_path / "run.npz"
    fit_extend(extend_net("numpy"), 1, checkpoint=path, config={"model": "A"})
    with pytest.raises(DataError, match=r"different run: model 'A' there, 'B' now"):
        fit_extend(extend_net("numpy"), 2, checkpoint=path, resume=True, config={"model": "B"})


@needs_jax
def test_numpy_and_jax_agree_with_batchnorm_and_adam():
    (np_net, np_result), (jax_net, jax_result) = (
        (net, fit_extend(net, 3)) for net in (extend_net(b, dropout=False) for b in ("numpy", "jax")))
    np.testing.assert_allclose([e.train_loss for e in jax_result.epochs],
                               [e.train_loss for e in np_result.epochs], rtol=1e-10)
    for name, value in np_net.params.items():
        np.testing.assert_allclose(np.asarray(jax_net.params[name]), value, rtol=1e-9, atol=1e-10,
                                   err_msg=name)
    assert np_result.epochs[-1].test_acc > 0.7  # learned: chance is 1/3


@needs_jax
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_compiled_epoch_serves_new_learning_rates_and_decays_without_recompiling(name):
    from xpnet.backends import get_backend
    from xpnet.nn.training import batch_order, compiled_epoch, initial_train_state, make_train_step

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


def test_trainer_keeps_the_books_history_lists(capsys):
    from xpnet.nn import Trainer

    x, t = toy_data()
    net = MultiLayerNet(20, [10, 10], 3, backend="numpy", seed=0)
    trainer = Trainer(net, x[:400], t[:400], x[400:], t[400:], epochs=3, mini_batch_size=40,
                      optimizer="Adam", optimizer_param={"lr": 0.01}, evaluate_sample_num_per_epoch=50)
    result = trainer.train()
    assert len(trainer.train_loss_list) == 3 * 10 and len(trainer.test_acc_list) == 3
    assert len(trainer.train_acc_list) == 3 and len(trainer.epoch_seconds) == 3
    assert trainer.train_loss_list[-1] < trainer.train_loss_list[0]
    assert all(acc * 50 == pytest.approx(round(acc * 50)) for acc in trainer.train_acc_list)  # 50 evaluated
    assert repr(trainer.optimizer) == "Adam(lr=0.01, beta1=0.9, beta2=0.999)"
    out = capsys.readouterr().out
    assert out.count("=== epoch") == 3 and "Final Test Accuracy" in out
    assert result.epochs[-1].test_acc == trainer.test_acc_list[-1]


def test_saved_files_get_the_usual_permissions(tmp_path):
    """Checkpoints are written through a temporary file; the result is not left private (0600)."""
    import os

    path = tmp_path / "run.npz"
    save_checkpoint(path, {"w": np.zeros(2)}, {})
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_batch_orders_hold_each_sample_once_in_the_backends_index_dtype(backend):
    from xpnet.nn.training import batch_order

    order = batch_order(3, 2, 1050, 100, backend)
    assert order.shape == (10, 100) and order.dtype == backend.index_dtype
    indices = backend.to_numpy(order).ravel()
    assert len(set(indices.tolist())) == 1000 and indices.min() >= 0 and indices.max() < 1050
    # the same (seed, epoch) gives the same order on every backend; another epoch another one
    assert np.array_equal(indices, batch_order(3, 2, 1050, 100, get_backend("numpy")).ravel())
    assert not np.array_equal(indices, backend.to_numpy(batch_order(3, 3, 1050, 100, backend)).ravel())
    if backend.name == "numpy":  # NumPy gathers with intp indices without converting them first
        assert order.dtype == np.intp
