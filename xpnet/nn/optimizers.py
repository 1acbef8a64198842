"""The chapter-6 optimizers as pure `init`/`apply` pairs, plus the book's eager `update(params, grads)`.

    state = opt.init(params)
    params, state = opt.apply(params, grads, state)   # pure: jit-able, returns new arrays
    state = opt.with_hyper(state, lr=0.001)           # new hyperparameters, same compiled step
    opt.update(net.params, grads)                     # the book's call: rebinds dict entries

The pure step is called `apply` rather than `update` because the book's `update(params, grads)`
already owns that name; the eager form keeps its state on the optimizer object.

A state is a NamedTuple of arrays: `count` (int32 steps taken), `hyper` (name -> 0-d float array
of the hyperparameters, so one `jax.jit`-compiled `apply` serves any values) and the per-parameter
slots its class declares in `SLOTS` (dicts keyed like `params`). Optimizers that keep the same
slots share a state class, as optax's momentum and Nesterov share `TraceState`:
`SGDState` (no slot), `VelocityState` (Momentum, Nesterov), `SquaresState` (AdaGrad, RMSprop),
`MomentsState` (Adam). Checkpoints store the slots by path: opt_state/velocity/W1, opt_state/m/W1.
The update formulas are the book's, eps = 1e-7 included.
"""
import inspect
from typing import Any, NamedTuple

import numpy as np

from xpnet.backends import device_of, namespace_of
from xpnet.checks import check_number

#: Added to the root in AdaGrad, RMSprop and Adam so an all-zero history does not divide by zero.
EPS = 1e-7
#: Where each hyperparameter makes sense: lr > 0, the decay rates in [0, 1).
HYPER_RANGES = {"lr": (0, None), "momentum": (0, 1), "decay_rate": (0, 1), "beta1": (0, 1),
                "beta2": (0, 1)}


class SGDState(NamedTuple):
    """The state every optimizer has: the step count and the hyperparameters."""
    count: Any  # int32 0-d array: number of steps taken
    hyper: Any  # dict name -> 0-d float array
    SLOTS = ()


class VelocityState(NamedTuple):
    """Momentum's and Nesterov's state: a velocity per parameter."""
    count: Any
    hyper: Any
    velocity: Any  # dict like params
    SLOTS = ("velocity",)


class SquaresState(NamedTuple):
    """AdaGrad's and RMSprop's state: h, the sum (AdaGrad) or moving average (RMSprop) of the
    squared gradients, per parameter."""
    count: Any
    hyper: Any
    h: Any
    SLOTS = ("h",)


class MomentsState(NamedTuple):
    """Adam's state: moving averages m of the gradients and v of their squares, per parameter."""
    count: Any
    hyper: Any
    m: Any
    v: Any
    SLOTS = ("m", "v")


class Optimizer:
    """Shared plumbing: hyperparameters, state building, the parameter loop and the eager `update`.

    A subclass names its `State` (its `SLOTS` start at zero) and writes `_step`, the update of
    one parameter.
    """

    State = SGDState

    def __init__(self, **hyperparameters):
        for name, value in hyperparameters.items():
            shape = tuple(getattr(value, "shape", np.shape(value)))
            if shape:
                raise ValueError(f"hyperparameter {name} must be a scalar, got shape {shape}")
            if isinstance(value, (int, float, np.number)):  # a device array is the caller's to check
                low, high = HYPER_RANGES[name]
                check_number(value, name, low=low, high=high, low_open=name == "lr",
                             high_open=high is not None)
            setattr(self, name, value)
        self._hyper_names = tuple(hyperparameters)
        self._eager_state = None

    @property
    def hyperparameters(self):
        """Name -> current value, read from the attributes (the book sets e.g. `opt.lr` directly)."""
        return {name: getattr(self, name) for name in self._hyper_names}

    def init(self, params):
        """The state before the first step: count 0, the constructor's hyperparameters, zero slots."""
        values = list(params.values())
        if not values:
            raise ValueError("params is empty: there is nothing to optimize")
        xp, device = namespace_of(values[0]), device_of(values[0])
        dtype = xp.result_type(*(p.dtype for p in values))
        if not xp.isdtype(dtype, "real floating"):
            dtype = xp.float32
        hyper = {name: xp.asarray(value, dtype=dtype, device=device)
                 for name, value in self.hyperparameters.items()}
        slots = {slot: {name: namespace_of(p).zeros_like(p) for name, p in params.items()}
                 for slot in self.State.SLOTS}
        return self.State(count=xp.zeros((), dtype=xp.int32, device=device), hyper=hyper, **slots)

    def with_hyper(self, state, **values):
        """`state` with some hyperparameters replaced, keeping their dtype (and so a jitted step)."""
        hyper = dict(state.hyper)
        for name, value in values.items():
            if name not in hyper:
                raise ValueError(f"{type(self).__name__} has no hyperparameter {name!r}; "
                                 f"it has {', '.join(hyper)}")
            old = hyper[name]
            new = namespace_of(old).asarray(value, dtype=old.dtype, device=device_of(old))
            if new.shape != old.shape:
                raise ValueError(f"hyperparameter {name} must be a scalar, got shape {new.shape}")
            hyper[name] = new
        return state._replace(hyper=hyper)

    def apply(self, params, grads, state):
        """One step for every parameter: (new params, new state); the inputs are left unchanged."""
        count = namespace_of(state.count).asarray(state.count + 1)  # stays a 0-d array on NumPy
        slot_names = self.State.SLOTS
        new_params, new_slots = {}, {slot: {} for slot in slot_names}
        cast = {}  # dtype -> (hyperparameters, step count) in that dtype, made once per step
        for name, p in params.items():
            xp = namespace_of(p)
            if p.dtype not in cast:
                # Cast every hyperparameter to the parameter's dtype: float64 ones (NumPy scalars,
                # arrays, JAX x64) would otherwise silently promote a float32 model.
                step = xp.astype(count, p.dtype)
                hyper = {k: xp.astype(v, p.dtype) for k, v in state.hyper.items()}
                cast[p.dtype] = (self._per_step(xp, hyper, step), step)
            hyper, step = cast[p.dtype]
            slots = {slot: getattr(state, slot)[name] for slot in slot_names}
            new_params[name], updated = self._step(xp, p, _grad_for(grads, name), slots, hyper, step)
            for slot in slot_names:
                new_slots[slot][name] = updated[slot]
        return new_params, state._replace(count=count, **new_slots)

    def _per_step(self, xp, hyper, t):
        """The hyperparameters `_step` receives, plus whatever depends on the step `t` alone
        (computed once per step, not once per parameter)."""
        return hyper

    def _step(self, xp, w, g, slots, hyper, t):
        """(new w, new slots) for one parameter `w` with gradient `g` at step `t` (1 for the first)."""
        raise NotImplementedError

    def update(self, params, grads):
        """The book's API: replace each `params[key]` by its updated array (in the dict, not in place).

        The hyperparameters are read from the attributes on every call, so `opt.lr = ...` between
        calls takes effect as in the book.
        """
        state = self.init(params) if self._eager_state is None else self._eager_state
        state = self.with_hyper(state, **self.hyperparameters)
        new_params, self._eager_state = self.apply(params, grads, state)
        params.update(new_params)

    def __repr__(self):
        values = ", ".join(f"{name}={_show(value)}" for name, value in self.hyperparameters.items())
        return f"{type(self).__name__}({values})"


def _show(value):
    try:
        return repr(float(value))
    except TypeError:  # e.g. a JAX tracer
        return repr(value)


def _grad_for(grads, name):
    try:
        return grads[name]
    except KeyError:
        raise KeyError(f"grads has no entry for parameter {name!r} (it has {sorted(grads)})") from None


class SGD(Optimizer):
    """Stochastic gradient descent: W ← W - lr·g."""

    State = SGDState

    def __init__(self, lr=0.01):
        super().__init__(lr=lr)

    def _step(self, xp, w, g, slots, hyper, t):
        return w - hyper["lr"] * g, {}


class Momentum(Optimizer):
    """Momentum SGD: v ← momentum·v - lr·g; W ← W + v (a ball rolling downhill)."""

    State = VelocityState

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr=lr, momentum=momentum)

    def _step(self, xp, w, g, slots, hyper, t):
        v = hyper["momentum"] * slots["velocity"] - hyper["lr"] * g
        return w + v, {"velocity": v}


class Nesterov(Optimizer):
    """Nesterov's accelerated gradient in the book's form (momentum applied to the updated v)."""

    State = VelocityState

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr=lr, momentum=momentum)

    def _step(self, xp, w, g, slots, hyper, t):
        mu, lr = hyper["momentum"], hyper["lr"]
        v = mu * slots["velocity"] - lr * g
        return w + mu * mu * v - (1 + mu) * lr * g, {"velocity": v}


class AdaGrad(Optimizer):
    """AdaGrad: h ← h + g²; W ← W - lr·g/(√h + eps), a learning rate decaying per element."""

    State = SquaresState

    def __init__(self, lr=0.01):
        super().__init__(lr=lr)

    def _step(self, xp, w, g, slots, hyper, t):
        h = slots["h"] + g * g
        return w - hyper["lr"] * g / (xp.sqrt(h) + EPS), {"h": h}


class RMSprop(Optimizer):
    """RMSprop: AdaGrad with a moving average, h ← ρ·h + (1-ρ)·g², so old gradients fade."""

    State = SquaresState

    def __init__(self, lr=0.01, decay_rate=0.99):
        super().__init__(lr=lr, decay_rate=decay_rate)

    def _step(self, xp, w, g, slots, hyper, t):
        rho = hyper["decay_rate"]
        h = rho * slots["h"] + (1 - rho) * g * g
        return w - hyper["lr"] * g / (xp.sqrt(h) + EPS), {"h": h}


class Adam(Optimizer):
    """Adam: moving averages m of g and v of g², with the book's bias correction folded into lr_t."""

    State = MomentsState

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        super().__init__(lr=lr, beta1=beta1, beta2=beta2)

    def _per_step(self, xp, hyper, t):
        """lr_t: lr with both bias corrections; m_rate = 1 − β1 and v_rate = 1 − β2, how fast m
        and v move towards g and g²."""
        b1, b2 = hyper["beta1"], hyper["beta2"]
        return {**hyper, "lr_t": hyper["lr"] * xp.sqrt(1 - b2**t) / (1 - b1**t),
                "m_rate": 1 - b1, "v_rate": 1 - b2}

    def _step(self, xp, w, g, slots, hyper, t):
        m = slots["m"] + hyper["m_rate"] * (g - slots["m"])
        v = slots["v"] + hyper["v_rate"] * (g * g - slots["v"])
        return w - hyper["lr_t"] * m / (xp.sqrt(v) + EPS), {"m": m, "v": v}


#: Lower-case name -> optimizer class, the names of the book's `Trainer`.
OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
              "rmsprop": RMSprop, "adam": Adam}
#: Other accepted names: the book's `Trainer` spells RMSprop "rmsprpo".
ALIASES = {"rmsprpo": "rmsprop"}


def make_optimizer(name, **hyperparameters):
    """The optimizer called `name` (any case, see OPTIMIZERS) built with `hyperparameters`."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    cls = OPTIMIZERS[key]
    accepted = inspect.signature(cls).parameters
    unknown = [h for h in hyperparameters if h not in accepted]
    if unknown:
        raise TypeError(f"{cls.__name__} has no hyperparameter {', '.join(map(repr, unknown))}; "
                        f"it takes {', '.join(accepted)}")
    return cls(**hyperparameters)


__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam",
           "SGDState", "VelocityState", "SquaresState", "MomentsState",
           "OPTIMIZERS", "ALIASES", "make_optimizer"]
