"""Chapter-7 convolution: im2col against the book's window loop, col2im as its adjoint, and the
Convolution and Pooling layers' backprop against jax.grad of their forward pass, on every backend;
the native convolution (a declared backend feature) and the fast pooling path against the book's
im2col reference (ties included), under jax.jit and jax.vmap too."""
import numpy as np
import pytest

from tests.conftest import assert_close
from xpnet.backends import BackendError, available_backends, get_backend
from xpnet.nn.conv import (Convolution, Pooling, col2im, columns_to_image, conv_output_size,
                           im2col, image_columns)
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
    # the same pair laid out per image, (N, C·FH·FW, OH·OW), as Convolution uses it
    per_image = expected.reshape(SHAPE[0], -1, expected.shape[1]).transpose(0, 2, 1)
    assert_close(image_columns(backend.asarray(x, "float64"), *FILTER, stride, pad), per_image)
    c = c.reshape(per_image.shape)
    back = columns_to_image(backend.asarray(c, "float64"), SHAPE, *FILTER, stride, pad)
    np.testing.assert_allclose(np.sum(per_image * c), np.sum(x * backend.to_numpy(back)),
                               rtol=1e-12)


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


# --- the native convolution (a declared backend feature) and the fast pooling path -----------

NUMPY = get_backend("numpy")


def _native_or_skip(backend):
    if backend.native_conv is None:
        pytest.skip(f"the {backend.name} backend declares no native convolution")


def _run(layer, backend, host_params, x, dout, need_dx=True):
    """(y, dx, grads) of `layer` on `backend` in float64, as NumPy arrays (dx None if not asked)."""
    def run(params, x, dout):  # compiled whole on JAX (eager JAX compiles every op: slow)
        y, cache, _ = layer.forward(params, x)
        return (y, *layer.backward(params, cache, dout, need_dx=need_dx))

    params = {k: backend.asarray(v, "float64") for k, v in host_params.items()}
    y, dx, grads = backend.jit(run)(params, *(backend.asarray(a, "float64") for a in (x, dout)))
    return (backend.to_numpy(y), None if dx is None else backend.to_numpy(dx),
            {k: backend.to_numpy(v) for k, v in grads.items()})


def test_every_backend_declares_its_convolution_consistently(backend):
    assert backend.native_conv is None or isinstance(backend.native_conv, str)
    assert not backend.prefers_native_conv or backend.native_conv is not None
    x = backend.asarray(np.zeros((1, 1, 4, 4)), "float64")
    assert Convolution(native=False).native_backend(x) is None
    chosen = Convolution().native_backend(x)
    assert chosen is (backend if backend.prefers_native_conv else None)
    if backend.native_conv is None:
        with pytest.raises(BackendError, match="no native convolution"):
            Convolution(native=True).forward({"W": np.zeros((2, 1, 3, 3)), "b": np.zeros(2)}, x)


@pytest.mark.parametrize("stride, pad", CASES)
def test_native_convolution_equals_the_im2col_reference(backend, stride, pad):
    _native_or_skip(backend)
    rng = np.random.default_rng(20 + stride + 3 * pad)
    host = {"W": rng.standard_normal((4, 3, *FILTER)), "b": rng.standard_normal(4)}
    x = rng.standard_normal(SHAPE)
    out = (2, 4, conv_output_size(7, 3, stride, pad), conv_output_size(5, 2, stride, pad))
    dout = rng.standard_normal(out)
    native = _run(Convolution(stride=stride, pad=pad, native=True), backend, host, x, dout)
    # the reference on NumPy (the same portable code on every backend, tested so above)
    reference = _run(Convolution(stride=stride, pad=pad, native=False), NUMPY, host, x, dout)
    assert native[0].shape == out and native[1].shape == SHAPE
    for got, want in [(native[0], reference[0]), (native[1], reference[1]),
                      (native[2]["W"], reference[2]["W"]), (native[2]["b"], reference[2]["b"])]:
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    _, none, grads = _run(Convolution(stride=stride, pad=pad, native=True), backend, host, x,
                          dout, need_dx=False)
    assert none is None
    np.testing.assert_allclose(grads["W"], reference[2]["W"], rtol=1e-10, atol=1e-10)


def test_native_convolution_under_jit_and_vmap(jax_backend):
    """JAX's native path inside jax.jit(jax.vmap(...)) (as the vectorized numerical gradient runs
    the loss) equals the reference run one example at a time."""
    import jax

    rng = np.random.default_rng(5)
    ws, bs = rng.standard_normal((3, 4, 3, *FILTER)), rng.standard_normal((3, 4))
    xs = rng.standard_normal((3, *SHAPE))
    dout = rng.standard_normal((2, 4, 4, 3))  # stride 2, pad 1 on 7x5 with 3x2 filters

    def one(w, b, x):
        layer, params = Convolution(stride=2, pad=1, native=True), {"W": w, "b": b}
        y, cache, _ = layer.forward(params, x)
        dx, grads = layer.backward(params, cache, jax_backend.asarray(dout, "float64"))
        return y, dx, grads["W"], grads["b"]

    native = jax.jit(jax.vmap(one))(*(jax_backend.asarray(a, "float64") for a in (ws, bs, xs)))
    for i in range(3):
        y, dx, grads = _run(Convolution(stride=2, pad=1, native=False), NUMPY,
                            {"W": ws[i], "b": bs[i]}, xs[i], dout)
        for got, want in zip(native, (y, dx, grads["W"], grads["b"])):
            np.testing.assert_allclose(np.asarray(got[i]), want, rtol=1e-10, atol=1e-10)


def test_need_dx_false_skips_the_input_gradient(backend, monkeypatch):
    """The first layer's input needs no gradient: no col2im (nor its native twin) runs for it."""
    import xpnet.nn.conv as conv

    def refuse(*args, **kwargs):
        raise AssertionError("the input gradient was computed")

    rng = np.random.default_rng(3)
    host = {"W": rng.standard_normal((4, 3, *FILTER)), "b": rng.standard_normal(4)}
    x, dout = rng.standard_normal(SHAPE), rng.standard_normal((2, 4, 5, 4))
    monkeypatch.setattr(conv, "columns_to_image", refuse)
    monkeypatch.setattr(conv, "col2im", refuse)
    for native in (False, None):
        _, dx, grads = _run(Convolution(native=native), backend, host, x, dout, need_dx=False)
        assert dx is None and set(grads) == {"W", "b"}
    with pytest.raises(AssertionError, match="input gradient"):
        _run(Convolution(native=False), backend, host, x, dout)
    _, dx, grads = _run(Pooling(2, 2), backend, {}, x, rng.standard_normal((2, 3, 3, 2)),
                        need_dx=False)
    assert dx is None and grads == {}


#: (pool_h, pool_w, stride, pad): tiling windows on sizes that are and are not multiples,
#: padded, 3x3; then overlapping windows and windows with gaps (the columns_to_image path).
POOLS = [(2, 2, 2, 0), (2, 2, 2, 1), (3, 3, 3, 0), (3, 3, 3, 1), (3, 2, 2, 0), (2, 2, 1, 1),
         (2, 2, 3, 0)]


@pytest.mark.parametrize("pool_h, pool_w, stride, pad", POOLS)
def test_pooling_fast_path_equals_the_book_reference_with_ties(backend, pool_h, pool_w, stride,
                                                               pad):
    """Small integers through ReLU: windows of zeros and of repeated maxima everywhere, so the
    gradient must go to the first maximum (row-major) exactly as the book's argmax sends it."""
    rng = np.random.default_rng(pool_h + 10 * stride + 100 * pad)
    x = np.maximum(np.round(rng.standard_normal((2, 3, 8, 7)) * 1.5), 0.0)
    x[0, 0] = -1.0  # a channel of negative ties: the padding's zeros win there
    out = (2, 3, conv_output_size(8, pool_h, stride, pad), conv_output_size(7, pool_w, stride, pad))
    dout = rng.standard_normal(out)
    fast = _run(Pooling(pool_h, pool_w, stride, pad), backend, {}, x, dout)
    reference = _run(Pooling(pool_h, pool_w, stride, pad, reference=True), NUMPY, {}, x, dout)
    assert fast[0].shape == out and fast[1].shape == x.shape
    np.testing.assert_array_equal(fast[0], reference[0])
    np.testing.assert_array_equal(fast[1], reference[1])
    assert fast[2] == reference[2] == {}
    # every window sends its whole gradient to one place: nothing lost, nothing doubled
    np.testing.assert_allclose(fast[1].sum(), dout.sum() - _padding_share(x, pool_h, pool_w,
                                                                          stride, pad, dout))


def _padding_share(x, pool_h, pool_w, stride, pad, dout):
    """The part of Σ dout whose window's first maximum is a padding zero (it reaches no pixel)."""
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    lost = 0.0
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            win = img[:, :, i * stride:i * stride + pool_h, j * stride:j * stride + pool_w]
            first = win.reshape(*win.shape[:2], -1).argmax(axis=-1)
            r, c = first // pool_w + i * stride, first % pool_w + j * stride
            outside = (r < pad) | (r >= pad + x.shape[2]) | (c < pad) | (c >= pad + x.shape[3])
            lost += (dout[:, :, i, j] * outside).sum()
    return lost


def test_pooling_fast_path_under_jit_and_vmap(jax_backend):
    import jax

    rng = np.random.default_rng(9)
    xs = np.maximum(np.round(rng.standard_normal((3, 2, 3, 6, 5))), 0.0)
    dout = rng.standard_normal((2, 3, 3, 2))

    def run(x):
        layer = Pooling(2, 2, 2)
        y, cache, _ = layer.forward({}, x)
        return y, layer.backward({}, cache, jax_backend.asarray(dout, "float64"))[0]

    fast = jax.jit(jax.vmap(run))(jax_backend.asarray(xs, "float64"))
    for i in range(3):
        y, dx, _ = _run(Pooling(2, 2, 2, reference=True), NUMPY, {}, xs[i], dout)
        np.testing.assert_array_equal(np.asarray(fast[0][i]), y)
        np.testing.assert_array_equal(np.asarray(fast[1][i]), dx)
