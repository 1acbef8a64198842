"""Each path of the structured numerical gradient against the book's loop: dense and sparse
inputs (sample path), BatchNorm nets (column path, its BatchNorm block shortcut and the way
back when the shortcut cannot vouch for a ReLU), conv nets and unknown layers (batched path)."""
import numpy as np
import pytest

from tests.conftest import assert_close
from xpnet.backends import backend_of, dtype_name
from xpnet.nn import (
    Affine,
    BaseLayer,
    BatchNormalization,
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


def _batchnorm_net(backend, second=6, **options):
    net = MultiLayerNetExtend(7, [6, second], 3, weight_init_std=0.6, use_batchnorm=True,
                              backend=backend, seed=6, dtype="float64", **options)
    return net, *net.to_device(*batch(n=8, seed=4))


def _at_the_kink(backend, net, x, entries, key=None):
    """beta2 set so that the second block's ReLU input is 0 at (sample, column) `entries` (one per
    column at most): every perturbation before the block moves them across the kink."""
    second = [k for k, layer in enumerate(net.model.layers) if isinstance(layer, BatchNormalization)][1]
    caches = net.model.forward(net.params, x, True, net.state, key)[1]
    normalised = backend.to_numpy(caches[second][0])
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


def test_entries_dropout_zeroes_are_not_at_risk(backend):
    """ReLU inputs at the kink where Dropout zeroes the output (one in each of 24 columns):
    their sign changes nothing, so they take none of the RISKY places and need no check."""
    net, x, t = _batchnorm_net(backend, second=24, use_dropout=True, dropout_ratio=0.5)
    key = net.next_key()
    masks = backend.to_numpy(net.model.forward(net.params, x, True, net.state, key)[1][7])
    entries = [(int(np.flatnonzero(masks[:, k] == 0)[0]), k) for k in range(24)
               if (masks[:, k] == 0).any()]
    assert len(entries) > 16
    _at_the_kink(backend, net, x, entries, key)
    assert_like_the_book(net.model, net.params, x, t, net.state, key)
    assert _first_block_programs(net) == {True}


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


# ---- regressions of the review: each failed before its fix ----

def _batchnorm_and_plain_nets(backend, dtype="float64", **options):
    return [MultiLayerNetExtend(7, [6, 5], 3, weight_init_std=0.6, use_batchnorm=True,
                                backend=backend, seed=7, dtype=dtype, **options),
            TwoLayerNet(7, 5, 3, weight_init_std=0.8, activation="relu", backend=backend, seed=8,
                        dtype=dtype)]


def test_a_new_weight_decay_of_the_model_is_used(backend):
    """λ is an argument of the weight-decay program, not a value it captured when first built."""
    net = _batchnorm_and_plain_nets(backend)[1]
    x, t = net.to_device(*batch(seed=8))
    for lam in (0.0, 0.5, 0.25):
        net.model.weight_decay = lam
        assert_like_the_book(net.model, net.params, x, t)
    reference = book_loop(net.model, net.params, x, t)  # λ = 0.25 on the model, 0.5 passed
    fast = model_numerical_gradient(net.model, net.params, x, t, weight_decay=0.5)
    w = backend.to_numpy(net.params["W1"])
    assert_close(fast["W1"], backend.to_numpy(reference["W1"]) + 0.25 * w, atol=SAME_AS_LOOP, rtol=0)


@pytest.mark.parametrize("label_dtype", ["uint8"])
def test_small_integer_labels_do_not_wrap(backend, label_dtype):
    """120 samples of 3 classes: flat indices n·C + t reach 359, beyond uint8 and int8."""
    x, t = batch(n=120, seed=9)
    for net in _batchnorm_and_plain_nets(backend):
        xd = backend.asarray(x, "float64")
        td = backend.asarray(t.astype(label_dtype))
        assert_like_the_book(net.model, net.params, xd, td, net.state)


def test_the_step_takes_the_dtype_of_each_parameter(backend):
    """float32 inputs and float64 params: h = 1e-4 in float64, as the book adds it to the param
    (a float32 step is 1e-4·(1 + 1e-9): 3e-8 relative error)."""
    x, t = batch(n=8, zeros=0.4, seed=10)
    x = x.astype(np.float32)  # values exact in float64 too
    for net in _batchnorm_and_plain_nets(backend):
        if backend.name == "torch":
            pytest.skip("torch multiplies no float32 by float64 matrices (the book's loop neither)")
        assert_like_the_book(net.model, net.params, backend.asarray(x, "float32"),
                             backend.asarray(t), net.state)


def test_float32_batchnorm_nets_match_the_float32_book_loop(backend):
    """The BatchNorm block's allowances for rounding scale with the dtype's epsilon. In float32
    each loss is rounded to about 1e-7, so a difference over 2h = 2e-4 to about 1e-3."""
    net = _batchnorm_and_plain_nets(backend, "float32", use_dropout=True, dropout_ratio=0.3)[0]
    x, t = net.to_device(*batch(n=9, zeros=0.4, seed=11))
    key = net.next_key()
    fast = model_numerical_gradient(net.model, net.params, x, t, net.state, key)
    reference = book_loop(net.model, net.params, x, t, net.state, key)
    for name in net.params:
        assert dtype_name(fast[name].dtype) == "float32"
        assert_close(fast[name], backend.to_numpy(reference[name]), atol=2e-2, rtol=0)


class FeatureScale(BaseLayer):
    """x·s, s one factor per feature: elementwise, with a parameter of its own."""

    elementwise = True

    def __init__(self, name):
        self.name = name

    def forward(self, params, x, ctx=None):
        return x * params[self.name], x, {}


@pytest.mark.parametrize("batchnorm", [True, False], ids=["column", "sample"])
def test_elementwise_layers_with_parameters(backend, batchnorm):
    """On the column path a column of all the samples goes through the layers after the Affine:
    a per-feature factor must not be broadcast along the samples (N = D = 6 hid the mismatch)."""
    layers = [Affine("W1", "b1")] + ([BatchNormalization("g", "be", "m", "v")] if batchnorm else []) \
        + [FeatureScale("s"), Relu(), Affine("W2", "b2")]
    model = Sequential(layers, SoftmaxWithLoss())
    rng = np.random.default_rng(12)
    params = {"W1": rng.standard_normal((7, 6)), "b1": rng.standard_normal(6),
              "s": rng.standard_normal(6) + 1, "W2": rng.standard_normal((6, 3)),
              "b2": rng.standard_normal(3)}
    if batchnorm:
        params.update(g=rng.random(6) + 0.5, be=rng.standard_normal(6))
    params = {name: backend.asarray(value, "float64") for name, value in params.items()}
    plan = gradient_plan(model, params)
    assert [plan[k][0] for k in (0, 1)] == (["batched"] * 2 if batchnorm else ["sample", "batched"])
    x, t = batch(n=6, seed=12)
    assert_like_the_book(model, params, backend.asarray(x, "float64"), backend.asarray(t),
                         model.init_state(params))


def test_a_batchnorm_on_images_is_planned_as_batched():
    """The plan reports the path taken: BatchNorm on 4-D conv outputs goes the batched way."""
    from xpnet.nn import Convolution

    model = Sequential([Convolution("W1", "b1"), BatchNormalization("g", "be", "m", "v"), Relu(),
                        Affine("W2", "b2")], SoftmaxWithLoss())
    params = {name: np.ones(2) for name in ("W1", "b1", "g", "be", "W2", "b2")}
    assert gradient_plan(model, params, 4)[1] == ("batched", ["g", "be"])
    assert gradient_plan(model, params, 4)[3] == ("sample", ["W2", "b2"])


class Linear(BaseLayer):
    """x·L, a matrix parameter in a layer the structured paths do not know."""

    def __init__(self, name):
        self.name = name

    def forward(self, params, x, ctx=None):
        return x @ params[self.name], x, {}


@pytest.mark.parametrize("case", ["batchnorm-block", "sparse", "vmapped-layer"])
def test_memory_follows_chunk_bytes(case):
    """Peak memory (NumPy, tracemalloc) with 256 KiB chunks: a few chunks, plus the forward pass
    and the host bookkeeping. Before, arrays of the whole batch did not count: the BatchNorm
    block's two fixed N·D'·D products (11 MiB here), the sparse mode's gather of every
    non-zero input's row (9 MiB), the perturbed copies of a parameter run once each (6 MiB)."""
    import tracemalloc

    rng = np.random.default_rng(13)
    state = None
    if case == "batchnorm-block":  # the first layer's block ends in an Affine 64 -> 64
        net = MultiLayerNetExtend(20, [64, 64, 64], 10, use_batchnorm=True, seed=0,
                                  dtype="float64", backend="numpy")
        model, params, state = net.model, net.params, net.state
        x, t = rng.random((100, 20)), rng.integers(0, 10, 100)
    elif case == "sparse":  # digits-like: half the inputs 0, ten distinct values
        net = TwoLayerNet(300, 64, 10, seed=0, dtype="float64", backend="numpy")
        model, params = net.model, net.params
        x = np.round(rng.random((100, 300)), 1)
        x[x < 0.5] = 0.0
        t = rng.integers(0, 10, 100)
    else:  # 1600 entries of L, each copy of it run through the layer
        model = Sequential([Linear("L"), Relu(), Affine("W2", "b2")], SoftmaxWithLoss())
        params = {"L": rng.standard_normal((40, 40)), "W2": rng.standard_normal((40, 3)),
                  "b2": rng.standard_normal(3)}
        x, t = rng.random((4, 40)), rng.integers(0, 3, 4)
    tracemalloc.start()
    try:
        model_numerical_gradient(model, params, x, t, state, chunk_bytes=256 << 10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # measured after: 2.1, 1.6 and 0.8 MiB
