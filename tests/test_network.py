"""Sequential directly: layers in order under the one Layer contract, backprop, state, keys, and
weight decay that is always there, λ = 0 adding exactly nothing."""
import numpy as np
import pytest

from tests.conftest import assert_close
from xpnet.backends import available_backends, get_backend
from xpnet.nn import Affine, BatchNormalization, Dropout, Relu, Sequential, Sigmoid, SoftmaxWithLoss
from xpnet.nn.layers import Context

SHAPES = {"W1": (6, 5), "b1": (5,), "W2": (5, 3), "b2": (3,)}


def params_of(backend, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    params["g1"], params["beta1"] = 1.0 + 0.1 * rng.standard_normal(5), 0.1 * rng.standard_normal(5)
    return {k: backend.asarray(v, dtype) for k, v in params.items()}


def data(backend, n=7, dtype="float64"):
    rng = np.random.default_rng(1)
    return backend.asarray(rng.standard_normal((n, 6)), dtype), backend.asarray(rng.integers(0, 3, n))


def plain_model(weight_decay=0.0):
    return Sequential([Affine("W1", "b1"), Sigmoid(), Affine("W2", "b2")], SoftmaxWithLoss(), weight_decay)


def extended_model():
    return Sequential([Affine("W1", "b1"), BatchNormalization("g1", "beta1", "mean1", "var1"), Relu(),
                       Dropout(0.3), Affine("W2", "b2")], SoftmaxWithLoss())


def test_layers_outside_the_contract_are_refused():
    class Square:  # forward and backward, but none of the declared attributes
        def forward(self, params, x, ctx=None):
            return x * x, x, {}

    with pytest.raises(TypeError, match="does not follow the Layer contract"):
        Sequential([Affine(), Square()], SoftmaxWithLoss())


def test_declared_attributes_make_the_models_properties(backend):
    plain, extended = plain_model(), extended_model()
    assert not plain.random and extended.random
    assert plain.decayed_weights() == extended.decayed_weights() == ["W1", "W2"]
    params = params_of(backend)
    assert plain.init_state(params) == {}
    state = extended.init_state(params)
    assert sorted(state) == ["mean1", "var1"] and not any(backend.to_numpy(v).any() for v in state.values())
    assert repr(plain) == ("Sequential([Affine('W1', 'b1'), Sigmoid(), Affine('W2', 'b2')], "
                           "SoftmaxWithLoss(), weight_decay=0.0)")


def test_forward_runs_the_layers_in_order_with_their_state_and_keys(backend):
    model, params = extended_model(), params_of(backend)
    x, _ = data(backend)
    state, key = model.init_state(params), backend.key(5)
    scores, caches, new_state = model.forward(params, x, True, state, key)
    assert len(caches) == 5 and sorted(new_state) == ["mean1", "var1"]
    # by hand: each layer's forward on the previous output; Dropout (layer 3) gets key folded with 3
    y = x
    for k, layer in enumerate(model.layers):
        ctx = Context(True, state, backend.fold_in(key, k) if layer.random else None)
        y, _, updates = layer.forward(params, y, ctx)
        for name, value in updates.items():
            np.testing.assert_array_equal(backend.to_numpy(new_state[name]), backend.to_numpy(value))
    np.testing.assert_array_equal(backend.to_numpy(scores), backend.to_numpy(y))
    # inference: no key needed, the state passes through unchanged
    scores, _, same_state = model.forward(params, x, False, new_state)
    assert_close(model.predict(params, x, False, new_state), backend.to_numpy(scores))
    assert all(same_state[k] is new_state[k] for k in new_state)


def test_backprop_is_each_layers_backward_in_reverse(backend):
    """loss_and_grad with λ = 0 gives, bit for bit, the layers' own backward passes with nothing
    added: the weight-decay terms are there, and add exactly 0."""
    model, params = extended_model(), params_of(backend)
    x, t = data(backend)
    state, key = model.init_state(params), backend.key(2)
    loss, grads, new_state = model.loss_grad_state(params, x, t, state, key)
    scores, caches, _ = model.forward(params, x, True, state, key)
    expected_loss, cache = model.loss_layer.forward(params, scores, t)
    dout, expected = model.loss_layer.backward(params, cache)
    for layer, cache in reversed(list(zip(model.layers, caches))):
        dout, layer_grads = layer.backward(params, cache, dout)  # need_dx everywhere
        expected.update(layer_grads)
    assert float(backend.to_numpy(loss)) == float(backend.to_numpy(expected_loss))
    assert sorted(grads) == sorted(expected) == sorted(params)
    for name in params:
        np.testing.assert_array_equal(backend.to_numpy(grads[name]), backend.to_numpy(expected[name]))
    assert sorted(new_state) == ["mean1", "var1"]


def test_weight_decay_adds_half_lambda_w_squared_and_lambda_w(backend, dtype):
    params = params_of(backend, dtype=dtype)
    x, t = data(backend, dtype=dtype)
    zero_loss, zero_grads = plain_model().loss_and_grad(params, x, t)
    host = {k: backend.to_numpy(v).astype(np.float64) for k, v in params.items()}
    penalty = 0.5 * 0.3 * sum((host[w] ** 2).sum() for w in ("W1", "W2"))
    for model, lam in ((plain_model(0.3), None), (plain_model(), 0.3),
                       (plain_model(), backend.asarray(0.3, "float64"))):  # an array λ too
        loss, grads = model.loss_and_grad(params, x, t, weight_decay=lam)
        assert_close(loss, float(backend.to_numpy(zero_loss)) + penalty, dtype)
        assert_close(model.loss(params, x, t, weight_decay=lam), backend.to_numpy(loss), dtype)
        for name in ("W1", "W2"):
            assert_close(grads[name], backend.to_numpy(zero_grads[name]) + 0.3 * host[name], dtype)
            assert grads[name].dtype == params[name].dtype  # a float64 λ does not promote
        for name in ("b1", "b2"):  # biases are not decayed
            np.testing.assert_array_equal(backend.to_numpy(grads[name]), backend.to_numpy(zero_grads[name]))


def test_correct_count_takes_labels_or_one_hot_rows(backend):
    model, params = plain_model(), params_of(backend)
    x, t = data(backend)
    predicted = backend.to_numpy(model.predict(params, x)).argmax(axis=1)
    labels = backend.to_numpy(t)
    expected = int((predicted == labels).sum())
    assert int(backend.to_numpy(model.correct_count(params, x, t))) == expected
    one_hot = backend.asarray(np.eye(3)[labels], "float64")
    assert int(backend.to_numpy(model.correct_count(params, x, one_hot))) == expected


@pytest.mark.skipif(not available_backends()["jax"][0], reason="jax unavailable")
def test_one_compiled_backprop_serves_every_lambda_zero_included():
    """No placeholder λ: the compiled program takes λ as an array, and λ = 0 gives what a model
    without decay terms would (the layers' backward alone)."""
    backend = get_backend("jax")
    model, params = plain_model(), params_of(backend)
    x, t = data(backend)
    compiled = backend.jit(model.loss_and_grad)
    results = {lam: compiled(params, x, t, None, None, backend.asarray(lam, "float64"))
               for lam in (0.0, 0.1, 0.0)}
    assert compiled._cache_size() == 1
    eager_loss, eager_grads = model.loss_and_grad(params, x, t)
    assert_close(results[0.0][0], float(eager_loss))
    assert sorted(eager_grads) == ["W1", "W2", "b1", "b2"]
    for name in eager_grads:
        assert_close(results[0.0][1][name], np.asarray(eager_grads[name]))
        decay = 0.1 * np.asarray(params[name]) if name.startswith("W") else 0.0
        assert_close(results[0.1][1][name], np.asarray(results[0.0][1][name]) + decay)
