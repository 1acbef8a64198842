"""Optimizers as pure `init`/`apply` pairs, plus the book's eager `update(params, grads)`.

    state = opt.init(params)
    params, state = opt.apply(params, grads, state)   # pure: jit-able, returns new arrays
    opt.update(net.params, grads)                     # the book's call: rebinds dict entries

The pure step is called `apply` rather than `update` because the book's `update(params, grads)`
already owns that name; the eager form keeps its state on the optimizer object.
"""
from typing import Any, NamedTuple

from xpnet.backends import namespace_of


class SGDState(NamedTuple):
    count: Any  # int32 array scalar: number of steps taken


class Optimizer:
    """Shared plumbing: the book's eager `update` on top of a subclass's pure `init`/`apply`."""

    def __init__(self):
        self._eager_state = None

    def init(self, params):
        raise NotImplementedError

    def apply(self, params, grads, state):
        raise NotImplementedError

    def update(self, params, grads):
        """The book's API: replace each `params[key]` by its updated array (in the dict, not in place)."""
        if self._eager_state is None:
            self._eager_state = self.init(params)
        new_params, self._eager_state = self.apply(params, grads, self._eager_state)
        params.update(new_params)


def _step_count(params):
    xp = namespace_of(next(iter(params.values())))
    return xp.zeros((), dtype=xp.int32)


def _grad_for(grads, name):
    try:
        return grads[name]
    except KeyError:
        raise KeyError(f"grads has no entry for parameter {name!r} (it has {sorted(grads)})") from None


class SGD(Optimizer):
    """Stochastic gradient descent: W ← W - lr·∂L/∂W."""

    def __init__(self, lr=0.01):
        super().__init__()
        self.lr = lr

    def init(self, params):
        return SGDState(count=_step_count(params))

    def apply(self, params, grads, state):
        new_params = {}
        for name, p in params.items():
            xp = namespace_of(p)
            # A float64 lr (a NumPy scalar or array) would silently promote float32 params.
            lr = xp.asarray(self.lr, dtype=p.dtype)
            new_params[name] = p - lr * _grad_for(grads, name)
        return new_params, SGDState(count=state.count + 1)

    def __repr__(self):
        return f"SGD(lr={self.lr})"
