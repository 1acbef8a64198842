"""Layers: the one Layer contract, hand-computed forward/backward values, and backprop against
central differences."""
import numpy as np
import pytest

from tests.conftest import assert_close
from xpnet.backends import backend_of, dtype_name
from xpnet.nn import (
    Affine,
    BatchNormalization,
    Dropout,
    Relu,
    Sigmoid,
    SoftmaxWithLoss,
    numerical_gradient,
)
from xpnet.nn.layers import ACTIVATIONS, INFERENCE, BaseLayer, Context, Layer, activation_layer

#: Central differences with h = 1e-4 in float64 are accurate to about h² times the third derivative.
GRAD_TOL = 1e-7


def test_affine_by_hand(backend, dtype):
    params = {"W": backend.asarray([[1.0, 2.0], [3.0, 4.0]], dtype), "b": backend.asarray([1.0, -1.0], dtype)}
    layer = Affine("W", "b")
    x = backend.asarray([[1.0, 2.0]], dtype)
    y, cache, updates = layer.forward(params, x, Context(train=True))
    assert_close(y, [[8.0, 9.0]], dtype)
    assert updates == {}
    dx, grads = layer.backward(params, cache, backend.asarray([[1.0, 10.0]], dtype))
    assert_close(dx, [[21.0, 43.0]], dtype)            # dout · Wᵀ
    assert_close(grads["W"], [[1.0, 10.0], [2.0, 20.0]], dtype)  # xᵀ · dout
    assert_close(grads["b"], [1.0, 10.0], dtype)
    assert set(grads) == {"W", "b"}
    assert all(dtype_name(a.dtype) == dtype for a in (y, dx, grads["W"], grads["b"]))


def test_affine_flattens_images_and_restores_their_shape(backend):
    params = {"W": backend.asarray(np.ones((12, 2)), "float64"), "b": backend.asarray(np.zeros(2), "float64")}
    x = backend.asarray(np.arange(24.0).reshape(2, 1, 3, 4), "float64")
    y, cache, _ = Affine().forward(params, x)
    assert y.shape == (2, 2)
    dx, _ = Affine().backward(params, cache, y)
    assert dx.shape == (2, 1, 3, 4)


def test_affine_names_a_shape_mismatch(backend):
    params = {"W": backend.asarray(np.ones((3, 2)), "float64"), "b": backend.asarray(np.zeros(2), "float64")}
    with pytest.raises(ValueError, match=r"4 features.*W has shape \(3, 2\)"):
        Affine().forward(params, backend.asarray(np.ones((5, 4)), "float64"))


def test_relu_and_sigmoid_by_hand(backend, dtype):
    x = backend.asarray([[-1.0, 0.0, 2.0]], dtype)
    dout = backend.asarray([[5.0, 6.0, 7.0]], dtype)
    y, cache, updates = Relu().forward({}, x)
    assert_close(y, [[0.0, 0.0, 2.0]], dtype)
    assert updates == {}
    dx, _ = Relu().backward({}, cache, dout)
    assert_close(dx, [[0.0, 0.0, 7.0]], dtype)
    assert dtype_name(y.dtype) == dtype and dtype_name(dx.dtype) == dtype
    y, cache, updates = Sigmoid().forward({}, x, INFERENCE)
    assert updates == {}
    s = 1 / (1 + np.exp(-np.array([-1.0, 0.0, 2.0])))
    assert_close(y, [s], dtype)
    dx, _ = Sigmoid().backward({}, cache, dout)
    assert_close(dx, [[5, 6, 7] * s * (1 - s)], dtype)
    assert dtype_name(y.dtype) == dtype and dtype_name(dx.dtype) == dtype


def test_softmax_with_loss_by_hand(backend, dtype):
    scores = backend.asarray([[0.0, 0.0], [np.log(3.0), 0.0]], dtype)
    labels = backend.asarray(np.array([0, 1]))
    layer = SoftmaxWithLoss()
    loss, cache = layer.forward({}, scores, labels)
    # probabilities [½, ½] and [¾, ¼]: loss = -(log ½ + log ¼) / 2
    assert_close(loss, -(np.log(0.5 + 1e-7) + np.log(0.25 + 1e-7)) / 2, dtype)
    dx, grads = layer.backward({}, cache)
    assert_close(dx, [[-0.25, 0.25], [0.375, -0.375]], dtype)  # (y - t) / batch
    assert grads == {}
    one_hot = backend.asarray([[1.0, 0.0], [0.0, 1.0]], dtype)
    loss_1h, cache_1h = layer.forward({}, scores, one_hot)
    assert_close(loss_1h, backend.to_numpy(loss), dtype)
    assert_close(layer.backward({}, cache_1h)[0], backend.to_numpy(dx), dtype)
    assert dtype_name(loss.dtype) == dtype and dtype_name(dx.dtype) == dtype


def _random(backend, shape, seed):
    return backend.asarray(np.random.default_rng(seed).standard_normal(shape), "float64")


@pytest.mark.parametrize("layer", [Affine("W", "b"), Relu(), Sigmoid()], ids=repr)
def test_backprop_matches_numerical_gradient(backend, layer):
    params = {"W": _random(backend, (4, 3), 1), "b": _random(backend, (3,), 2)}
    # Keep inputs away from ReLU's kink, where the one-sided slopes differ.
    x = _random(backend, (5, 4), 3)
    x = x + 0.1 * backend.xp.sign(x)
    y, cache, _ = layer.forward(params, x)
    weights = _random(backend, y.shape, 4)  # L = Σ weights · y, so ∂L/∂y = weights
    xp = backend.xp

    def loss_of(name):
        def f(value):
            if name == "x":
                return xp.sum(weights * layer.forward(params, value)[0])
            return xp.sum(weights * layer.forward({**params, name: value}, x)[0])
        return f

    dx, grads = layer.backward(params, cache, weights)
    assert_close(dx, backend.to_numpy(numerical_gradient(loss_of("x"), x)), atol=GRAD_TOL, rtol=0)
    for name, grad in grads.items():
        expected = backend.to_numpy(numerical_gradient(loss_of(name), params[name]))
        assert_close(grad, expected, atol=GRAD_TOL, rtol=0)


@pytest.mark.parametrize("one_hot", [False, True], ids=["labels", "one-hot"])
def test_softmax_with_loss_backprop_matches_numerical_gradient(backend, one_hot):
    x = _random(backend, (4, 5), 5)
    labels = np.array([0, 3, 4, 3])
    t = backend.asarray(np.eye(5)[labels], "float64") if one_hot else backend.asarray(labels)
    layer = SoftmaxWithLoss()
    _, cache = layer.forward({}, x, t)
    dx, _ = layer.backward({}, cache)
    expected = backend.to_numpy(numerical_gradient(lambda v: layer.forward({}, v, t)[0], x))
    # Backprop's (y - t)/N is the gradient of -log(y), while the loss is -log(y + 1e-7): the two
    # differ by about 1e-7/y, a few times 1e-7 for these scores.
    assert_close(dx, expected, atol=1e-6, rtol=0)


def _batchnorm(backend, dtype="float64"):
    layer = BatchNormalization("g", "b", "mean", "var", momentum=0.9)
    params = {"g": backend.asarray([2.0, 0.5, 1.0], dtype), "b": backend.asarray([0.0, 1.0, -1.0], dtype)}
    return layer, params


def test_batchnorm_training_uses_the_batch_and_updates_the_running_values(backend, dtype):
    layer, params = _batchnorm(backend, dtype)
    host = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 0.0], [5.0, 8.0, 3.0], [7.0, 4.0, 2.0]])
    x = backend.asarray(host, dtype)
    state = layer.init_state(params)
    assert set(state) == {"mean", "var"}
    assert_close(state["mean"], np.zeros(3), dtype)
    assert_close(state["var"], np.zeros(3), dtype)
    y, _, updates = layer.forward(params, x, Context(train=True, state=state))
    mean, var = host.mean(axis=0), host.var(axis=0)
    expected = [2.0, 0.5, 1.0] * (host - mean) / np.sqrt(var + 1e-6) + [0.0, 1.0, -1.0]
    assert_close(y, expected, dtype, rtol=1e-5 if dtype == "float32" else 1e-12)
    assert_close(updates["mean"], 0.1 * mean, dtype)          # 0.9 · 0 + 0.1 · batch mean
    assert_close(updates["var"], 0.1 * var, dtype)
    assert dtype_name(y.dtype) == dtype and dtype_name(updates["var"].dtype) == dtype
    assert dtype_name(updates["mean"].dtype) == dtype and backend_of(y) is backend


def test_batchnorm_inference_uses_the_running_values(backend):
    layer, params = _batchnorm(backend)
    state = {"mean": backend.asarray([1.0, 2.0, 3.0], "float64"), "var": backend.asarray([4.0, 1.0, 0.25], "float64")}
    x = backend.asarray([[3.0, 2.0, 3.5]], "float64")  # one sample: batch statistics would be useless
    y, _, updates = layer.forward(params, x, Context(train=False, state=state))
    expected = [2.0, 0.5, 1.0] * (np.array([2.0, 0.0, 0.5]) / np.sqrt([4.0, 1.0, 0.25] + np.array(1e-6))) + [0, 1, -1]
    assert_close(y, [expected])
    assert updates == {}
    with pytest.raises(ValueError, match="needs 'mean' in the state"):
        layer.forward(params, x, Context(train=False, state=None))


@pytest.mark.parametrize("train", [True, False], ids=["train", "inference"])
def test_batchnorm_backprop_matches_numerical_gradient(backend, train):
    layer, params = _batchnorm(backend)
    x = _random(backend, (5, 3), 6)
    state = {"mean": _random(backend, (3,), 7), "var": backend.asarray([0.5, 1.0, 2.0], "float64")}
    ctx = Context(train=train, state=state)
    y, cache, _ = layer.forward(params, x, ctx)
    weights = _random(backend, y.shape, 8)
    xp = backend.xp

    def loss_of(name):
        def f(value):
            if name == "x":
                return xp.sum(weights * layer.forward(params, value, ctx)[0])
            return xp.sum(weights * layer.forward({**params, name: value}, x, ctx)[0])
        return f

    dx, grads = layer.backward(params, cache, weights)
    assert set(grads) == {"g", "b"}
    assert_close(dx, backend.to_numpy(numerical_gradient(loss_of("x"), x)), atol=GRAD_TOL, rtol=0)
    for name, grad in grads.items():
        expected = backend.to_numpy(numerical_gradient(loss_of(name), params[name]))
        assert_close(grad, expected, atol=GRAD_TOL, rtol=0)


def test_dropout_keeps_one_minus_ratio_and_scales_at_test_time(backend, dtype):
    x = backend.asarray(np.ones((200, 100)), dtype)
    layer = Dropout(0.3)
    y, mask, _ = layer.forward({}, x, Context(train=True, key=backend.key(0)))
    kept = float((backend.to_numpy(y) != 0).mean())
    assert kept == pytest.approx(0.7, abs=0.01)                         # 20,000 draws
    assert set(np.unique(backend.to_numpy(y))) <= {0.0, 1.0}             # the book: no scaling in training
    y2, _, _ = layer.forward({}, x, Context(train=True, key=backend.key(0)))
    assert_close(y2, backend.to_numpy(y), dtype)                         # same key, same mask
    y3, _, _ = layer.forward({}, x, Context(train=True, key=backend.key(1)))
    assert not np.array_equal(backend.to_numpy(y3), backend.to_numpy(y))
    test_y, _, _ = layer.forward({}, x, Context(train=False))
    assert_close(test_y, np.full((200, 100), 0.7), dtype)                # expected value kept
    dx, _ = layer.backward({}, mask, backend.asarray(np.full((200, 100), 2.0), dtype))
    assert_close(dx, 2.0 * (backend.to_numpy(y) != 0), dtype)
    assert dtype_name(y.dtype) == dtype and dtype_name(dx.dtype) == dtype


def test_inverted_dropout_scales_in_training(backend):
    x = backend.asarray(np.ones((100, 100)), "float32")
    layer = Dropout(0.5, inverted=True)
    y, _, _ = layer.forward({}, x, Context(train=True, key=backend.key(3)))
    assert set(np.unique(backend.to_numpy(y))) == {0.0, 2.0}
    assert float(backend.to_numpy(y).mean()) == pytest.approx(1.0, abs=0.03)
    assert_close(layer.forward({}, x, Context(train=False))[0], np.ones((100, 100)), "float32")


def test_dropout_errors(backend):
    with pytest.raises(ValueError, match=r"dropout ratio must be in \[0, 1\)"):
        Dropout(1.0)
    with pytest.raises(ValueError, match="needs a random key"):
        Dropout(0.5).forward({}, backend.asarray(np.ones((2, 2)), "float32"), Context(train=True))


LAYERS = [Affine("W", "b"), Relu(), Sigmoid(), BatchNormalization("g", "b", "mean", "var"), Dropout(0.5)]


@pytest.mark.parametrize("layer", LAYERS, ids=repr)
def test_every_layer_follows_the_one_contract(layer):
    """One forward and one backward signature, and declared attributes (no probing)."""
    import inspect

    assert isinstance(layer, Layer) and isinstance(layer, BaseLayer)
    assert list(inspect.signature(layer.forward).parameters) == ["params", "x", "ctx"]
    assert inspect.signature(layer.forward).parameters["ctx"].default is INFERENCE
    assert list(inspect.signature(layer.backward).parameters) == ["params", "cache", "dout", "need_dx"]
    assert layer.weight == ("W" if isinstance(layer, Affine) else None)
    assert layer.elementwise is isinstance(layer, (Relu, Sigmoid))
    assert layer.random is isinstance(layer, Dropout)
    if not isinstance(layer, BatchNormalization):
        assert layer.init_state({}) == {}


def test_base_layer_declares_the_defaults_and_leaves_the_work_to_subclasses():
    class Identity(BaseLayer):
        pass

    layer = Identity()
    assert (layer.weight, layer.elementwise, layer.random) == (None, False, False)
    assert layer.init_state({"W": 1}) == {} and repr(layer) == "Identity()"
    with pytest.raises(NotImplementedError):
        layer.forward({}, np.ones(2))
    with pytest.raises(NotImplementedError):
        layer.backward({}, None, np.ones(2))
    assert INFERENCE == Context(train=False, state=None, key=None)


def test_without_need_dx_a_layer_skips_the_input_gradient_and_keeps_its_grads(backend):
    params = {"W": _random(backend, (4, 3), 1), "b": _random(backend, (3,), 2),
              "g": _random(backend, (3,), 3), "beta": _random(backend, (3,), 4)}
    x, dout = _random(backend, (5, 4), 5), _random(backend, (5, 3), 6)
    layer = Affine("W", "b")
    _, cache, _ = layer.forward(params, x)
    dx, grads = layer.backward(params, cache, dout)
    skipped, same = layer.backward(params, cache, dout, need_dx=False)
    assert dx is not None and skipped is None and set(same) == set(grads) == {"W", "b"}
    for name in grads:  # the same expressions: the same numbers, bit for bit
        np.testing.assert_array_equal(backend.to_numpy(same[name]), backend.to_numpy(grads[name]))
    norm = BatchNormalization("g", "beta", "mean", "var")
    _, cache, _ = norm.forward(params, dout, Context(train=True, state=norm.init_state(params)))
    dx, grads = norm.backward(params, cache, dout)
    skipped, same = norm.backward(params, cache, dout, need_dx=False)
    assert tuple(dx.shape) == (5, 3) and skipped is None and set(same) == set(grads) == {"g", "beta"}
    for name in grads:
        np.testing.assert_array_equal(backend.to_numpy(same[name]), backend.to_numpy(grads[name]))


def test_activation_registry_names_the_activation_layers():
    assert list(ACTIVATIONS) == ["sigmoid", "relu"]
    assert type(activation_layer("ReLU")) is Relu and type(activation_layer("sigmoid")) is Sigmoid
    with pytest.raises(ValueError, match="unknown activation 'tanh'; choose one of sigmoid, relu"):
        activation_layer("tanh")
