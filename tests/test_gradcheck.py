"""gradient_check directly: backprop against central differences (and jax.grad on JAX), per
parameter, with the tolerance and rounding it states."""
import numpy as np
import pytest

from xpnet.errors import ConfigError
from xpnet.nn import MultiLayerNet, MultiLayerNetExtend, TwoLayerNet
from xpnet.nn.central_differences import H
from xpnet.nn.gradcheck import KINK_STEP, TOLERANCES, GradCheckResult, gradient_check


def batch(n=6, features=8, classes=4, seed=0):
    x = np.random.default_rng(seed).random((n, features))
    return x, x[:, :classes].argmax(axis=1)


def test_backprop_passes_against_every_other_method(backend):
    net = TwoLayerNet(8, 5, 4, weight_init_std=0.5, backend=backend, seed=1, dtype="float64")
    before = {k: backend.to_numpy(v).copy() for k, v in net.params.items()}
    result = gradient_check(net, *batch(), repeat=1)
    assert isinstance(result, GradCheckResult) and result.passed
    methods = ["numerical"] + (["jax.grad"] if backend.autodiff else [])
    assert sorted((e.method, e.name) for e in result.errors) == \
        sorted((m, p) for m in methods for p in net.params)
    assert list(result.seconds) == ["backprop", *methods]
    assert all(s > 0 for s in result.seconds.values())
    assert result.tolerance == TOLERANCES["float64"] == 1e-5
    for e in result.errors:
        assert e.passed and 0 <= e.max_abs < 1e-7 and 0 <= e.max_rel < 1e-5
        assert isinstance(e.max_abs, float) and isinstance(e.max_rel, float)
    for name, value in net.params.items():  # the check changes nothing
        np.testing.assert_array_equal(backend.to_numpy(value), before[name])


def test_the_errors_are_the_stated_formulas():
    """max rel = max abs / max |g_backprop|; rounding = eps · max(|loss|, 1) / 2h."""
    net = TwoLayerNet(8, 5, 4, weight_init_std=0.5, backend="numpy", seed=2, dtype="float64")
    x, t = batch()
    result = gradient_check(net, x, t, repeat=1)
    backprop = net.model.loss_and_grad(net.params, *net.to_device(x, t))[1]
    numerical = net.numerical_gradient(x, t)
    loss = float(net.loss(x, t))
    assert result.rounding == pytest.approx(np.finfo(np.float64).eps * max(loss, 1.0) / (2 * H))
    for e in result.errors:
        max_abs = np.abs(numerical[e.name] - backprop[e.name]).max()
        assert e.max_abs == pytest.approx(max_abs, rel=1e-6, abs=1e-18)
        assert e.max_rel == pytest.approx(e.max_abs / np.abs(backprop[e.name]).max(), rel=1e-12)


def test_a_tolerance_below_the_methods_agreement_fails():
    net = TwoLayerNet(8, 5, 4, weight_init_std=0.5, backend="numpy", seed=1, dtype="float64")
    result = gradient_check(net, *batch(), tolerance=1e-14, repeat=1)
    assert not result.passed and result.tolerance == 1e-14
    assert any(not e.passed for e in result.errors)


def test_float32_nets_get_the_float32_tolerance():
    net = TwoLayerNet(8, 5, 4, weight_init_std=0.5, backend="numpy", seed=1)
    result = gradient_check(net, *batch(), repeat=1)
    assert result.tolerance == TOLERANCES["float32"] == 1e-2
    assert result.rounding == pytest.approx(np.finfo(np.float32).eps * max(
        float(net.loss(*batch())), 1.0) / (2 * H), rel=1e-3)
    assert result.passed


def test_weight_decay_batchnorm_and_dropout_share_one_mask(backend):
    """Every method sees the same Dropout mask (one key) and the same λ."""
    net = MultiLayerNetExtend(8, [6, 5], 4, activation="sigmoid", weight_init_std=0.5,
                              weight_decay_lambda=0.1, use_batchnorm=True, use_dropout=True,
                              dropout_ratio=0.3, backend=backend, seed=2, dtype="float64")
    result = gradient_check(net, *batch(n=8), repeat=1)
    assert result.passed, [e for e in result.errors if not e.passed]
    assert {e.name for e in result.errors} == set(net.params)


def relu_net_with_a_kink_at(distance, dtype="float64"):
    """A ReLU net whose first hidden unit's input is `distance` above 0 for the first sample."""
    net = MultiLayerNet(8, [5], 4, weight_init_std=0.5, backend="numpy", seed=1, dtype=dtype)
    x, t = batch()
    z = x[0] @ net.params["W1"][:, 0] + net.params["b1"][0]
    net.params["b1"] = net.params["b1"] - np.eye(5, dtype=dtype)[0] * (z - distance)
    return net, x, t


def test_an_entry_whose_step_crosses_a_kink_passes_at_the_smaller_step():
    net, x, t = relu_net_with_a_kink_at(H / 2)  # b1[0] ± 1e-4 crosses 0; ± 1e-6 does not
    result = gradient_check(net, x, t, repeat=1)
    assert result.passed, result.errors
    kinks = {e.name: e.kinks for e in result.errors if e.kinks}
    assert kinks["b1"] == 1 and set(kinks) <= {"W1", "b1"}  # W1's column 0 moves z by h·x too
    assert all(e.max_rel < 1e-5 for e in result.errors)


def test_a_kink_within_the_smaller_step_still_fails():
    net, x, t = relu_net_with_a_kink_at(KINK_STEP / 2)
    result = gradient_check(net, x, t, repeat=1)
    assert not result.passed
    failed = {e.name for e in result.errors if not e.passed}
    assert "b1" in failed and failed <= {"W1", "b1"}


def test_float32_never_retries_at_the_smaller_step():
    net, x, t = relu_net_with_a_kink_at(H / 2, dtype="float32")
    result = gradient_check(net, x, t, repeat=1)
    assert all(e.kinks == 0 for e in result.errors)


@pytest.mark.parametrize("kwargs, message", [
    ({"tolerance": 0}, "tolerance must be a finite number > 0"),
    ({"tolerance": float("nan")}, "tolerance must be a finite number > 0"),
    ({"repeat": 0}, "repeat must be an integer >= 1"),
])
def test_bad_arguments_fail_before_any_gradient(kwargs, message):
    net = TwoLayerNet(8, 5, 4, backend="numpy", seed=1)
    with pytest.raises(ConfigError, match=message):
        gradient_check(net, *batch(), **kwargs)
