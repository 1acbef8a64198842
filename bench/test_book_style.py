"""bench/book_style, our book-style NumPy baseline: backprop agrees with its own numerical
gradient, optimizers descend, the Trainer keeps its lists. Imports are scoped to each test."""
import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

BOOK_STYLE = str(Path(__file__).resolve().parent / "book_style")
MODULES = ("common.functions", "common.util", "common.gradient", "common.layers",
           "common.optimizer", "common.multi_layer_net", "common.multi_layer_net_extend",
           "common.trainer", "dataset.mnist", "two_layer_net", "simple_convnet")
GRAD_TOL = 1e-7  # mean abs difference per key, float64
# The loss takes log(y + 1e-7), which backprop ignores: a relative gap of about 1e-7 / y that no
# step size removes. Small weights keep the softmax near uniform and the gradients small, so the
# gap stays well under GRAD_TOL (a backprop bug shows at the size of the gradient itself).


def _purge():
    """Drop the book-style top-level modules so no other test sees them."""
    for name in list(sys.modules):
        if name in ("common", "dataset", "two_layer_net", "simple_convnet") or \
                name.startswith(("common.", "dataset.")):
            del sys.modules[name]


@pytest.fixture
def book():
    """The book-style modules, imported with bench/book_style first on sys.path."""
    saved_path = list(sys.path)
    _purge()
    sys.path.insert(0, BOOK_STYLE)
    try:
        mods = {name.rsplit(".", 1)[-1]: importlib.import_module(name) for name in MODULES}
        yield SimpleNamespace(**mods)
    finally:
        sys.path[:] = saved_path
        _purge()


def _assert_grads_agree(net, x, t):
    numeric = net.numerical_gradient(x, t)
    backprop = net.gradient(x, t)
    assert list(backprop) == list(numeric)
    for key in numeric:
        assert backprop[key].shape == net.params[key].shape
        diff = np.mean(np.abs(backprop[key] - numeric[key]))
        assert diff < GRAD_TOL, (key, diff)


def test_two_layer_net_backprop_matches_numerical_gradient(book):
    np.random.seed(0)
    net = book.two_layer_net.TwoLayerNet(4, 5, 3, weight_init_std=0.1)
    x, t = np.random.randn(6, 4), np.array([0, 1, 2, 1, 0, 2])
    _assert_grads_agree(net, x, t)
    one_hot = np.eye(3)[t]
    assert net.loss(x, one_hot) == pytest.approx(net.loss(x, t), abs=1e-12)
    assert net.accuracy(x, one_hot) == net.accuracy(x, t)


def test_multi_layer_net_extend_with_batchnorm_and_weight_decay(book):
    np.random.seed(1)
    net = book.multi_layer_net_extend.MultiLayerNetExtend(
        5, [4, 3], 3, weight_init_std="he", weight_decay_lambda=0.1, use_batchnorm=True)
    net.params["W3"] *= 0.1  # in place, so the layer sees it: a near-uniform softmax
    x, t = np.random.randn(9, 5), np.arange(9) % 3
    _assert_grads_agree(net, x, t)
    assert net.layers["Affine3"].W is net.params["W3"]
    assert list(net.gradient(x, t)) == ["W1", "b1", "gamma1", "beta1", "W2", "b2",
                                        "gamma2", "beta2", "W3", "b3"]
    assert net.layers["BatchNorm1"].gamma is net.params["gamma1"]


def test_multi_layer_net_backprop_matches_numerical_gradient(book):
    np.random.seed(2)
    net = book.multi_layer_net.MultiLayerNet(5, [4, 4], 3, activation="sigmoid",
                                             weight_init_std="xavier", weight_decay_lambda=0.05)
    x, t = np.random.randn(6, 5), np.random.randint(0, 3, 6)
    _assert_grads_agree(net, x, t)


@pytest.mark.parametrize("pad", [0, 1])
def test_simple_convnet_backprop_matches_numerical_gradient(book, pad):
    np.random.seed(3)
    conv = {"filter_num": 2, "filter_size": 3, "pad": pad, "stride": 1}
    net = book.simple_convnet.SimpleConvNet((2, 6, 6), conv, hidden_size=4, output_size=3,
                                            weight_init_std=0.1)
    x, t = np.random.randn(3, 2, 6, 6), np.array([0, 2, 1])
    _assert_grads_agree(net, x, t)
    assert net.accuracy(x, t, batch_size=2) == net.accuracy(x, t)  # a short last batch counts


def test_simple_convnet_params_round_trip_without_pickle(book, tmp_path):
    np.random.seed(4)
    conv = {"filter_num": 2, "filter_size": 3, "pad": 0, "stride": 1}
    net = book.simple_convnet.SimpleConvNet((1, 6, 6), conv, hidden_size=4, output_size=3)
    x = np.random.randn(2, 1, 6, 6)
    path = tmp_path / "params.pkl"
    net.save_params(str(path))
    assert path.is_file()
    other = book.simple_convnet.SimpleConvNet((1, 6, 6), conv, hidden_size=4, output_size=3)
    other.load_params(str(path))
    np.testing.assert_array_equal(other.predict(x), net.predict(x))
    assert other.layers["Affine1"].W is other.params["W2"]


def test_im2col_and_col2im_are_adjoint(book):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 7, 6))
    col = book.util.im2col(x, 3, 2, stride=2, pad=1)
    c = rng.standard_normal(col.shape)
    back = book.util.col2im(c, x.shape, 3, 2, stride=2, pad=1)
    assert np.sum(col * c) == pytest.approx(np.sum(x * back), rel=1e-12)


OPTIMIZERS = [("SGD", {"lr": 0.1}), ("Momentum", {"lr": 0.05}), ("Nesterov", {"lr": 0.05}),
              ("AdaGrad", {"lr": 0.5}), ("RMSprop", {"lr": 0.05}), ("Adam", {"lr": 0.1})]


@pytest.mark.parametrize("name, kwargs", OPTIMIZERS)
def test_optimizers_reduce_a_quadratic_in_place(book, name, kwargs):
    scale = np.array([1.0, 4.0])
    params = {"x": np.array([3.0, -2.0]), "y": 1.5}  # an array and a plain float
    f = lambda p: 0.5 * np.sum(scale * p["x"] ** 2) + 0.5 * p["y"] ** 2
    x_array, start = params["x"], f(params)
    optimizer = getattr(book.optimizer, name)(**kwargs)
    for _ in range(100):
        optimizer.update(params, {"x": scale * params["x"], "y": params["y"]})
    assert params["x"] is x_array  # updated in place
    assert f(params) < 0.05 * start


def test_trainer_runs_two_epochs_and_fills_its_lists(book, capsys):
    np.random.seed(6)
    x, t = np.random.randn(50, 4), np.random.randint(0, 3, 50)
    net = book.two_layer_net.TwoLayerNet(4, 5, 3)
    trainer = book.trainer.Trainer(net, x, t, x[:20], t[:20], epochs=2, mini_batch_size=10,
                                   optimizer="Adam", optimizer_param={"lr": 0.01})
    w1 = net.params["W1"].copy()
    trainer.train()
    assert trainer.max_iter == 10
    assert len(trainer.train_loss_list) == 10
    assert len(trainer.train_acc_list) == len(trainer.test_acc_list) == 2
    assert not np.array_equal(net.layers["Affine1"].W, w1)  # the layers saw the updates
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("train loss:") for line in lines) == 10
    assert sum(line.startswith("=== epoch:") for line in lines) == 2
    assert lines[-1].startswith("test acc:")


def test_functions_and_dataset_delegation(book, monkeypatch):
    f = book.functions
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 1000.0]])
    np.testing.assert_allclose(f.softmax(x).sum(axis=1), 1.0)
    np.testing.assert_allclose(f.softmax(x[0]), f.softmax(x)[0])
    np.testing.assert_array_equal(f.step_function(np.array([-1.0, 2.0])), [0, 1])
    assert f.cross_entropy_error(np.array([0.1, 0.9]), np.array([0, 1])) == \
        pytest.approx(-np.log(0.9 + 1e-7))
    calls = []
    monkeypatch.setattr(book.mnist, "_xpnet_load_mnist", lambda *a, **k: calls.append((a, k)))
    monkeypatch.setenv("BOOK_STYLE_DATASET", "synthetic")
    book.mnist.load_mnist(flatten=False)
    assert calls == [((True, False, False), {"dataset": "synthetic"})]
