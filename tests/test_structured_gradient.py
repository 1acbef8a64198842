"""The fast numerical gradient computes what the book's one-element-at-a-time loop computes."""
import numpy as np
import pytest

from tests.conftest import assert_close
from xpnet.backends import backend_of, dtype_name
from xpnet.nn import (
    Affine,
    BaseLayer,
    BatchNormalization,
    Relu,
    Sequential,
    Sigmoid,
    SoftmaxWithLoss,
    TwoLayerNet,
    numerical_gradient,
)
from xpnet.nn.sample_gradient import bucket as numerical_bucket
from xpnet.nn.sample_gradient import distinct_perturbations
from xpnet.nn.structured_gradient import gradient_plan, structured_numerical_gradient

#: Both compute (L(θ+h) − L(θ−h)) / 2h; only the rounding of L differs (about 1e-16 · L / 2h).
SAME_AS_LOOP = 1e-10


def book_loop(model, params, x, t):
    """The book's reference: every element perturbed in turn, the whole loss recomputed (on the
    params' backend; a copy is perturbed, the params are left as they are)."""
    grads = {}
    for name, value in params.items():
        def loss_of(array, name=name):
            return model.loss({**params, name: array}, x, t)
        grads[name] = numerical_gradient(loss_of, backend_of(value).xp.asarray(value, copy=True))
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
        assert fast[name].shape == net.params[name].shape and dtype_name(fast[name].dtype) == "float64"
        assert backend.owns(fast[name])
        assert_close(fast[name], backend.to_numpy(reference[name]), atol=SAME_AS_LOOP, rtol=0)


class Square(BaseLayer):
    """x², not declared elementwise (the Layer contract's default)."""

    def forward(self, params, x, ctx=None):
        return x * x, x, {}


class ElementwiseSquare(Square):
    elementwise = True


@pytest.mark.parametrize("layers, sizes, seeds", [
    # three Affine layers: the rank-1 update is followed by whole layers on single rows
    ([Affine("W1", "b1"), Relu(), Affine("W2", "b2"), Sigmoid(), Affine("W3", "b3")], [7, 5, 4, 3], (3, 4)),
    # the structured gradient reads the declared `elementwise`: any such layer works
    ([Affine("W1", "b1"), ElementwiseSquare(), Affine("W2", "b2")], [7, 4, 3], (8, 9)),
], ids=["three-affine", "declared-elementwise"])
def test_deeper_nets_match_the_book_loop(backend, layers, sizes, seeds):
    model = Sequential(layers, SoftmaxWithLoss())
    rng = np.random.default_rng(seeds[0])
    params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"W{i}"] = backend.asarray(rng.standard_normal((n_in, n_out)), "float64")
        params[f"b{i}"] = backend.asarray(rng.standard_normal((n_out,)), "float64")
    assert {path for path, _ in gradient_plan(model, params).values()} == {"sample"}
    x, t = sparse_batch(seed=seeds[1])
    x, t = backend.asarray(x, "float64"), backend.asarray(t)
    fast = structured_numerical_gradient(model, params, x, t, chunk_bytes=512)
    reference = book_loop(model, params, x, t)
    for name in params:
        assert backend.owns(fast[name])
        assert_close(fast[name], backend.to_numpy(reference[name]), atol=SAME_AS_LOOP, rtol=0)


def test_what_takes_which_path():
    """Affine, BatchNorm, Dropout and elementwise layers have paths of their own; other layers
    (here a square not declared elementwise) send the Affine before them to the batched path;
    a loss other than SoftmaxWithLoss, or a parameter read by two layers, is refused."""
    model = Sequential([Affine("W1", "b1"), Square(), Affine("W2", "b2")], SoftmaxWithLoss())
    params = {name: np.ones((2, 2) if name[0] == "W" else 2) for name in ("W1", "b1", "W2", "b2")}
    assert gradient_plan(model, params) == {0: ("batched", ["W1", "b1"]), 2: ("sample", ["W2", "b2"])}
    model = Sequential([Affine("W1", "b1"), BatchNormalization("g", "b", "m", "v")], SoftmaxWithLoss())
    assert gradient_plan(model, {name: 1 for name in ("W1", "b1", "g", "b")}) == {
        0: ("column", ["W1", "b1"]), 1: ("column", ["g", "b"])}
    tied = Sequential([Affine("W1", "b1"), Relu(), Affine("W1", "b2")], SoftmaxWithLoss())
    assert gradient_plan(tied, {"W1": 1, "b1": 1, "b2": 1}) is None
    with pytest.raises(ValueError, match="SoftmaxWithLoss and parameters each read by one layer"):
        structured_numerical_gradient(tied, {"W1": np.ones((2, 2)), "b1": np.ones(2),
                                             "b2": np.ones(2)}, np.ones((1, 2)), np.zeros(1, int))


def test_generic_gradient_is_vectorized_on_jax_and_equals_the_loop(backend):
    rng = np.random.default_rng(5)
    weights = backend.asarray(rng.standard_normal((3, 4)), "float64")
    x = backend.asarray(rng.standard_normal((3, 4)), "float64")

    xp = backend.xp

    def f(w):
        return xp.sum(xp.sin(w) * weights) + xp.sum(w ** 3)

    expected = backend.to_numpy(xp.cos(x) * weights + 3 * x ** 2)
    for chunk_size in (5, 256):  # 12 elements: a padded last chunk, and a single chunk
        g = numerical_gradient(f, x, chunk_size=chunk_size)
        assert backend.owns(g) and dtype_name(g.dtype) == "float64"
        assert_close(g, expected, atol=1e-7, rtol=0)


def test_untraceable_function_falls_back_to_the_loop_on_jax():
    import xpnet

    if not xpnet.available_backends()["jax"][0]:
        pytest.skip("jax unavailable")
    jax_backend = xpnet.get_backend("jax")
    x = jax_backend.asarray([1.0, 2.0], "float64")
    # float() of a traced value cannot be vmapped; the one-at-a-time path still works.
    g = numerical_gradient(lambda w: float((w ** 2).sum()), x)
    assert_close(g, [2.0, 4.0], atol=1e-6, rtol=0)


def test_multi_layer_net_with_weight_decay_matches_the_book_loop(backend):
    from xpnet.nn import MultiLayerNet

    x, t = sparse_batch(seed=6)
    net = MultiLayerNet(7, [5, 4], 3, weight_init_std=0.8, weight_decay_lambda=0.3, backend=backend,
                        seed=1, dtype="float64")
    fast = net.numerical_gradient(x, t, chunk_bytes=256)
    reference = book_loop(net.model, net.params, *net.to_device(x, t))
    for name in net.params:
        assert_close(fast[name], backend.to_numpy(reference[name]), atol=SAME_AS_LOOP, rtol=0)


def test_repeated_values_in_a_sample_are_computed_once_and_counted_for_each_input(backend):
    """Pixels of equal value in one sample share one loss difference; each weight still gets its own."""
    x = np.array([[0.5, 0.5, 0.0, 0.25, 0.5], [0.25, 0.0, 0.25, 0.25, 1.0]])
    t = np.array([1, 0])
    net = TwoLayerNet(5, 3, 2, weight_init_std=0.7, backend=backend, seed=4, dtype="float64")
    samples, values, features, pair = distinct_perturbations(x, chunk=4, pad=False)
    # sample 0: 0.25, 0.5 and the bias input 1; sample 1: 0.25, and 1 (a pixel and the bias);
    # padded with value-0 pairs to two whole chunks of 4
    assert samples.tolist() == [[0, 0, 0, 1], [1, 0, 0, 0]]
    assert values.tolist() == [[0.25, 0.5, 1.0, 0.25], [1.0, 0.0, 0.0, 0.0]]
    assert sorted(zip(pair.tolist(), features.tolist())) == [
        (0, 3), (1, 0), (1, 1), (1, 4), (2, 5), (3, 0), (3, 2), (3, 3), (4, 4), (4, 5)]
    fast = net.numerical_gradient(x, t)
    reference = book_loop(net.model, net.params, *net.to_device(x, t))
    for name in net.params:
        assert_close(fast[name], backend.to_numpy(reference[name]), atol=SAME_AS_LOOP, rtol=0)


def test_jax_compiles_each_program_once_across_batches():
    """Batches differ in their numbers of non-zero inputs and distinct values; padded to a few
    sizes per octave, the forward pass and each Affine layer's program compile once for all."""
    import xpnet
    from xpnet.nn import sample_gradient
    from xpnet.nn import structured_gradient as numerical

    if not xpnet.available_backends()["jax"][0]:
        pytest.skip("jax unavailable")
    net = TwoLayerNet(7, 4, 3, backend="jax", seed=0, dtype="float64")
    x, t = sparse_batch(n=8, seed=0)
    sizes, padded = set(), set()
    for zeros in range(1, 4):  # one more zero input in each batch: different sizes
        x[1, :] = np.linspace(0.1, 0.7, 7)
        x[1, :zeros] = 0.0
        net.numerical_gradient(x, t, chunk_bytes=2048)
        samples, _, features, _ = sample_gradient.distinct_perturbations(x, 8, pad=True)
        sizes.add(int((x != 0).sum()))
        padded.add((samples.shape, features.shape))
    assert len(sizes) == 3 and len(padded) == 1  # three sizes, one bucket
    compiled = numerical._COMPILED[net.model]
    # the digits-like input takes the sparse path; the hidden layer's dense sigmoids the dense one
    assert sorted(str(part) for _, part in compiled) == [
        "('sample', 0, 'sparse', 2048)", "('sample', 2, 'dense', 2048)", "decay", "forward",
        "split"]
    assert all(fn._cache_size() == 1 for fn in compiled.values())


def test_buckets_are_four_per_octave():
    assert [numerical_bucket(n) for n in (1, 5, 8, 9, 10, 11, 13, 17, 33, 41, 1000)] == \
        [1, 5, 8, 10, 10, 12, 14, 20, 40, 48, 1024]


def test_jax_computes_other_nets_gradients_in_one_program_compiled_once():
    """A net the structured paths refuse (here one weight read by two layers) goes through
    `numerical_gradient` array by array: on JAX one vmapped program for all its parameters,
    compiled once per net and reused by later calls, with the numbers of the book's loop."""
    import xpnet
    from xpnet.nn.structured_gradient import _VECTORIZED, model_numerical_gradient

    if not xpnet.available_backends()["jax"][0]:
        pytest.skip("jax unavailable")
    backend = xpnet.get_backend("jax")
    model = Sequential([Affine("W", "b1"), Sigmoid(), Affine("W", "b2")], SoftmaxWithLoss(),
                       weight_decay=0.1)
    rng = np.random.default_rng(0)
    params = {"W": backend.asarray(rng.standard_normal((7, 7)), "float64"),
              "b1": backend.asarray(rng.standard_normal(7), "float64"),
              "b2": backend.asarray(rng.standard_normal(7), "float64")}
    for seed in range(2):  # two batches of one shape: one program, traced once
        x, t = sparse_batch(n=8, classes=7, seed=seed)
        x, t = backend.asarray(x, "float64"), backend.asarray(t)
        fast = model_numerical_gradient(model, params, x, t)
    programs = _VECTORIZED[model]
    assert len(programs) == 1 and all(fn.program._cache_size() == 1 for fn in programs.values())
    assert list(fast) == list(params)
    reference = book_loop(model, params, x, t)
    for name in params:
        assert dtype_name(fast[name].dtype) == "float64"
        assert_close(fast[name], backend.to_numpy(reference[name]), atol=SAME_AS_LOOP, rtol=0)


def test_memory_stays_bounded_for_the_books_net():
    """The issue's bound is 2 GB for TwoLayerNet(784, 50, 10) on a batch of 100; NumPy reports its
    allocations to tracemalloc, so the peak of every array made during the call is measured."""
    import tracemalloc

    from xpnet.data import load_mnist

    (x, t), _ = load_mnist(dataset="mnist-5k")
    net = TwoLayerNet(784, 50, 10, seed=0, dtype="float64", backend="numpy")
    x, t = net.to_device(x[:100], t[:100])
    tracemalloc.start()
    try:
        net.numerical_gradient(x, t)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert 1 << 20 < peak < 256 << 20  # measured 10 MiB with the default 8 MiB chunks
