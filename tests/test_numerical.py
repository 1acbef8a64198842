"""The fast numerical gradient computes what the book's one-element-at-a-time loop computes."""
import numpy as np
import pytest

from tests.conftest import assert_close
from xpnet.nn import Affine, Relu, Sigmoid, SoftmaxWithLoss, Sequential, TwoLayerNet, numerical_gradient
from xpnet.nn.numerical import structured_numerical_gradient, supports_structured_gradient

#: Both compute (L(θ+h) − L(θ−h)) / 2h; only the rounding of L differs (about 1e-16 · L / 2h).
SAME_AS_LOOP = 1e-10


def book_loop(model, params, x, t):
    """The book's reference: every element perturbed in turn, the whole loss recomputed."""
    grads = {}
    for name, value in params.items():
        def loss_of(array, name=name):
            return model.loss({**params, name: array}, x, t)
        grads[name] = numerical_gradient(loss_of, value.copy())
    return grads


def sparse_batch(n=5, features=7, classes=3, seed=0):
    """Inputs with many exact zeros, like MNIST pixels (the structured path skips them)."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, features))
    x[x < 0.5] = 0.0
    return x, rng.integers(0, classes, n)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
@pytest.mark.parametrize("one_hot", [False, True], ids=["labels", "one-hot"])
@pytest.mark.parametrize("chunk_bytes", [64, 1 << 20], ids=["tiny-chunks", "one-chunk"])
def test_two_layer_net_matches_the_book_loop(backend, activation, one_hot, chunk_bytes):
    x, t = sparse_batch()
    if one_hot:
        t = np.eye(3)[t]
    net = TwoLayerNet(7, 4, 3, weight_init_std=0.8, activation=activation, backend=backend, seed=2,
                      dtype="float64")
    fast = net.numerical_gradient(x, t, chunk_bytes=chunk_bytes)
    xd, td = net.to_device(x, t)
    reference = book_loop(net.model, net.params, xd, td)
    assert list(fast) == list(net.params)
    for name in reference:
        assert fast[name].shape == net.params[name].shape and fast[name].dtype == np.float64
        assert_close(fast[name], reference[name], atol=SAME_AS_LOOP, rtol=0)


def test_deeper_net_matches_the_book_loop(backend):
    """Three Affine layers: the rank-1 update is followed by whole layers on single rows."""
    model = Sequential([Affine("W1", "b1"), Relu(), Affine("W2", "b2"), Sigmoid(), Affine("W3", "b3")],
                       SoftmaxWithLoss())
    rng = np.random.default_rng(3)
    shapes = {"W1": (7, 5), "b1": (5,), "W2": (5, 4), "b2": (4,), "W3": (4, 3), "b3": (3,)}
    params = {k: backend.asarray(rng.standard_normal(s), "float64") for k, s in shapes.items()}
    x, t = sparse_batch(seed=4)
    x, t = backend.asarray(x, "float64"), backend.asarray(t)
    fast = structured_numerical_gradient(model, params, x, t, chunk_bytes=512)
    reference = book_loop(model, params, x, t)
    for name in params:
        assert_close(fast[name], reference[name], atol=SAME_AS_LOOP, rtol=0)


def test_only_supported_structures_are_accepted():
    class Square:  # not elementwise-declared
        def forward(self, params, x):
            return x * x, x

    model = Sequential([Affine("W1", "b1"), Square(), Affine("W2", "b2")], SoftmaxWithLoss())
    assert not supports_structured_gradient(model)
    with pytest.raises(ValueError, match="Affine layers, elementwise activations"):
        structured_numerical_gradient(model, {}, np.ones((1, 2)), np.zeros(1, int))


def test_generic_gradient_is_vectorized_on_jax_and_equals_the_loop(backend):
    rng = np.random.default_rng(5)
    weights = backend.asarray(rng.standard_normal((3, 4)), "float64")
    x = backend.asarray(rng.standard_normal((3, 4)), "float64")

    def f(w):
        return (backend.xp.sin(w) * weights).sum() + (w ** 3).sum()

    expected = backend.to_numpy(backend.xp.cos(x) * weights + 3 * x ** 2)
    for chunk_size in (5, 256):  # 12 elements: a padded last chunk, and a single chunk
        assert_close(numerical_gradient(f, x, chunk_size=chunk_size), expected, atol=1e-7, rtol=0)


def test_untraceable_function_falls_back_to_the_loop_on_jax():
    import xpnet

    if not xpnet.available_backends()["jax"][0]:
        pytest.skip("jax unavailable")
    jax_backend = xpnet.get_backend("jax")
    x = jax_backend.asarray([1.0, 2.0], "float64")
    # float() of a traced value cannot be vmapped; the one-at-a-time path still works.
    g = numerical_gradient(lambda w: float((w ** 2).sum()), x)
    assert_close(g, [2.0, 4.0], atol=1e-6, rtol=0)
