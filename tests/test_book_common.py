"""The served `common.functions`, `common.gradient`, `common.util` and `common.layers`
(xpnet/book/served/common/) on every backend: each against the book's NumPy formula written
here, or backprop against the served `numerical_gradient` used the book's way (perturbing the
array a layer holds, in place); what they hand back is writable NumPy of the book's dtype; the
global `np.random` draws are the book's; in-place updates of a layer's W reach it everywhere."""
import numpy as np
import pytest

from xpnet.book.served.common import functions as F
from xpnet.book.served.common import gradient, util
from xpnet.book.served.common import layers as L
from xpnet.book.session import session

TOL = 1e-12


def _host(a, dtype=np.float64):
    """`a` is what the book's NumPy hands back: a writable NumPy array of `dtype`."""
    assert isinstance(a, np.ndarray) and a.flags.writeable and a.dtype == dtype, (type(a), a)
    return a


def _close(actual, expected, tol=TOL):
    """`actual` is writable NumPy float64 and equals the NumPy formula's `expected`."""
    np.testing.assert_allclose(_host(actual), expected, rtol=tol, atol=tol)


def _backprop_close(backprop, numerical):
    """Backprop agrees with central differences (h = 1e-4, float64) to 1e-7 on average."""
    assert np.abs(_host(backprop) - numerical).mean() < 1e-7


def _grad(forward, array, dout):
    """The book's idiom: ∂Σ(forward()·dout)/∂array, `forward` reading `array` elsewhere."""
    return _host(gradient.numerical_gradient(lambda _: np.sum(forward() * dout), array))


def test_activations_are_the_books_formulas(backend):
    x = np.random.default_rng(0).standard_normal((3, 4))
    x[0, 0] = 0.0
    s = 1 / (1 + np.exp(-x))
    e = np.exp(x - x.max(axis=1, keepdims=True))
    with session(backend):
        _close(F.sigmoid(x), s)
        _close(F.sigmoid_grad(x), (1 - s) * s)
        _close(F.relu(x), np.maximum(0, x))
        assert not np.signbit(F.relu(x)).any()  # 0.0 for negatives, as np.maximum gives
        _close(F.relu_grad(x), (x > 0).astype(float))
        _close(F.softmax(x), e / e.sum(axis=1, keepdims=True))
        v = [1.0, 2.0, 3.0]  # a list, one sample
        _close(F.softmax(v), np.exp(v) / np.exp(v).sum())
        step = _host(F.step_function(x), np.array(x > 0, dtype=int).dtype)
        assert np.array_equal(step, x > 0)
        assert F.identity_function(x) is x
        one = F.sigmoid(1.0)  # a NumPy scalar, as 1 / (1 + np.exp(-1.0))
        assert type(one) is np.float64 and abs(one - 1 / (1 + np.exp(-1.0))) < TOL
        _host(F.sigmoid(x.astype(np.float32)), np.float32)   # float32 stays float32,
        _host(F.softmax(np.array([[1, 2], [3, 1]])))          # integers compute in float64


def test_losses_are_the_books_formulas(backend):
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((4, 5))
    y = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    labels = np.array([0, 3, 1, 4])
    one_hot = np.eye(5)[labels]
    book = -np.sum(np.log(y[np.arange(4), labels] + 1e-7)) / 4
    with session(backend):
        for loss in (F.cross_entropy_error(y, labels), F.cross_entropy_error(y, one_hot),
                     F.softmax_loss(scores, labels), F.softmax_loss(scores, one_hot)):
            assert type(loss) is np.float64 and abs(loss - book) < TOL
        one = F.cross_entropy_error(y[1], one_hot[1])  # one sample, 1-D
        assert abs(one - -np.log(y[1, 3] + 1e-7)) < TOL
        assert abs(F.cross_entropy_error(y[1], 3) - one) < TOL
        soft = np.array([0.1, 0.2, 0.0, 0.6, 0.1])  # rows as many as y's: the book takes argmax
        assert abs(F.cross_entropy_error(y[1], soft) - one) < TOL
        for mse in (F.mean_squared_error(y, one_hot), F.sum_squared_error(list(y), one_hot)):
            assert type(mse) is np.float64 and abs(mse - 0.5 * np.sum((y - one_hot) ** 2)) < TOL


def test_numerical_gradient_perturbs_the_array_in_place(backend):
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((3, 4)), np.array([0, 2, 1])
    W, b = 0.3 * rng.standard_normal((4, 3)), np.zeros(3)
    with session(backend):
        v = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
        _close(gradient.numerical_gradient(lambda a: np.sum(a ** 2), v), 2 * v, 1e-7)
        affine, last = L.Affine(W, b), L.SoftmaxWithLoss()
        last.forward(affine.forward(x), t)
        affine.backward(last.backward())
        kept = W.copy()
        numerical = gradient.numerical_gradient(lambda _: last.forward(affine.forward(x), t), W)
        _backprop_close(affine.dW, numerical)
        assert np.array_equal(W, kept) and affine.W is W  # restored in place


def test_affine_and_its_in_place_weights(backend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 1, 2, 3)).astype(np.float32)  # images flattened, as the book's
    W, b = rng.standard_normal((6, 3)), rng.standard_normal(3)
    dout = rng.standard_normal((2, 3))
    with session(backend):
        layer = L.Affine(W, b)
        y = layer.forward(x)
        _close(y, x.reshape(2, -1) @ W + b, 1e-6)  # float32 x times float64 W: float64
        assert layer.original_x_shape == x.shape and layer.x.shape == (2, 6)
        dx = layer.backward(dout)
        _close(dx, (dout @ W.T).reshape(x.shape))
        x64 = x.astype(np.float64)
        _backprop_close(layer.dW, _grad(lambda: layer.forward(x64), W, dout))
        _backprop_close(layer.db, _grad(lambda: layer.forward(x64), b, dout))
        _backprop_close(dx, _grad(lambda: layer.forward(x64), x64, dout))
        W -= 0.1  # the book's SGD: params[key] -= lr * grad[key]
        b += 1.0
        _close(layer.forward(x64), y - 0.1 * x64.reshape(2, -1).sum(axis=1, keepdims=True) + 1.0,
               1e-6)


def test_relu_sigmoid_and_softmax_with_loss(backend):
    rng = np.random.default_rng(4)
    x, dout = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    t = np.array([1, 0, 3])
    with session(backend):
        relu = L.Relu()
        _close(relu.forward(x), np.maximum(0, x))
        assert np.array_equal(relu.mask, x <= 0)
        _close(relu.backward(dout), np.where(x > 0, dout, 0.0))
        sigmoid = L.Sigmoid()
        s = sigmoid.forward(x)
        _close(s, 1 / (1 + np.exp(-x)))
        _close(sigmoid.backward(dout), dout * (1 - s) * s)
        last = L.SoftmaxWithLoss()
        scores = 0.1 * x
        loss = last.forward(scores, t)
        y = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
        assert type(loss) is np.float64 and loss == last.loss
        assert abs(loss - -np.log(y[np.arange(3), t] + 1e-7).mean()) < TOL
        _close(last.y, y)
        dx = last.backward()
        _close(dx, (y - np.eye(4)[t]) / 3)
        _backprop_close(dx, gradient.numerical_gradient(lambda _: last.forward(scores, t), scores))
        assert abs(L.SoftmaxWithLoss().forward(scores, np.eye(4)[t]) - loss) < TOL  # one-hot t


def test_dropout_draws_the_books_mask_from_the_global_generator(backend):
    x, dout = np.arange(1.0, 13.0).reshape(3, 4), np.full((3, 4), 2.0)
    with session(backend):
        layer = L.Dropout(0.5)
        np.random.seed(0)
        y = layer.forward(x)
        np.random.seed(0)
        mask = np.random.rand(3, 4) > 0.5
        assert np.array_equal(layer.mask, mask) and 0 < mask.sum() < 12
        _close(y, x * mask)
        _close(layer.backward(dout), dout * mask)
        _close(layer.forward(x, train_flg=False), x * 0.5)


def test_batch_normalization(backend):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 2, 1, 3))  # 4-D: normalised per feature of the (4, 6) view
    gamma, beta = rng.uniform(0.5, 1.5, 6), rng.standard_normal(6)
    dout = rng.standard_normal(x.shape)
    flat = x.reshape(4, -1)
    mu, var = flat.mean(axis=0), flat.var(axis=0)
    with session(backend):
        layer = L.BatchNormalization(gamma, beta)
        y = layer.forward(x)
        _close(y, (gamma * (flat - mu) / np.sqrt(var + 1e-6) + beta).reshape(x.shape))
        _close(layer.running_mean, 0.1 * mu)
        _close(layer.running_var, 0.1 * var)
        dx = layer.backward(dout)
        assert dx.shape == x.shape
        train = L.BatchNormalization(gamma, beta)  # the numerical gradients move its statistics
        _backprop_close(dx, _grad(lambda: train.forward(x), x, dout))
        _backprop_close(layer.dgamma, _grad(lambda: train.forward(x), gamma, dout))
        _backprop_close(layer.dbeta, _grad(lambda: train.forward(x), beta, dout))
        mean, var2 = layer.running_mean.copy(), layer.running_var.copy()
        test = layer.forward(x, train_flg=False)
        _close(test, (gamma * (flat - mean) / np.sqrt(var2 + 1e-6) + beta).reshape(x.shape))
        assert np.array_equal(layer.running_mean, mean)  # test mode leaves them alone
        layer.forward(x)
        _close(layer.running_mean, 0.9 * mean + 0.1 * mu)


def _windows(x, fh, fw, stride, pad):
    """(N, C, OH, OW, FH, FW): every window of the zero-padded images, by loops."""
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    oh, ow = (img.shape[2] - fh) // stride + 1, (img.shape[3] - fw) // stride + 1
    out = np.empty(x.shape[:2] + (oh, ow, fh, fw))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = img[:, :, i * stride:i * stride + fh, j * stride:j * stride + fw]
    return out


def test_convolution_and_pooling(backend):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 2, 3, 3))
    W, b = rng.standard_normal((3, 2, 2, 2)), rng.standard_normal(3)
    with session(backend):
        conv = L.Convolution(W, b, stride=1, pad=1)
        y = conv.forward(x)
        _close(y, np.einsum("ncijyx,fcyx->nfij", _windows(x, 2, 2, 1, 1), W) + b[:, None, None],
               1e-10)
        dout = rng.standard_normal(y.shape)
        dx = conv.backward(dout)
        _backprop_close(dx, _grad(lambda: conv.forward(x), x, dout))
        _backprop_close(conv.dW, _grad(lambda: conv.forward(x), W, dout))
        _backprop_close(conv.db, _grad(lambda: conv.forward(x), b, dout))
        for pool in (L.Pooling(2, 2, stride=2), L.Pooling(2, 2)):  # the book's default stride 1
            p = pool.forward(x)
            _close(p, _windows(x, 2, 2, pool.stride, 0).max(axis=(4, 5)))
            dout = rng.standard_normal(p.shape)
            _backprop_close(pool.backward(dout), _grad(lambda: pool.forward(x), x, dout))


def test_im2col_col2im_and_conv_output_size(backend):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    with session(backend):
        col = util.im2col(x, 2, 3, stride=2, pad=1)  # float64, as the book's np.zeros
        rows = _windows(x.astype(np.float64), 2, 3, 2, 1).transpose(0, 2, 3, 1, 4, 5)
        _close(col, rows.reshape(-1, 3 * 2 * 3))
        c = rng.standard_normal(col.shape)
        back = util.col2im(c, x.shape, 2, 3, stride=2, pad=1)
        assert back.shape == x.shape
        assert abs(np.sum(col * c) - np.sum(x * _host(back))) < 1e-9  # col2im is the adjoint
    assert util.conv_output_size(28, 5) == 24.0 and util.conv_output_size(6, 3, 2) == 2.5


def test_shuffle_dataset_draws_the_books_permutation():
    x, t = np.arange(20.0).reshape(10, 2), np.arange(10) * 3
    np.random.seed(3)
    xs, ts = util.shuffle_dataset(x, t)
    np.random.seed(3)
    order = np.random.permutation(10)
    assert np.array_equal(xs, x[order]) and np.array_equal(ts, t[order])
    assert not np.array_equal(order, np.arange(10))


def test_smooth_curve_keeps_the_length():
    losses = list(np.linspace(2.0, 0.5, 40) + 0.1 * np.random.default_rng(8).standard_normal(40))
    smooth = util.smooth_curve(losses)
    assert len(smooth) == len(losses)
    assert np.std(np.diff(smooth)) < np.std(np.diff(losses))  # smoother
    np.testing.assert_allclose(util.smooth_curve([1.5] * 20), 1.5, rtol=TOL)


def test_outputs_follow_the_session_backend():
    """The backend is read at call time: one layer object serves two sessions in turn."""
    x, W, b = np.ones((1, 2)), np.ones((2, 2)), np.zeros(2)
    layer = L.Affine(W, b)
    for name in ("numpy", "array-api-strict"):
        with session(name) as run:
            _close(layer.forward(x), np.full((1, 2), 2.0))
            assert layer._step[1] is run.backend
    with pytest.raises(RuntimeError):
        L.Relu().backward(x)
