"""Initial weights: the book's named scales, numbers as given, one seed the same weights everywhere."""
import math

import numpy as np
import pytest

from xpnet.errors import ConfigError
from xpnet.nn.init import INIT_SCALES, affine_params, host_rng, init_std


def test_named_scales_are_the_books():
    assert INIT_SCALES == {"xavier": 1.0, "sigmoid": 1.0, "he": 2.0, "relu": 2.0}
    for name, scale in INIT_SCALES.items():
        assert init_std(name, 50) == math.sqrt(scale / 50)
        assert init_std(name.upper(), 50) == init_std(name, 50)  # any case
    assert init_std("he", 784) == math.sqrt(2 / 784) and init_std("xavier", 100) == 0.1


@pytest.mark.parametrize("value", [0.01, 1, 0, np.float32(0.5)])
def test_a_number_is_the_std_itself(value):
    std = init_std(value, 784)
    assert type(std) is float and std == float(value)


@pytest.mark.parametrize("value, message", [
    ("glorot", "unknown weight init 'glorot'; give a number .* or one of xavier, sigmoid, he, relu"),
    (-0.1, "weight_init_std must be a finite number >= 0, got -0.1"),
    (float("nan"), "weight_init_std must be a finite number >= 0"),
    (float("inf"), "weight_init_std must be a finite number >= 0"),
    (None, "weight_init_std must be a finite number >= 0, got None"),
])
def test_bad_inits_are_config_errors(value, message):
    with pytest.raises(ConfigError, match=message):
        init_std(value, 10)


def test_affine_params_have_the_books_shapes_scales_and_zero_biases():
    params = affine_params(host_rng(0), [784, 300, 100, 10], "he")
    assert list(params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    for i, (n_in, n_out) in enumerate([(784, 300), (300, 100), (100, 10)], start=1):
        w, b = params[f"W{i}"], params[f"b{i}"]
        assert w.shape == (n_in, n_out) and w.dtype == np.float64
        assert b.shape == (n_out,) and b.dtype == np.float64 and not b.any()
        assert w.std() == pytest.approx(math.sqrt(2 / n_in), rel=0.1)  # per layer: its own fan-in
    fixed = affine_params(host_rng(0), [784, 300, 10], 0.01)
    assert fixed["W1"].std() == pytest.approx(0.01, rel=0.05)
    assert fixed["W2"].std() == pytest.approx(0.01, rel=0.1)


def test_one_seed_gives_the_same_weights_and_another_seed_others():
    a, b = (affine_params(host_rng(7), [20, 10, 3], 0.1) for _ in range(2))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(affine_params(host_rng(8), [20, 10, 3], 0.1)["W1"], a["W1"])
    # the weights are std × standard normal draws of the generator, in order
    rng = np.random.default_rng(7)
    np.testing.assert_array_equal(a["W1"], 0.1 * rng.standard_normal((20, 10)))
    np.testing.assert_array_equal(a["W2"], 0.1 * rng.standard_normal((10, 3)))


def test_without_a_seed_each_generator_is_fresh():
    assert not np.array_equal(host_rng(None).standard_normal(8), host_rng(None).standard_normal(8))
