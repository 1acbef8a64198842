"""xpnet/nn/stacked.py on its own: nets stacked and trained side by side (vmapped in one program
on JAX, a loop elsewhere) follow, step for step, each net trained alone by the plain train step;
`keep_nets` keeps the rows asked for, in that order; `train_stacked` cuts and stops where its
callback says. In float64, so that agreement is to rounding."""
import numpy as np
import pytest

from tests.conftest import assert_close
from xpnet.nn import MultiLayerNet, MultiLayerNetExtend, make_optimizer
from xpnet.nn.batching import epoch_orders
from xpnet.nn.stacked import keep_nets, stack, stacked_programs, train_stacked
from xpnet.nn.training import initial_train_state, make_train_step

SEED, CHUNKS, BATCH = 5, 3, 20
TIGHT = {"rtol": 1e-10, "atol": 1e-12}
on_numpy_and_jax = pytest.mark.parametrize("backend", ["numpy", "jax"], indirect=True)


def data(n=120, features=12, classes=4):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, features)), rng.integers(0, classes, n).astype(np.int32)


def plain_nets(backend, seeds=(1, 2, 3), lambdas=(0.1, 0.01, 0.001)):
    """Nets of one shape differing in initial weights and λ (the model is the same)."""
    return [MultiLayerNet(12, [10, 10], 4, weight_decay_lambda=lam, backend=backend, seed=s,
                          dtype="float64") for s, lam in zip(seeds, lambdas)]


def extended_net(backend):
    """BatchNorm and Dropout: a net state and random keys that must follow the step number."""
    return MultiLayerNetExtend(12, [10], 4, use_batchnorm=True, use_dropout=True, dropout_ratio=0.2,
                               backend=backend, seed=4, dtype="float64")


def with_lr(optimizer, state, lr):
    return state._replace(opt_state=optimizer.with_hyper(state.opt_state, lr=lr))


def train_alone(backend, net, optimizer, state, x, t, orders, chunks):
    """The reference: the plain train step, one net, batch after batch; (state, losses, counts)."""
    step = make_train_step(net.model, optimizer, backend, backend.key(SEED))
    losses = []
    for c in range(chunks):
        order = orders[c, ...]
        for i in range(order.shape[0]):
            state, loss = step(state, x, t, order, i)
            losses.append(loss)
    count = net.model.correct_count(state.params, x, t, state.net_state)
    return state, [backend.to_numpy(loss) for loss in losses], backend.to_numpy(count)


def setup(backend):
    """Two groups: three plain nets under SGD, each with its own lr and λ (one program on JAX,
    vmapped), and one BatchNorm/Dropout net under Adam; the data and batch orders on the device."""
    x, t = data()
    x, t = backend.asarray(x, "float64"), backend.asarray(t)
    orders = backend.asarray(epoch_orders(SEED, x.shape[0], BATCH, CHUNKS), backend.index_dtype)
    sgd, adam = make_optimizer("sgd"), make_optimizer("adam")
    nets = plain_nets(backend)
    states = [with_lr(sgd, initial_train_state(n, sgd), lr)
              for n, lr in zip(nets, (0.3, 0.1, 0.03))]
    ext = extended_net(backend)
    groups = [(nets, sgd, states), ([ext], adam, [initial_train_state(ext, adam)])]
    return x, t, orders, groups


@on_numpy_and_jax
def test_nets_trained_together_equal_nets_trained_alone(backend):
    x, t, orders, groups = setup(backend)
    models = [(nets[0].model, optimizer) for nets, optimizer, _ in groups]
    chunk, count = (backend.jit(fn) for fn in stacked_programs(backend, models, SEED))
    stacks = [stack(backend, states) for _, _, states in groups]
    seen = []

    def after(c, losses, counts):
        seen.append((c, [backend.to_numpy(a) for a in losses],
                     [backend.to_numpy(a) for a in counts]))

    final = train_stacked(backend, chunk, stacks, x, t, orders, [(x, t)], after)
    assert [c for c, _, _ in seen] == list(range(CHUNKS))
    for g, (nets, optimizer, states) in enumerate(groups):
        for k, (net, state) in enumerate(zip(nets, states)):
            alone, losses, right = train_alone(backend, net, optimizer, state, x, t, orders, CHUNKS)
            together = backend.tree_map(lambda a, k=k: a[k, ...], final[g])
            for name in alone.params:
                assert_close(together.params[name], alone.params[name], **TIGHT)
            for name in alone.net_state:  # BatchNorm's running mean and variance
                assert_close(together.net_state[name], alone.net_state[name], **TIGHT)
            assert int(backend.to_numpy(together.step)) == CHUNKS * orders.shape[1]
            stacked_losses = np.concatenate([chunk_losses[g][:, k] for _, chunk_losses, _ in seen])
            assert_close(stacked_losses, losses, **TIGHT)  # (steps, nets) per chunk
            assert seen[-1][2][g][k, 0] == right  # the counts after the last chunk
    assert [backend.to_numpy(c) for c in count(final, [(x, t)])][0].shape == (3, 1)


@on_numpy_and_jax
def test_keep_nets_keeps_the_rows_asked_for_in_that_order(backend):
    sgd = make_optimizer("sgd")
    nets = plain_nets(backend, seeds=(1, 2, 3, 4), lambdas=(0.4, 0.3, 0.2, 0.1))
    states = [initial_train_state(n, sgd) for n in nets]
    kept = keep_nets(backend, stack(backend, states), [3, 1])
    expected = stack(backend, [states[3], states[1]])
    assert kept.step.shape == (2,)
    backend.tree_map(lambda a, b: assert_close(a, b, rtol=0, atol=0), kept, expected)
    assert_close(kept.weight_decay, [0.1, 0.3], rtol=0, atol=0)


def test_stack_takes_states_of_another_backend(backend):
    """The search makes its states with numpy on the host and stacks them on its backend."""
    from xpnet.backends import get_backend

    sgd = make_optimizer("sgd")
    host = [initial_train_state(n, sgd) for n in plain_nets(get_backend("numpy"))]
    here = [initial_train_state(n, sgd) for n in plain_nets(backend)]
    backend.tree_map(lambda a, b: assert_close(a, b, rtol=0, atol=0),
                     stack(backend, host), stack(backend, here))


@on_numpy_and_jax
def test_train_stacked_cuts_the_stack_and_stops_where_after_says(backend):
    """after chunk 0: keep nets 2 and 0 (in that order); after chunk 1: no rows, stop there."""
    x, t, orders, groups = setup(backend)
    nets, sgd, states = groups[0]
    chunk, _ = stacked_programs(backend, [(nets[0].model, sgd)], SEED)
    calls = []

    def after(c, losses, counts):
        calls.append((c, losses[0].shape, counts[0].shape))
        return [2, 0] if c == 0 else []

    final = train_stacked(backend, backend.jit(chunk), [stack(backend, states)], x, t, orders,
                          [(x, t)], after)
    steps = orders.shape[1]
    assert calls == [(0, (steps, 3), (3, 1)), (1, (steps, 2), (2, 1))]  # chunk 2 never ran
    for row, k in enumerate([2, 0]):
        alone, _, _ = train_alone(backend, nets[k], sgd, states[k], x, t, orders, 2)
        for name in alone.params:
            assert_close(final[0].params[name][row, ...], alone.params[name], **TIGHT)
