"""Each path of the structured numerical gradient against the book's loop: dense and sparse
inputs (sample path), BatchNorm nets (column path, its BatchNorm block shortcut and the way
back when the shortcut cannot vouch for a ReLU), conv nets and unknown layers (batched path)."""
import numpy as np
import pytest

from tests.conftest import assert_close
from xpnet.backends import backend_of
from xpnet.nn import (
    Affine,
    BaseLayer,
    MultiLayerNetExtend,
    Relu,
    Sequential,
    SimpleConvNet,
    SoftmaxWithLoss,
    TwoLayerNet,
    numerical_gradient,
)
from xpnet.nn import sample_gradient
from xpnet.nn import structured_gradient as numerical
from xpnet.nn.structured_gradient import gradient_plan, model_numerical_gradient

#: Both compute (L(θ+h) − L(θ−h)) / 2h; only the rounding of L differs (about 1e-16 · L / 2h).
SAME_AS_LOOP = 1e-10


def book_loop(model, params, x, t, state=None, key=None):
    """The book's reference in training mode: `numerical_gradient` of the whole loss (same state
    and key) as a function of every parameter laid end to end, so every element is perturbed in
    turn (on JAX: one vmapped program for all, compiled once)."""
    xp = backend_of(x).xp
    names = list(params)
    sizes = [int(np.prod(params[name].shape)) for name in names]
    flat = xp.concat([xp.reshape(params[name], (-1,)) for name in names])

    def unflatten(vector):
        parts, start = {}, 0
        for name, size in zip(names, sizes):
            parts[name] = xp.reshape(vector[start:start + size], params[name].shape)
            start += size
        return parts

    grad = numerical_gradient(lambda v: model.loss(unflatten(v), x, t, True, state, key), flat)
    return unflatten(grad)


def assert_like_the_book(model, params, x, t, state=None, key=None, **options):
    fast = model_numerical_gradient(model, params, x, t, state, key, **options)
    reference = book_loop(model, params, x, t, state, key)
    assert list(fast) == list(params)
    for name in params:
        assert fast[name].shape == params[name].shape
        assert_close(fast[name], backend_of(x).to_numpy(reference[name]), atol=SAME_AS_LOOP, rtol=0)
    return fast


def batch(n=6, features=7, classes=3, zeros=0.0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, features))
    x[x < zeros] = 0.0
    return x, rng.integers(0, classes, n)


def test_the_mode_follows_the_data():
    dense, _ = batch(n=20, features=30)
    assert sample_gradient.choose(dense, 16, False)[0] == "dense"
    sparse, _ = batch(n=20, features=30, zeros=0.8)
    sparse[sparse > 0] = np.round(sparse[sparse > 0], 1)  # few distinct values, like digits
    mode, pairs = sample_gradient.choose(sparse, 16, False)
    assert mode == "sparse" and pairs[0].size < sparse.size


@pytest.mark.parametrize("mode", ["dense", "sparse"])
@pytest.mark.parametrize("one_hot", [False, True], ids=["labels", "one-hot"])
def test_both_modes_match_the_book_loop(backend, monkeypatch, mode, one_hot):
    """Forced either way, on inputs with some zeros and repeats: the same numbers."""
    distinct = sample_gradient.distinct_perturbations
    monkeypatch.setattr(sample_gradient, "choose", lambda x2, chunk, pad: (
        (mode, None) if mode == "dense" else ("sparse", distinct(x2, chunk, pad))))
    x, t = batch(zeros=0.3, seed=1)
    x[0, :3] = x[0, 3]  # repeated values in a sample
    if one_hot:
        t = np.eye(3)[t]
    net = TwoLayerNet(7, 5, 3, weight_init_std=0.8, activation="relu", backend=backend, seed=3,
                      dtype="float64")
    xd, td = net.to_device(x, t)
    for chunk_bytes in (64, 1 << 20):  # a unit per chunk, and one chunk
        assert_like_the_book(net.model, net.params, xd, td, chunk_bytes=chunk_bytes)


@pytest.mark.parametrize("activation, dropout, one_hot",
                         [("relu", True, True), ("sigmoid", False, False)])
def test_batchnorm_nets_match_the_book_loop(backend, activation, dropout, one_hot):
    """Affine → BatchNorm → activation (→ Dropout) blocks: the column path, with the BatchNorm
    block's shortcut where a ReLU follows; one-hot rows or labels; weight decay."""
    net = MultiLayerNetExtend(7, [6, 5], 3, activation=activation, weight_init_std=0.6,
                              weight_decay_lambda=0.1, use_batchnorm=True, use_dropout=dropout,
                              dropout_ratio=0.3, backend=backend, seed=4, dtype="float64")
    assert {path for path, _ in gradient_plan(net.model, net.params).values()} == {"column", "sample"}
    x, t = batch(n=9, zeros=0.4, seed=2)
    xd, td = net.to_device(x, np.eye(3)[t] if one_hot else t)
    assert_like_the_book(net.model, net.params, xd, td, net.state, net.next_key(), chunk_bytes=4096)


def test_three_batchnorm_blocks_match_the_book_loop(backend):
    """After the first block's shortcut the rest of the net (another BatchNorm block) runs on the
    stacked copies of the batch."""
    net = MultiLayerNetExtend(7, [6, 5, 4], 3, weight_init_std=0.6, use_batchnorm=True,
                              backend=backend, seed=5, dtype="float64")
    xd, td = net.to_device(*batch(n=8, seed=3))
    assert_like_the_book(net.model, net.params, xd, td, net.state)


def _batchnorm_net(backend, second=6):
    net = MultiLayerNetExtend(7, [6, second], 3, weight_init_std=0.6, use_batchnorm=True,
                              backend=backend, seed=6, dtype="float64")
    return net, *net.to_device(*batch(n=8, seed=4))


def _at_the_kink(backend, net, x, entries):
    """beta2 set so that the second block's ReLU input is 0 at (sample, column) `entries` (one per
    column at most): every perturbation before the block moves them across the kink."""
    normalised = backend.to_numpy(net.model.forward(net.params, x, True, net.state)[1][4][0])
    beta = backend.to_numpy(net.params["beta2"]).copy()
    gamma = backend.to_numpy(net.params["gamma2"])
    for n, k in entries:
        beta[k] = -gamma[k] * normalised[n, k]
    net.params["beta2"] = backend.asarray(beta, "float64")


def _first_block_programs(net):
    """The column programs built for the layers before the second BatchNorm block (0 and 1):
    with the shortcut (True), and without it (False) when it could not vouch for a ReLU."""
    return {part[3] for _, part in numerical._COMPILED[net.model]
            if part[0] == "column" and part[1] < 2}


def test_a_relu_input_at_zero_is_recomputed_exactly(backend):
    """One input of the second block's ReLU at its kink: one of the entries the shortcut
    recomputes exactly for every perturbation; no way back needed."""
    net, x, t = _batchnorm_net(backend)
    _at_the_kink(backend, net, x, [(3, 2)])
    assert_like_the_book(net.model, net.params, x, t, net.state)
    assert _first_block_programs(net) == {True}


def test_when_the_shortcut_cannot_vouch_for_a_relu_the_layer_is_recomputed(backend):
    """More inputs of the second block's ReLU at the kink than the shortcut recomputes (one in
    each of 24 columns, RISKY = 16): it cannot vouch for the others, so the layers before the
    block take the long way, with the book's numbers."""
    from xpnet.nn.batchnorm_block import RISKY

    net, x, t = _batchnorm_net(backend, second=24)
    assert RISKY < 24
    _at_the_kink(backend, net, x, [(k % 8, k) for k in range(24)])
    assert_like_the_book(net.model, net.params, x, t, net.state)
    assert _first_block_programs(net) == {True, False}


def test_a_conv_net_matches_the_book_loop(backend):
    """The convolution takes the batched path (stacked copies through ReLU, pooling, Affine),
    the Affine layers after it the sample path."""
    net = SimpleConvNet(input_dim=(1, 6, 6), conv_param={"filter_num": 2, "filter_size": 3,
                                                         "pad": 1, "stride": 1},
                        hidden_size=5, output_size=3, weight_init_std=0.3, backend=backend, seed=0,
                        dtype="float64")
    assert gradient_plan(net.model, net.params)[0] == ("batched", ["W1", "b1"])
    rng = np.random.default_rng(5)
    x, t = net.to_device(rng.random((4, 1, 6, 6)), rng.integers(0, 3, 4))
    for chunk_bytes in (64, 1 << 20):
        assert_like_the_book(net.model, net.params, x, t, chunk_bytes=chunk_bytes)


class Scale(BaseLayer):
    """x·s with a parameter vector s: a layer the structured paths do not know."""

    def __init__(self, name):
        self.name = name

    def forward(self, params, x, ctx=None):
        return x * params[self.name], x, {}


class Square(BaseLayer):
    """x², not declared elementwise."""

    def forward(self, params, x, ctx=None):
        return x * x, x, {}


def test_unknown_layers_take_the_batched_path(backend):
    """A parameter layer xpnet does not know is run once per perturbed copy (vmap); an Affine
    followed by a layer that is not declared elementwise perturbs stacked copies of its output."""
    model = Sequential([Affine("W1", "b1"), Square(), Scale("s"), Relu(), Affine("W2", "b2")],
                       SoftmaxWithLoss())
    rng = np.random.default_rng(7)
    params = {"W1": rng.standard_normal((7, 4)), "b1": rng.standard_normal(4),
              "s": rng.standard_normal(4), "W2": rng.standard_normal((4, 3)),
              "b2": rng.standard_normal(3)}
    params = {name: backend.asarray(value, "float64") for name, value in params.items()}
    assert gradient_plan(model, params) == {0: ("batched", ["W1", "b1"]), 2: ("batched", ["s"]),
                                            4: ("sample", ["W2", "b2"])}
    x, t = batch(seed=5)
    assert_like_the_book(model, params, backend.asarray(x, "float64"), backend.asarray(t),
                         chunk_bytes=256)


def test_jax_compiles_the_batchnorm_nets_programs_once():
    """Two batches of digits-like inputs with different zero columns: one program per layer."""
    import xpnet

    if not xpnet.available_backends()["jax"][0]:
        pytest.skip("jax unavailable")
    net = MultiLayerNetExtend(7, [6, 5], 3, use_batchnorm=True, use_dropout=True,
                              backend="jax", seed=0, dtype="float64")
    key = net.next_key()
    for seed in range(3):
        x, t = batch(n=8, zeros=0.5, seed=seed)
        x[:, seed] = 0.0  # a zero column: fewer distinct columns
        model_numerical_gradient(net.model, net.params, *net.to_device(x, t), net.state, key)
    compiled = numerical._COMPILED[net.model]
    assert all(fn._cache_size() == 1 for fn in compiled.values())


@pytest.mark.parametrize("case", ["dense", "batchnorm"])
def test_memory_stays_bounded(case):
    """Peak memory of the real-size nets on a batch of 100 (NumPy reports its allocations to
    tracemalloc): the issue's bound is 1 GB."""
    import tracemalloc

    from xpnet.data import load_mnist

    if case == "dense":
        net = TwoLayerNet(784, 50, 10, seed=0, dtype="float64", backend="numpy")
        x, t = np.random.default_rng(0).random((100, 784)), np.arange(100) % 10
    else:
        net = MultiLayerNetExtend(784, [100, 100], 10, use_batchnorm=True, seed=0,
                                  dtype="float64", backend="numpy")
        (x, t), _ = load_mnist(dataset="mnist-5k")
        x, t = x[:100], t[:100]
        net.params["W1"] = net.params["W1"][:, :20]  # the first block narrowed: a quicker test
        net.params.update({name: net.params[name][:20] for name in ("b1", "gamma1", "beta1")})
        net.params["W2"] = net.params["W2"][:20]
    x, t = net.to_device(x, t)
    tracemalloc.start()
    try:
        model_numerical_gradient(net.model, net.params, x, t, net.model.init_state(net.params))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 256 << 20
