"""Chapter-7 convolution: im2col against the book's window loop, col2im as its adjoint, and the
Convolution and Pooling layers' backprop against jax.grad of their forward pass, on every backend."""
import numpy as np
import pytest

from tests.conftest import assert_close
from xpnet.backends import available_backends, get_backend
from xpnet.nn.conv import Convolution, Pooling, col2im, conv_output_size, im2col
from xpnet.nn.layers import Layer

#: Odd image sizes and a non-square filter, so rows and columns cannot be mixed up unnoticed.
SHAPE, FILTER = (2, 3, 7, 5), (3, 2)
CASES = [(1, 0), (1, 1), (2, 0), (2, 1)]  # (stride, pad)


def reference_im2col(x, fh, fw, stride, pad):
    """The layout by the definition: one row per (n, oh, ow) window, its entries (c, fh, fw)."""
    n, c, h, w = x.shape
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    rows = np.zeros((n, oh, ow, c, fh, fw))
    for i in range(n):
        for y in range(oh):
            for z in range(ow):
                rows[i, y, z] = img[i, :, y * stride:y * stride + fh, z * stride:z * stride + fw]
    return rows.reshape(n * oh * ow, c * fh * fw)


@pytest.mark.parametrize("stride, pad", CASES)
def test_im2col_matches_the_window_loop_and_col2im_is_its_adjoint(backend, stride, pad):
    rng = np.random.default_rng(stride * 10 + pad)
    x = rng.standard_normal(SHAPE)
    expected = reference_im2col(x, *FILTER, stride, pad)
    col = im2col(backend.asarray(x, "float64"), *FILTER, stride, pad)
    assert tuple(col.shape) == expected.shape
    assert_close(col, expected)
    c = rng.standard_normal(expected.shape)
    back = col2im(backend.asarray(c, "float64"), SHAPE, *FILTER, stride, pad)
    assert tuple(back.shape) == SHAPE
    # <im2col(x), c> = <x, col2im(c)>
    np.testing.assert_allclose(np.sum(expected * c), np.sum(x * backend.to_numpy(back)), rtol=1e-12)


def test_col2im_sums_overlapping_windows(backend):
    """Ones through col2im count how many windows cover each pixel (3x3, stride 1: 1, 2, 3, …)."""
    ones = backend.asarray(np.ones((9, 9)), "float64")
    counts = np.minimum(np.minimum(np.arange(1, 6), np.arange(5, 0, -1)), 3)
    assert_close(col2im(ones, (1, 1, 5, 5), 3, 3), np.outer(counts, counts)[None, None])


def test_conv_output_size_and_shape_errors():
    assert conv_output_size(28, 5) == 24
    assert conv_output_size(7, 3, stride=2, pad=1) == 4
    with pytest.raises(ValueError, match="does not fit"):
        conv_output_size(2, 5)
    with pytest.raises(ValueError, match="stride"):
        conv_output_size(7, 3, stride=0)
    x = np.zeros((3, 7, 5))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        im2col(x, 3, 3)
    with pytest.raises(ValueError, match="col has shape"):
        col2im(np.zeros((4, 4)), (1, 1, 5, 5), 3, 3)
    params = {"W": np.zeros((4, 2, 3, 3)), "b": np.zeros(4)}
    with pytest.raises(ValueError, match="channels"):
        Convolution().forward(params, np.zeros(SHAPE))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        Pooling(2, 2).forward({}, x)
    with pytest.raises(ValueError, match="stride"):
        Convolution(stride=0)
    assert isinstance(Convolution(), Layer) and isinstance(Pooling(2, 2), Layer)
    assert Convolution("W1", "b1").weight == "W1" and Pooling(2, 2).weight is None


@pytest.fixture(scope="module")
def jax_backend():
    ok, reason = available_backends()["jax"]
    if not ok:
        pytest.skip(f"jax unavailable: {reason}")
    return get_backend("jax")  # switches on float64


_ORACLES = {}  # (layer, stride, pad) -> jax.grad's answer, shared by the backends


def _oracle(jax_backend, layer, host_params, x, dout):
    """(dx, grads) of Σ forward(params, x) · dout by jax.grad: the layer's backward must match."""
    key = repr(layer)
    if key not in _ORACLES:
        _ORACLES[key] = _jax_grad(jax_backend, layer, host_params, x, dout)
    return _ORACLES[key]


def _jax_grad(jax_backend, layer, host_params, x, dout):
    import jax

    params = {k: jax_backend.asarray(v, "float64") for k, v in host_params.items()}
    xj, dj = jax_backend.asarray(x, "float64"), jax_backend.asarray(dout, "float64")

    def objective(params, x):
        return (layer.forward(params, x)[0] * dj).sum()

    grads, dx = jax.jit(jax.grad(objective, argnums=(0, 1)))(params, xj)
    return np.asarray(dx), {k: np.asarray(v) for k, v in grads.items()}


def _check_backprop(backend, jax_backend, layer, host_params, x, out_shape, seed):
    dout = np.random.default_rng(seed).standard_normal(out_shape)
    params = {k: backend.asarray(v, "float64") for k, v in host_params.items()}
    y, cache, updates = layer.forward(params, backend.asarray(x, "float64"))
    assert tuple(y.shape) == out_shape and updates == {}
    dx, grads = layer.backward(params, cache, backend.asarray(dout, "float64"))
    dx_ref, grads_ref = _oracle(jax_backend, layer, host_params, x, dout)
    assert set(grads) == set(grads_ref)
    assert_close(dx, dx_ref, atol=1e-10, rtol=1e-10)
    for name in grads:
        assert_close(grads[name], grads_ref[name], atol=1e-10, rtol=1e-10)
    none, same = layer.backward(params, cache, backend.asarray(dout, "float64"), need_dx=False)
    assert none is None and set(same) == set(grads)


@pytest.mark.parametrize("stride, pad", CASES)
def test_convolution_backprop_matches_jax_grad(backend, jax_backend, stride, pad):
    rng = np.random.default_rng(stride + 3 * pad)
    host = {"W": rng.standard_normal((4, 3, *FILTER)), "b": rng.standard_normal(4)}
    x = rng.standard_normal(SHAPE)
    layer = Convolution("W", "b", stride=stride, pad=pad)
    out = (2, 4, conv_output_size(7, 3, stride, pad), conv_output_size(5, 2, stride, pad))
    _check_backprop(backend, jax_backend, layer, host, x, out, seed=1)
    # the forward pass is a correlation by the definition
    y = backend.to_numpy(layer.forward({k: backend.asarray(v, "float64") for k, v in host.items()},
                                       backend.asarray(x, "float64"))[0])
    direct = reference_im2col(x, *FILTER, stride, pad) @ host["W"].reshape(4, -1).T + host["b"]
    np.testing.assert_allclose(y, direct.reshape(2, out[2], out[3], 4).transpose(0, 3, 1, 2),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride, pad", CASES)
def test_pooling_backprop_matches_jax_grad(backend, jax_backend, stride, pad):
    x = np.random.default_rng(7 + stride + pad).standard_normal(SHAPE)
    layer = Pooling(3, 2, stride=stride, pad=pad)
    out = (2, 3, conv_output_size(7, 3, stride, pad), conv_output_size(5, 2, stride, pad))
    _check_backprop(backend, jax_backend, layer, {}, x, out, seed=2)


def test_pooling_sends_the_gradient_to_the_first_maximum(backend):
    x = np.array([[[[1.0, 3.0, 5.0, 5.0],
                    [3.0, 0.0, 5.0, 5.0],
                    [2.0, 2.0, 0.0, 0.0],
                    [2.0, 2.0, 0.0, 0.0]]]])
    layer = Pooling(2, 2, stride=2)
    y, cache, _ = layer.forward({}, backend.asarray(x, "float64"))
    assert_close(y, [[[[3.0, 5.0], [2.0, 0.0]]]])
    dx, grads = layer.backward({}, cache, backend.asarray([[[[1.0, 2.0], [3.0, 4.0]]]], "float64"))
    assert grads == {}
    assert_close(dx, [[[[0.0, 1.0, 2.0, 0.0],  # row-major first of each window's maxima
                        [0.0, 0.0, 0.0, 0.0],
                        [3.0, 0.0, 4.0, 0.0],
                        [0.0, 0.0, 0.0, 0.0]]]])
