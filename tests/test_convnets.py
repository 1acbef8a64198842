"""The book's conv nets: backprop against central differences, the same numbers on every backend,
DeepConvNet's shapes and a training step, and SimpleConvNet's memory on an MNIST-sized batch."""
import tracemalloc

import numpy as np
import pytest

from tests.conftest import assert_close
from xpnet.backends import available_backends, get_backend
from xpnet.errors import ConfigError
from xpnet.nn.convnets import DeepConvNet, SimpleConvNet
from xpnet.nn.gradcheck import gradient_check

#: The book's gradient-check net (gradient_check.py of chapter 7), small enough for every backend.
SMALL = {"input_dim": (1, 10, 10), "conv_param": {"filter_num": 10, "filter_size": 3, "pad": 0,
                                                  "stride": 1}, "hidden_size": 10, "output_size": 10}


def small_net(backend, std=0.01, seed=0):
    return SimpleConvNet(**SMALL, weight_init_std=std, backend=backend, seed=seed, dtype="float64")


def test_simple_convnet_backprop_matches_the_numerical_gradient():
    # std 0.1 and this seed keep every ReLU input and pooling window's runner-up more than h·|x|
    # away from a kink, where central differences (not backprop) would be off (seed 1 is not)
    net = small_net("numpy", std=0.1, seed=0)
    x, t = np.random.default_rng(0).random((1, 1, 10, 10)), np.array([1])
    result = gradient_check(net, x, t, repeat=1)
    assert result.passed and not any(e.kinks for e in result.errors), result.errors


def test_the_book_check_net_passes_with_its_kinks_checked_at_the_smaller_step():
    """The book's weight_init_std 0.01 puts ReLU inputs within 1e-4 of 0: the entries whose ±1e-4
    step crosses one fail at 1e-4 and pass at 1e-6, and are counted."""
    net = small_net("numpy", seed=0)
    x, t = np.random.default_rng(0).random((1, 1, 10, 10)), np.array([1])
    result = gradient_check(net, x, t, repeat=1)
    assert result.passed, result.errors
    assert sum(e.kinks for e in result.errors) > 0
    assert all(e.max_rel < 1e-5 for e in result.errors)


def test_simple_convnet_agrees_across_backends(backend):
    x = np.random.default_rng(3).random((2, 1, 10, 10))
    t = np.array([1, 7])
    reference, net = small_net("numpy", std=0.1), small_net(backend, std=0.1)
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert tuple(net.params["W1"].shape) == (10, 1, 3, 3) and tuple(net.params["W2"].shape) == (160, 10)
    for name, value in reference.params.items():
        np.testing.assert_array_equal(backend.to_numpy(net.params[name]), value)  # same seed
    assert_close(net.loss(x, t), reference.loss(x, t), atol=1e-10, rtol=1e-10)
    grads, expected = net.gradient(x, t), reference.gradient(x, t)
    assert set(grads) == set(expected)
    for name in expected:
        assert_close(grads[name], expected[name], atol=1e-10, rtol=1e-10)
    assert net.accuracy(x, t) == reference.accuracy(x, t)


def test_simple_convnet_defaults_config_and_errors():
    net = SimpleConvNet()
    shapes = {name: tuple(value.shape) for name, value in net.params.items()}
    assert shapes == {"W1": (30, 1, 5, 5), "b1": (30,), "W2": (4320, 100), "b2": (100,),
                      "W3": (100, 10), "b3": (10,)}
    assert net.dtype == "float32" and net.model.decayed_weights() == ["W1", "W2", "W3"]
    config = net.config()
    assert config["class"] == "SimpleConvNet" and config["hidden_size"] == 100
    assert "SimpleConvNet(" in repr(net)
    with pytest.raises(ConfigError, match="input_dim"):
        SimpleConvNet(input_dim=(28, 28))
    with pytest.raises(ConfigError, match="does not fit"):
        SimpleConvNet(input_dim=(1, 3, 3))
    with pytest.raises(ConfigError, match="filter_num"):
        SimpleConvNet(conv_param={"filter_num": 0})


def test_simple_convnet_gradient_memory_on_an_mnist_batch():
    net = SimpleConvNet(backend="numpy")
    x = np.random.default_rng(0).random((100, 1, 28, 28), dtype=np.float32)
    t = np.arange(100) % 10
    tracemalloc.start()
    net.gradient(x, t)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # (NumPy reports its buffers to tracemalloc: the columns alone are 100·24·24·25 floats)
    assert 5 * 2**20 < peak < 200 * 2**20, f"peak {peak / 2**20:.0f} MB"


DEEP_SHAPES = {"W1": (16, 1, 3, 3), "W2": (16, 16, 3, 3), "W3": (32, 16, 3, 3), "W4": (32, 32, 3, 3),
               "W5": (64, 32, 3, 3), "W6": (64, 64, 3, 3), "W7": (1024, 50), "W8": (50, 10)}


@pytest.mark.parametrize("name", ["numpy", "jax"])
def test_deep_convnet_builds_and_takes_a_gradient_step(name):
    ok, reason = available_backends()[name]
    if not ok:
        pytest.skip(f"backend {name} unavailable: {reason}")
    backend = get_backend(name)
    net = DeepConvNet(backend=backend)
    assert list(net.params) == [f"{p}{i}" for i in range(1, 9) for p in "Wb"]
    for weight, shape in DEEP_SHAPES.items():
        assert tuple(net.params[weight].shape) == shape
        assert tuple(net.params["b" + weight[1:]].shape) == (shape[0] if len(shape) == 4 else shape[1],)
    fan_in = np.prod(DEEP_SHAPES["W3"][1:])  # He init: std √(2 / (16·3·3))
    assert abs(float(np.std(backend.to_numpy(net.params["W3"]))) - np.sqrt(2 / fan_in)) < 0.01
    assert net.model.random and net.model.decayed_weights() == list(DEEP_SHAPES)
    x, t = net.to_device(np.random.default_rng(0).random((2, 1, 28, 28)), np.array([3, 8]))
    step = backend.jit(net.model.loss_and_grad)  # one compiled program on JAX (seconds, not tens)
    loss, grads = step(net.params, x, t, None, net.next_key())
    assert np.isfinite(float(backend.to_numpy(loss)))
    assert all(tuple(grads[k].shape) == tuple(v.shape) for k, v in net.params.items())
    updated = {k: backend.to_numpy(v - 0.01 * grads[k]) for k, v in net.params.items()}
    assert all(np.all(np.isfinite(v)) for v in updated.values())
    assert not np.array_equal(updated["W1"], backend.to_numpy(net.params["W1"]))


def test_fit_trains_a_conv_net_on_images_and_names_flat_ones():
    from xpnet.errors import DataError
    from xpnet.nn import Adam
    from xpnet.nn.training import fit

    rng = np.random.default_rng(0)
    x, t = rng.random((40, 1, 10, 10)), rng.integers(0, 10, 40)
    net = SimpleConvNet(input_dim=(1, 10, 10), conv_param={"filter_num": 4, "filter_size": 3,
                                                           "pad": 0, "stride": 1},
                        hidden_size=10, backend="numpy", seed=0)
    result = fit(net, Adam(), (x, t), (x, t), epochs=2, batch_size=10, progress=False)
    assert [r.epoch for r in result.epochs] == [1, 2] and np.isfinite(result.batch_losses).all()
    with pytest.raises(DataError, match=r"images must have shape \(N, 1, 10, 10\), got \(40, 100\); "
                                        r"load them with flatten=False"):
        fit(net, Adam(), (x.reshape(40, -1), t), (x, t), epochs=1, batch_size=10, progress=False)


def test_the_cli_trains_the_books_conv_nets_as_they_are(capsys):
    from xpnet.cli import main

    status = main(["train", "--model", "simple-conv", "--weight-decay", "0.1", "--dataset", "mnist-5k"])
    err = capsys.readouterr().err
    assert status == 2 and "--weight-decay is an option of the two-layer and multi-layer nets" in err


def test_the_cli_leaves_out_deep_convs_final_dropout_only_when_asked(capsys):
    from xpnet.cli import _parser, main
    from xpnet.cli.options import build_net

    assert main(["train", "--model", "simple-conv", "--no-final-dropout", "--dataset", "mnist-5k"]) == 2
    assert "--final-dropout is an option of deep-conv" in capsys.readouterr().err
    for flags, final in (([], True), (["--final-dropout"], True), (["--no-final-dropout"], False)):
        args = _parser().parse_args(["train", "--model", "deep-conv", *flags])
        net, description = build_net(args, (1, 28, 28), get_backend("numpy"), "float32")
        assert net.final_dropout is final and f"final_dropout={final}" in description
        assert sum(type(layer).__name__ == "Dropout" for layer in net.model.layers) == 1 + final
