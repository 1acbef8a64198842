"""The conv benchmark compares like with like: the book-style NumPy net (bench/book_convnet.py)
and the PyTorch peer start from xpnet's initial weights and compute what xpnet computes, and the
conv model's FLOP count is the one the report's bound divides. Correctness, not speed."""
import numpy as np
import pytest

import book_convnet
from conv_runs import conv_epoch_flops, conv_net, host_params, torch_layers
from impls import MODELS

from xpnet import get_backend
from xpnet.nn import make_optimizer
from xpnet.nn.conv import col2im, im2col

SPEC = MODELS["C"]
SAME = 1e-10  # float64


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(1)
    return rng.random((6, *SPEC["input_dim"])), rng.integers(0, 10, 6)


@pytest.mark.parametrize("stride, pad", [(1, 0), (2, 1)])
def test_book_im2col_and_col2im_equal_xpnets(stride, pad):
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6))
    col = book_convnet.im2col(x, 3, 2, stride, pad)
    np.testing.assert_array_equal(col, im2col(x, 3, 2, stride, pad))
    np.testing.assert_allclose(book_convnet.col2im(col, x.shape, 3, 2, stride, pad),
                               col2im(col, x.shape, 3, 2, stride, pad), atol=SAME, rtol=0)


def test_the_book_style_net_has_xpnets_loss_and_gradient(batch):
    x, t = batch
    net = conv_net(SPEC, "numpy", dtype="float64")
    book = book_convnet.SimpleConvNet(host_params(SPEC, np.float64))
    expected = net.gradient(x, t)
    got = book.gradient(x, t)
    assert book.last_loss == pytest.approx(float(net.loss(x, t)), abs=SAME, rel=0)
    assert set(got) == set(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], np.asarray(expected[name]), atol=SAME, rtol=0,
                                   err_msg=name)


def test_the_book_style_adam_steps_as_xpnets(batch):
    x, t = batch
    net = conv_net(SPEC, "numpy", dtype="float64")
    optimizer = make_optimizer("adam", lr=SPEC["lr"])
    book = book_convnet.SimpleConvNet(host_params(SPEC, np.float64))
    book_adam = book_convnet.Adam(lr=SPEC["lr"])
    for step in range(3):
        part = slice(2 * step, 2 * step + 2)
        optimizer.update(net.params, net.gradient(x[part], t[part]))
        book_adam.update(book.params, book.gradient(x[part], t[part]))
    for name, value in net.params.items():
        np.testing.assert_allclose(book.params[name], np.asarray(value), atol=SAME, rtol=0,
                                   err_msg=name)


def test_the_pytorch_peer_starts_from_xpnets_weights(batch):
    torch = pytest.importorskip("torch")
    x, _ = batch
    x = x.astype(np.float32)
    net = conv_net(SPEC, get_backend("numpy"))
    with torch.no_grad():
        scores = torch.nn.Sequential(*torch_layers(SPEC))(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(scores, np.asarray(net.predict(x)), atol=1e-6, rtol=1e-4)


def test_the_conv_models_flops():
    # per batch of 100: the convolution 2·100·24·24·30·1·5·5 forward and again for its filters,
    # 3 products 2·100·4320·100 for the first Affine and 3 of 2·100·100·10 for the second
    per_batch = 2 * 86_400_000 + 3 * 86_400_000 + 3 * 200_000
    assert conv_epoch_flops(SPEC, 600, 100) == 600 * per_batch == 259_560_000_000
