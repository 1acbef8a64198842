"""Many nets of one shape trained side by side on the same batches: on JAX one compiled program
(`lax.scan` over the steps, `vmap` over the nets), elsewhere a loop over them. The chapter-6
experiments compare nets this way and the hyperparameter search trains its trials so, both
through one loop, `train_stacked`.
"""
import numpy as np

from xpnet.backends import backend_of
from xpnet.nn.training import make_train_step


def stacked_programs(backend, models, seed=0):
    """The two programs that train groups of nets side by side, uncompiled: `backend.jit` them
    once and keep them (each new number of nets in a group traces anew).

    chunk(states, x, t, orders, c, evals) -> (states, losses, counts): every group takes the steps
      of the index array `orders[c]` (`lax.scan` over the steps, `vmap` over its nets on JAX, a
      loop elsewhere), then counts right answers on each (x, t) of `evals`;
    count(states, evals) -> counts, the counting alone.

    `models` holds a group's (model, optimizer), `states` its nets' TrainStates as `stack` makes
    them; per group, `losses` is (steps, nets) and `counts` (nets, len(evals)). The nets differ
    only in their arrays (weights, λ, the optimizer's hyperparameters), so one program serves all.
    """
    xp, key = backend.xp, backend.key(seed)
    steps = [_batched(backend, make_train_step(model, optimizer, backend, key))
             for model, optimizer in models]
    counters = [_batched(backend, lambda s, ex, et, m=model: m.correct_count(s.params, ex, et, s.net_state))
                for model, _ in models]

    def count(states, evals):
        return [xp.stack([counter(s, ex, et) for ex, et in evals], axis=-1) if evals
                else xp.zeros((_size(s), 0), device=backend.device)
                for counter, s in zip(counters, states)]

    def chunk(states, x, t, orders, c, evals):
        order = orders[c, ...]

        def body(states, i):
            out = [step(s, x, t, order, i) for step, s in zip(steps, states)]
            return [o[0] for o in out], [o[1] for o in out]

        states, losses = backend.scan(body, states, order.shape[0])
        return states, losses, count(states, evals)

    return chunk, count


def train_stacked(backend, program, states, x, t, orders, evals=(), after=None):
    """Train stacked nets chunk by chunk, the one loop behind the experiments' groups and the
    search's trials: for each chunk c of the device index array `orders` (an epoch, or a block of
    iterations), `states, losses, counts = program(states, x, t, orders, c, evals)`, a program of
    the form of `stacked_programs`' chunk (compiled by the caller). Returns the final states.

    `after(c, losses, counts)`, if given, is called with the chunk's device outputs as soon as the
    call returns (on JAX, which dispatches asynchronously, while the chunk still computes). It
    returns None to go on, or the rows (indices along the net axis of every leaf of `states`) to
    keep: the states are cut to them (`keep_nets`) before the next chunk, and no rows at all end
    the training there. The search drops its pruned trials so.
    """
    for c in range(orders.shape[0]):
        states, losses, counts = program(states, x, t, orders, c, evals)
        rows = None if after is None else after(c, losses, counts)
        if rows is not None:
            if len(rows) == 0:
                break
            states = keep_nets(backend, states, rows)
    return states


def stack(backend, states):
    """TrainStates as `stacked_programs` takes them: one tree of arrays with a leading net axis,
    stacked on the host and moved in one transfer per array (on JAX much faster than stacking
    a hundred nets' arrays on the device). The states may live on any backend (the search makes
    them on the host): each leaf comes to the host through its own backend's `to_numpy`."""
    return backend.tree_map(
        lambda *leaves: backend.asarray(np.stack([backend_of(a).to_numpy(a) for a in leaves])),
        *states)


def keep_nets(backend, states, rows):
    """The stack `states` (see `stack`) cut to the nets at indices `rows`, in that order."""
    rows = backend.asarray(np.asarray(rows), backend.index_dtype)
    return backend.tree_map(lambda a: backend.xp.take(a, rows, axis=0), states)


def _size(states):
    """How many nets a stack of TrainStates holds."""
    return states.step.shape[0]


def _batched(backend, fn):
    """`fn(state, *rest)` over a stack of TrainStates: `backend.vmap` (vectorized on JAX, a loop
    elsewhere); for one net, `fn` on the single slice (15% faster than a vmap of size 1 on JAX;
    the stack's size is known when JAX traces)."""
    def batched(states, *rest):
        if _size(states) > 1:
            return backend.vmap(fn, in_axes=(0,) + (None,) * len(rest))(states, *rest)
        one = fn(backend.tree_map(lambda a: a[0, ...], states), *rest)
        return backend.tree_map(lambda a: a[None, ...], one)
    return batched
