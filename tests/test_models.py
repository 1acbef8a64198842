"""TwoLayerNet and SGD: same init everywhere, backprop vs numerical gradient, the book's update API.

Every test taking `backend` runs on each backend: results come back through `backend.to_numpy`
(or `assert_close`), dtypes are compared by name (`dtype_name`).
"""
import numpy as np
import pytest

from tests.conftest import assert_close
from xpnet.backends import dtype_name
from xpnet.nn import SGD, MultiLayerNet, MultiLayerNetExtend, TwoLayerNet

#: Backprop differentiates -log(y), the loss is -log(y + 1e-7): they differ by about 1e-7/y.
GRAD_TOL = 1e-6


def small_batch(n=6, features=8, classes=4, seed=0):
    """Random inputs labelled by their largest of the first `classes` features (learnable)."""
    x = np.random.default_rng(seed).random((n, features))
    return x, x[:, :classes].argmax(axis=1)


def test_same_seed_same_params_on_every_backend(backend, dtype):
    reference = TwoLayerNet(784, 50, 10, seed=42, backend="numpy", dtype=dtype)
    net = TwoLayerNet(784, 50, 10, seed=42, backend=backend, dtype=dtype)
    assert list(net.params) == ["W1", "b1", "W2", "b2"]
    for name, value in net.params.items():
        assert dtype_name(value.dtype) == dtype and backend.owns(value)
        np.testing.assert_array_equal(backend.to_numpy(value), reference.params[name])
    assert tuple(net.params["W1"].shape) == (784, 50) and tuple(net.params["b2"].shape) == (10,)
    assert float(abs(backend.to_numpy(net.params["W1"])).std()) == pytest.approx(0.01 * 0.6028, rel=0.05)
    assert not np.array_equal(TwoLayerNet(784, 50, 10, seed=43).params["W1"], reference.params["W1"])


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_backprop_matches_numerical_gradient(backend, activation):
    x, t = small_batch()
    net = TwoLayerNet(8, 5, 4, weight_init_std=0.5, activation=activation, backend=backend, seed=1,
                      dtype="float64")
    backprop = net.gradient(x, t)
    numerical = net.numerical_gradient(x, t)
    assert set(backprop) == set(numerical) == {"W1", "b1", "W2", "b2"}
    for name in backprop:
        assert backprop[name].shape == net.params[name].shape
        assert_close(backprop[name], backend.to_numpy(numerical[name]), atol=GRAD_TOL, rtol=0)
    # numerical_gradient leaves the params as they were
    np.testing.assert_array_equal(backend.to_numpy(net.params["W1"]),
                                  TwoLayerNet(8, 5, 4, 0.5, activation, seed=1, dtype="float64").params["W1"])


def test_accuracy_over_more_samples_than_one_chunk_counts_each_once(backend):
    """Net.accuracy and fit's evaluation go EVAL_CHUNK samples at a time; a last, shorter chunk
    counts too (and on JAX compiles apart from the full ones)."""
    from xpnet.nn.batching import EVAL_CHUNK
    from xpnet.nn.training import fit

    n = 2 * EVAL_CHUNK + 17
    x = np.random.default_rng(5).random((n, 8))
    net = TwoLayerNet(8, 5, 4, weight_init_std=1.0, backend=backend, seed=3, dtype="float64")
    predicted = backend.to_numpy(net.predict(x)).argmax(axis=1)
    t = np.where(np.arange(n) % 3 == 0, predicted, (predicted + 1) % 4)  # every third one right
    assert net.accuracy(x, t) == pytest.approx(np.mean(predicted == t), abs=0) == pytest.approx(
        (n + 2) // 3 / n)
    test = (x[:EVAL_CHUNK + 1], t[:EVAL_CHUNK + 1])
    epoch = fit(net, SGD(lr=1e-300), (x, t), test, epochs=1, batch_size=n).epochs[0]
    assert epoch.train_acc == pytest.approx((n + 2) // 3 / n)
    assert epoch.test_acc == pytest.approx(np.mean((predicted == t)[:EVAL_CHUNK + 1]))


def test_predict_loss_accuracy(backend, dtype):
    x, t = small_batch()
    net = TwoLayerNet(8, 5, 4, backend=backend, seed=0, dtype=dtype)
    y = net.predict(x)
    assert tuple(y.shape) == (6, 4) and dtype_name(y.dtype) == dtype and backend.owns(y)
    scores = backend.to_numpy(y)
    assert net.accuracy(x, t) == pytest.approx(np.mean(scores.argmax(axis=1) == t))
    assert isinstance(net.accuracy(x, t), float)
    # With weights of std 0.01 the scores are near zero: the loss is about log(4).
    loss = net.loss(x, t)
    assert dtype_name(loss.dtype) == dtype
    assert float(backend.to_numpy(loss)) == pytest.approx(np.log(4), rel=1e-2)
    # one-hot float labels, on the host or already on the device, in either float dtype
    host_one_hot = np.eye(4)[t]
    for one_hot in (host_one_hot, backend.asarray(host_one_hot, "float32"),
                    backend.asarray(host_one_hot, "float64")):
        assert_close(net.loss(x, one_hot), backend.to_numpy(loss), dtype)
        assert net.accuracy(x, one_hot) == net.accuracy(x, t)
    # inputs and labels already on the device give what host ones give
    xd, td = backend.asarray(x, dtype), backend.asarray(t)
    assert_close(net.predict(xd), scores, dtype)
    assert_close(net.loss(xd, td), backend.to_numpy(loss), dtype)
    assert net.accuracy(xd, td) == net.accuracy(x, t)


def test_the_net_always_computes_with_the_current_params(backend):
    x, t = small_batch()
    net = TwoLayerNet(8, 5, 4, backend=backend, seed=0, dtype="float64")
    net.params["W2"] = backend.asarray(np.zeros((5, 4)), "float64")
    net.params["b2"] = backend.asarray([0.0, 0.0, 9.0, 0.0], "float64")  # every sample -> class 2
    assert net.accuracy(x, t) == pytest.approx(np.mean(t == 2))
    assert_close(net.predict(x), np.tile([0.0, 0.0, 9.0, 0.0], (6, 1)))
    assert backend.owns(net.params["W2"]) and backend.owns(net.params["b2"])


def test_sgd_update_the_books_way_reduces_the_loss(backend, dtype):
    x, t = small_batch(n=30)
    net = TwoLayerNet(8, 10, 4, weight_init_std=0.5, backend=backend, seed=0, dtype=dtype)
    optimizer = SGD(lr=0.5)
    before = float(backend.to_numpy(net.loss(x, t)))
    w1 = net.params["W1"]
    grads = net.gradient(x, t)
    optimizer.update(net.params, grads)
    assert_close(net.params["W1"], backend.to_numpy(w1) - 0.5 * backend.to_numpy(grads["W1"]), dtype)
    for _ in range(200):
        optimizer.update(net.params, net.gradient(x, t))
    assert float(backend.to_numpy(net.loss(x, t))) < 0.5 * before
    assert all(dtype_name(p.dtype) == dtype and backend.owns(p) for p in net.params.values())


def test_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        TwoLayerNet(4, 3, 2, activation="tanh")


@pytest.mark.parametrize("init, expected_std", [
    (0.05, lambda n: 0.05), ("he", lambda n: np.sqrt(2 / n)), ("relu", lambda n: np.sqrt(2 / n)),
    ("xavier", lambda n: np.sqrt(1 / n)), ("sigmoid", lambda n: np.sqrt(1 / n)),
])
def test_multi_layer_net_structure_and_init_scales(init, expected_std):
    net = MultiLayerNet(784, [300, 200, 100], 10, weight_init_std=init, seed=0, dtype="float64")
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4"]
    sizes = [784, 300, 200, 100, 10]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        w = net.params[f"W{i}"]
        assert w.shape == (n_in, n_out) and not net.params[f"b{i}"].any()
        assert w.std() == pytest.approx(expected_std(n_in), rel=0.05)
    assert [type(layer).__name__ for layer in net.model.layers] == [
        "Affine", "Relu", "Affine", "Relu", "Affine", "Relu", "Affine"]


@pytest.mark.parametrize("kwargs, message", [
    ({"weight_init_std": "glorot"}, "unknown weight init 'glorot'"),
    ({"weight_init_std": -1.0}, "weight_init_std must be a finite number >= 0"),
    ({"hidden_size_list": [10, 0]}, "a hidden size must be an integer >= 1, got 0"),
    ({"hidden_size_list": []}, "hidden_size_list must hold at least one size"),
])
def test_multi_layer_net_rejects_bad_arguments(kwargs, message):
    args = {"input_size": 4, "hidden_size_list": [3], "output_size": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        MultiLayerNet(**args)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_multi_layer_net_backprop_matches_numerical_with_weight_decay(backend, activation):
    x, t = small_batch()
    net = MultiLayerNet(8, [6, 5], 4, activation=activation, weight_init_std=0.5,
                        weight_decay_lambda=0.3, backend=backend, seed=3, dtype="float64")
    backprop, numerical = net.gradient(x, t), net.numerical_gradient(x, t)
    assert set(backprop) == set(numerical) == set(net.params)
    for name in net.params:
        assert_close(backprop[name], backend.to_numpy(numerical[name]), atol=GRAD_TOL, rtol=0)


def test_weight_decay_adds_half_lambda_w_squared_to_the_loss(backend, dtype):
    x, t = small_batch()
    plain = MultiLayerNet(8, [5], 4, weight_init_std=0.5, backend=backend, seed=0, dtype=dtype)
    decayed = MultiLayerNet(8, [5], 4, weight_init_std=0.5, weight_decay_lambda=np.float64(0.2),
                            backend=backend, seed=0, dtype=dtype)
    w = [backend.to_numpy(plain.params[k]) for k in ("W1", "W2")]
    penalty = 0.5 * 0.2 * sum((a.astype(np.float64) ** 2).sum() for a in w)
    loss = decayed.loss(x, t)
    assert dtype_name(loss.dtype) == dtype  # a float64 λ does not promote float32
    assert_close(loss, float(backend.to_numpy(plain.loss(x, t))) + penalty, dtype)
    grads, plain_grads = decayed.gradient(x, t), plain.gradient(x, t)
    assert all(dtype_name(g.dtype) == dtype for g in grads.values())
    assert_close(grads["W1"], backend.to_numpy(plain_grads["W1"]) + 0.2 * w[0], dtype)
    assert_close(grads["b1"], backend.to_numpy(plain_grads["b1"]), dtype)  # biases are not decayed


@pytest.mark.parametrize("use_batchnorm, use_dropout", [(True, False), (False, True), (True, True)],
                         ids=["batchnorm", "dropout", "both"])
def test_multi_layer_net_extend_backprop_matches_numerical(backend, use_batchnorm, use_dropout):
    """A fixed key gives backprop and every perturbed loss the same Dropout mask."""
    from xpnet.nn.structured_gradient import model_numerical_gradient

    x, t = small_batch(n=8)
    net = MultiLayerNetExtend(8, [6, 5], 4, activation="sigmoid", weight_init_std=0.5,
                              weight_decay_lambda=0.1, use_batchnorm=use_batchnorm,
                              use_dropout=use_dropout, dropout_ratio=0.3, backend=backend, seed=2,
                              dtype="float64")
    xd, td = net.to_device(x, t)
    key = net.next_key()
    _, backprop = net.model.loss_and_grad(net.params, xd, td, net.state, key)
    numerical = model_numerical_gradient(net.model, net.params, xd, td, net.state, key)
    assert set(backprop) == set(numerical) == set(net.params)
    for name in net.params:
        assert_close(backprop[name], backend.to_numpy(numerical[name]), atol=GRAD_TOL, rtol=0)


def test_multi_layer_net_extend_follows_the_book(backend):
    x, t = small_batch(n=20)
    net = MultiLayerNetExtend(8, [6, 5], 4, use_batchnorm=True, use_dropout=True, dropout_ration=0.25,
                              backend=backend, seed=0, dtype="float64")
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3", "gamma1", "beta1", "gamma2", "beta2"]
    assert net.dropout_ratio == 0.25 and net.use_batchnorm and net.use_dropout
    assert [type(layer).__name__ for layer in net.model.layers[:4]] == [
        "Affine", "BatchNormalization", "Relu", "Dropout"]
    assert sorted(net.state) == ["running_mean1", "running_mean2", "running_var1", "running_var2"]
    assert not any(backend.to_numpy(v).any() for v in net.state.values())  # the book starts at 0
    # inference is deterministic; a training-mode pass draws a new mask and moves the running values
    assert_close(net.predict(x), backend.to_numpy(net.predict(x)))
    net.gradient(x, t)
    assert backend.to_numpy(net.state["running_var1"]).min() > 0
    assert all(backend.owns(v) for v in net.state.values())
    a, b = net.predict(x, train_flg=True), net.predict(x, train_flg=True)
    assert not np.allclose(backend.to_numpy(a), backend.to_numpy(b))
    assert float(backend.to_numpy(net.loss(x, t))) > 0 and 0 <= net.accuracy(x, t) <= 1
    # the Dropout masks are drawn on the device, from a key that is a device array
    key = net.next_key()
    assert backend.owns(key)
    _, caches, _ = net.model.forward(net.params, net.to_device(x), True, net.state, key)
    masks = [cache for layer, cache in zip(net.model.layers, caches) if type(layer).__name__ == "Dropout"]
    assert len(masks) == 2 and all(backend.owns(m) and dtype_name(m.dtype) == "float64" for m in masks)
    kept = backend.to_numpy(masks[0])
    assert set(np.unique(kept)) == {0.0, 1.0} and 0.5 < kept.mean() < 0.95  # ratio 0.25
    assert MultiLayerNetExtend(8, [6], 4, use_dropout=True, dropout_ratio=0.1).dropout_ratio == 0.1


@pytest.mark.parametrize("build, expected", [
    (lambda: TwoLayerNet(784, 50, 10), "TwoLayerNet(784, 50, 10, sigmoid, init 0.01)"),
    (lambda: TwoLayerNet(784, 100, 10, weight_init_std="He", activation="ReLU"),
     "TwoLayerNet(784, 100, 10, relu, init he)"),
    (lambda: MultiLayerNet(784, [100] * 2, 10, weight_init_std=0.05),
     "MultiLayerNet(784, [100, 100], 10, relu, init 0.05)"),
    # the CLI builds MultiLayerNetExtend for --model multi-layer; without BatchNorm and Dropout
    # it is (and says) MultiLayerNet
    (lambda: MultiLayerNetExtend(784, [20, 10], 10, activation="sigmoid", weight_init_std="he",
                                 weight_decay_lambda=0.1, dropout_ratio=0.5),
     "MultiLayerNet(784, [20, 10], 10, sigmoid, init he, weight decay 0.1)"),
    (lambda: MultiLayerNetExtend(784, [50, 50], 10, weight_init_std="he", weight_decay_lambda=0.01,
                                 use_batchnorm=True, use_dropout=True, dropout_ratio=0.2),
     "MultiLayerNetExtend(784, [50, 50], 10, relu, init he, weight decay 0.01, BatchNorm, Dropout 0.2)"),
    (lambda: MultiLayerNetExtend(784, [100, 100], 10, use_dropout=True, dropout_ratio=0.5),
     "MultiLayerNetExtend(784, [100, 100], 10, relu, init relu, Dropout 0.5)"),
    (lambda: MultiLayerNetExtend(8, [4], 2, use_dropout=True, inverted_dropout=True, weight_init_std=1),
     "MultiLayerNetExtend(8, [4], 2, relu, init 1.0, Dropout 0.5 inverted)"),
], ids=lambda v: v if isinstance(v, str) else "net")
def test_repr_is_the_description_the_cli_prints(build, expected):
    """`xpnet train` prints these strings and saves them as the checkpoint's config["model"]."""
    assert repr(build()) == expected


@pytest.mark.parametrize("build", [
    lambda b: TwoLayerNet(8, 5, 4, weight_init_std=0.5, activation="relu", backend=b, seed=3),
    lambda b: MultiLayerNet(8, [6, 5], 4, weight_init_std="xavier", weight_decay_lambda=0.2,
                            backend=b, seed=3, dtype="float64"),
    lambda b: MultiLayerNetExtend(8, [6], 4, use_batchnorm=True, use_dropout=True, dropout_ration=0.3,
                                  inverted_dropout=True, backend=b, seed=3),
], ids=["two-layer", "multi-layer", "extend"])
def test_config_is_json_and_builds_the_same_net(backend, build):
    import json

    net = build(backend)
    config = net.config()
    assert json.loads(json.dumps(config)) == config
    assert config["class"] == type(net).__name__ and config["dtype"] == net.dtype
    again = type(net).from_config(config, backend=backend, seed=3)
    assert type(again) is type(net) and again.config() == config and repr(again) == repr(net)
    assert list(again.params) == list(net.params)
    for name, value in net.params.items():  # same config and seed: the same net, bit for bit
        np.testing.assert_array_equal(backend.to_numpy(again.params[name]), backend.to_numpy(value))


def test_config_holds_the_constructor_arguments():
    assert TwoLayerNet(784, 50, 10).config() == {
        "class": "TwoLayerNet", "input_size": 784, "hidden_size": 50, "output_size": 10,
        "weight_init_std": 0.01, "activation": "sigmoid", "dtype": "float32"}
    assert MultiLayerNetExtend(784, [100, 100], 10, weight_decay_lambda=np.float64(0.1), use_batchnorm=True,
                               dtype="float64").config() == {
        "class": "MultiLayerNetExtend", "input_size": 784, "hidden_size_list": [100, 100],
        "output_size": 10, "activation": "relu", "weight_init_std": "relu", "weight_decay_lambda": 0.1,
        "use_dropout": False, "dropout_ratio": 0.5, "use_batchnorm": True, "inverted_dropout": False,
        "dtype": "float64"}
    with pytest.raises(ValueError, match="unknown net class 'ResNet'"):
        TwoLayerNet.from_config({"class": "ResNet"})


def test_model_registry_names_the_cli_models():
    from xpnet.nn import MODELS
    from xpnet.nn.convnets import DeepConvNet, SimpleConvNet

    assert MODELS == {"two-layer": TwoLayerNet, "multi-layer": MultiLayerNetExtend,
                      "simple-conv": SimpleConvNet, "deep-conv": DeepConvNet}


def test_every_net_has_weight_decay_terms_and_lambda_zero_changes_nothing(backend):
    """λ is always part of the model (the book's TwoLayerNet has λ = 0): its terms add exactly 0."""
    x, t = small_batch()
    net = TwoLayerNet(8, 5, 4, weight_init_std=0.5, backend=backend, seed=0, dtype="float64")
    assert net.model.decayed_weights() == ["W1", "W2"] and net.model.weight_decay == 0.0
    xd, td = net.to_device(x, t)
    scores = net.model.predict(net.params, xd)
    data_loss, _ = net.model.loss_layer.forward(net.params, scores, td)
    assert float(backend.to_numpy(net.loss(x, t))) == float(backend.to_numpy(data_loss))
