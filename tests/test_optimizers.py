"""Chapter-6 optimizers: the book's formulas step by step, NumPy vs JAX, one compiled step for
many hyperparameter values, the book's eager `update`, dtypes, the registry and errors."""
import numpy as np
import pytest

from tests.conftest import assert_close
from xpnet.backends import available_backends, backend_of, dtype_name, get_backend
from xpnet.nn.checkpoint import _flatten
from xpnet.nn.optimizers import (OPTIMIZERS, SGD, AdaGrad, Adam, MomentsState, Momentum, Nesterov,
                                  RMSprop, SGDState, SquaresState, VelocityState, make_optimizer)

#: The book's defaults, written out here so the tests check them.
DEFAULTS = {
    "sgd": {"lr": 0.01},
    "momentum": {"lr": 0.01, "momentum": 0.9},
    "nesterov": {"lr": 0.01, "momentum": 0.9},
    "adagrad": {"lr": 0.01},
    "rmsprop": {"lr": 0.01, "decay_rate": 0.99},
    "adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999},
}
SLOTS = {"sgd": (), "momentum": ("velocity",), "nesterov": ("velocity",), "adagrad": ("h",),
         "rmsprop": ("h",), "adam": ("m", "v")}
#: Learning rates that minimise f below in 30 steps (the book's comparison uses the first four).
BOOK_LR = {"sgd": 0.95, "momentum": 0.1, "adagrad": 1.5, "adam": 0.3, "nesterov": 0.1, "rmsprop": 0.1}
NAMES = list(DEFAULTS)

needs_jax = pytest.mark.skipif(not available_backends()["jax"][0],
                               reason=f"jax unavailable: {available_backends()['jax'][1]}")


def reference_step(name, w, g, slots, hp, t):
    """The book's update of one float64 array, written out independently of xpnet."""
    if name == "sgd":
        return w - hp["lr"] * g, {}
    if name in ("momentum", "nesterov"):
        v = hp["momentum"] * slots["velocity"] - hp["lr"] * g
        if name == "momentum":
            return w + v, {"velocity": v}
        mu = hp["momentum"]
        return w + mu * mu * v - (1 + mu) * hp["lr"] * g, {"velocity": v}
    if name == "adagrad":
        h = slots["h"] + g * g
        return w - hp["lr"] * g / (np.sqrt(h) + 1e-7), {"h": h}
    if name == "rmsprop":
        h = hp["decay_rate"] * slots["h"] + (1 - hp["decay_rate"]) * g * g
        return w - hp["lr"] * g / (np.sqrt(h) + 1e-7), {"h": h}
    lr_t = hp["lr"] * np.sqrt(1.0 - hp["beta2"] ** t) / (1.0 - hp["beta1"] ** t)
    m = slots["m"] + (1 - hp["beta1"]) * (g - slots["m"])
    v = slots["v"] + (1 - hp["beta2"]) * (g**2 - slots["v"])
    return w - lr_t * m / (np.sqrt(v) + 1e-7), {"m": m, "v": v}


def f_grads(params):
    """Gradient of the book's f(x, y) = x²/20 + y² (chapter 6's optimizer comparison)."""
    return {"x": params["x"] / 10.0, "y": 2.0 * params["y"]}


def f_value(params, backend):
    x, y = backend.to_numpy(params["x"]), backend.to_numpy(params["y"])
    return float(np.sum(x**2 / 20.0 + y**2))


def start_point(backend, dtype):
    """Several starting points at once, the book's (-7, 2) first."""
    return {"x": backend.asarray([-7.0, 3.0, 0.5, 10.0], dtype),
            "y": backend.asarray([2.0, -1.0, 0.1, -3.0], dtype)}


@pytest.mark.parametrize("name", NAMES)
def test_first_three_steps_follow_the_books_formulas(backend, dtype, name):
    rng = np.random.default_rng(7)
    # Values representable in `dtype`, so the float64 reference starts from the same numbers.
    host = {"W": rng.normal(size=(3, 2)).astype(dtype), "b": rng.normal(size=5).astype(dtype)}
    host_grads = [{k: rng.normal(size=p.shape).astype(dtype) for k, p in host.items()} for _ in range(3)]
    params = {k: backend.asarray(p) for k, p in host.items()}
    optimizer = OPTIMIZERS[name]()  # the defaults
    state = optimizer.init(params)
    assert state._fields == ("count", "hyper") + SLOTS[name]
    assert int(state.count) == 0 and dtype_name(state.count.dtype) == "int32"
    assert {k: float(v) for k, v in state.hyper.items()} == pytest.approx(DEFAULTS[name], rel=1e-7)
    assert all(dtype_name(v.dtype) == dtype and v.shape == () for v in state.hyper.values())
    assert all(backend_of(v) is backend for v in (state.count, *state.hyper.values()))

    expected = {k: p.astype(np.float64) for k, p in host.items()}
    expected_slots = {slot: {k: np.zeros(p.shape) for k, p in host.items()} for slot in SLOTS[name]}
    for t, host_g in enumerate(host_grads, start=1):
        before_params, before_state = params, state
        before_host = {k: backend.to_numpy(p).copy() for k, p in params.items()}
        before_slots = {(slot, k): backend.to_numpy(a).copy()
                        for slot in SLOTS[name] for k, a in getattr(state, slot).items()}
        grads = {k: backend.asarray(g) for k, g in host_g.items()}
        params, state = optimizer.apply(params, grads, state)
        for k in host:
            slots = {slot: expected_slots[slot][k] for slot in SLOTS[name]}
            expected[k], new_slots = reference_step(name, expected[k], host_g[k].astype(np.float64),
                                                    slots, DEFAULTS[name], t)
            for slot in SLOTS[name]:
                expected_slots[slot][k] = new_slots[slot]
        for k in host:
            assert dtype_name(params[k].dtype) == dtype and params[k].shape == host[k].shape
            assert backend_of(params[k]) is backend
            assert_close(params[k], expected[k], dtype)
            np.testing.assert_array_equal(backend.to_numpy(before_params[k]), before_host[k])  # pure
            for slot in SLOTS[name]:
                assert dtype_name(getattr(state, slot)[k].dtype) == dtype
                assert_close(getattr(state, slot)[k], expected_slots[slot][k], dtype)
        for (slot, k), value in before_slots.items():  # pure: the old state is unchanged too
            np.testing.assert_array_equal(backend.to_numpy(getattr(before_state, slot)[k]), value)
        assert int(state.count) == t and int(before_state.count) == t - 1
        assert dtype_name(state.count.dtype) == "int32" and state.count.shape == ()
        assert all(dtype_name(v.dtype) == dtype for v in state.hyper.values())


@needs_jax
@pytest.mark.parametrize("name", NAMES)
def test_numpy_and_jax_agree_over_300_steps(name):
    results = {}
    for backend_name in ("numpy", "jax"):
        backend = get_backend(backend_name)
        optimizer = make_optimizer(name)  # the defaults: 300 steps still leave f well above 0

        def step(params, state):
            return optimizer.apply(params, f_grads(params), state)

        step = backend.jit(step)
        params = start_point(backend, "float64")
        state = optimizer.init(params)
        for _ in range(300):
            params, state = step(params, state)
        results[backend_name] = params, state
    (np_params, np_state), (jax_params, jax_state) = results["numpy"], results["jax"]
    assert int(np_state.count) == int(jax_state.count) == 300
    numpy = get_backend("numpy")
    assert 1e-3 < f_value(np_params, numpy) < f_value(start_point(numpy, "float64"), numpy)
    for k in ("x", "y"):  # relative agreement: some coordinates end close to 0
        assert_close(jax_params[k], np_params[k], rtol=1e-10, atol=1e-20)
        for slot in SLOTS[name]:
            assert_close(getattr(jax_state, slot)[k], getattr(np_state, slot)[k], rtol=1e-10, atol=1e-20)


@needs_jax
@pytest.mark.parametrize("name", NAMES)
def test_one_compiled_step_serves_every_learning_rate(dtype, name):
    import jax

    backend = get_backend("jax")
    optimizer = OPTIMIZERS[name](lr=0.1)
    params = start_point(backend, dtype)
    grads = f_grads(params)
    state = optimizer.init(params)
    jitted = jax.jit(optimizer.apply)
    # From a zero state every one of these optimizers moves the parameters by lr times a direction.
    deltas = {}
    for lr in (0.1, 0.5, 0.025):
        # The first call gets the state from `init`, the others one from `with_hyper`.
        new_state = state if lr == 0.1 else optimizer.with_hyper(state, lr=lr)
        new_params, new_state = jitted(params, grads, new_state)
        assert float(new_state.hyper["lr"]) == pytest.approx(lr, rel=1e-7)
        deltas[lr] = {k: backend.to_numpy(new_params[k]) - backend.to_numpy(params[k]) for k in params}
        assert all(p.dtype == np.dtype(dtype) for p in new_params.values())
    assert jitted._cache_size() == 1
    for lr in (0.5, 0.025):
        for k in params:
            assert np.all(deltas[lr][k] != 0)
            assert_close(deltas[lr][k], deltas[0.1][k] * (lr / 0.1), dtype)


@pytest.mark.parametrize("name", NAMES)
def test_the_books_update_loop_minimises_f(backend, dtype, name):
    params = start_point(backend, dtype)
    before = f_value(params, backend)
    optimizer = OPTIMIZERS[name](lr=BOOK_LR[name])
    for _ in range(30):
        optimizer.update(params, f_grads(params))  # the book's loop: params rebound in the dict
    assert f_value(params, backend) < 0.1 * before
    assert all(dtype_name(p.dtype) == dtype and backend_of(p) is backend for p in params.values())


@pytest.mark.parametrize("name", NAMES)
def test_changing_opt_lr_between_update_calls_takes_effect(backend, name):
    eager, pure = OPTIMIZERS[name](lr=0.1), OPTIMIZERS[name](lr=0.1)
    params = start_point(backend, "float64")
    pure_params, state = dict(params), pure.init(params)
    for _ in range(3):
        eager.update(params, f_grads(params))
        pure_params, state = pure.apply(pure_params, f_grads(pure_params), state)
    unchanged_lr, _ = pure.apply(pure_params, f_grads(pure_params), state)
    eager.lr = 0.02
    eager.update(params, f_grads(params))
    pure_params, _ = pure.apply(pure_params, f_grads(pure_params), pure.with_hyper(state, lr=0.02))
    for k in params:
        assert_close(params[k], backend.to_numpy(pure_params[k]))
        assert not np.allclose(backend.to_numpy(params[k]), backend.to_numpy(unchanged_lr[k]))


def test_sgd_lr_change_by_hand(backend):
    params = {"W": backend.asarray(np.ones((2, 2)), "float64")}
    grads = {"W": backend.asarray(np.full((2, 2), 0.5), "float64")}
    optimizer = SGD(lr=0.1)
    optimizer.update(params, grads)
    optimizer.lr = 1.0
    optimizer.update(params, grads)
    assert_close(params["W"], np.full((2, 2), 1 - 0.05 - 0.5))


def test_sgd_pure_apply_keeps_dtype_and_counts_steps(backend):
    params = {"W": backend.asarray(np.ones((2, 2)), "float32")}
    grads = {"W": backend.asarray(np.full((2, 2), 0.5), "float32")}
    optimizer = SGD(lr=np.float64(0.1))  # a float64 scalar must not promote float32 params
    state = optimizer.init(params)
    new_params, state = optimizer.apply(params, grads, state)
    new_params, state = optimizer.apply(new_params, grads, state)
    assert dtype_name(new_params["W"].dtype) == "float32"
    assert_close(new_params["W"], np.full((2, 2), 0.9), "float32")
    assert int(state.count) == 2
    assert_close(params["W"], np.ones((2, 2)), "float32")  # pure: the input is unchanged


@pytest.mark.parametrize("name", NAMES)
def test_float64_hyperparameters_keep_a_float32_model_float32(backend, name):
    optimizer = OPTIMIZERS[name](**{k: np.float64(v) for k, v in DEFAULTS[name].items()})
    params = start_point(backend, "float32")
    state = optimizer.init(params)
    assert all(dtype_name(v.dtype) == "float32" for v in state.hyper.values())
    for _ in range(2):
        params, state = optimizer.apply(params, f_grads(params), state)
    optimizer.update(params, f_grads(params))
    assert all(dtype_name(p.dtype) == "float32" for p in params.values())
    assert all(dtype_name(getattr(state, slot)[k].dtype) == "float32"
               for slot in SLOTS[name] for k in params)


@pytest.mark.parametrize("name", NAMES)
def test_hyperparameters_may_be_0d_arrays(backend, name):
    as_arrays = OPTIMIZERS[name](**{k: backend.asarray(v) for k, v in DEFAULTS[name].items()})
    as_floats = OPTIMIZERS[name]()
    assert repr(as_arrays) == repr(as_floats)
    results = []
    for optimizer in (as_arrays, as_floats):
        params = start_point(backend, "float32")
        state = optimizer.init(params)
        for _ in range(3):
            params, state = optimizer.apply(params, f_grads(params), state)
        results.append(params)
    for k in ("x", "y"):
        assert dtype_name(results[0][k].dtype) == "float32"
        np.testing.assert_array_equal(backend.to_numpy(results[0][k]), backend.to_numpy(results[1][k]))


def test_non_scalar_hyperparameters_are_refused(backend):
    with pytest.raises(ValueError, match="lr must be a scalar"):
        SGD(lr=np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="lr must be a scalar"):
        SGD(lr=backend.asarray([0.1, 0.2], "float32"))
    state = SGD().init({"W": backend.asarray(np.ones(2), "float32")})
    with pytest.raises(ValueError, match="lr must be a scalar"):
        SGD().with_hyper(state, lr=[0.1, 0.2])


def test_defaults_and_repr_are_the_books():
    for name, defaults in DEFAULTS.items():
        optimizer = OPTIMIZERS[name]()
        assert optimizer.hyperparameters == defaults
    assert repr(Momentum(lr=0.1)) == "Momentum(lr=0.1, momentum=0.9)"
    assert repr(Adam()) == "Adam(lr=0.001, beta1=0.9, beta2=0.999)"
    assert repr(SGD(np.float32(0.5))) == "SGD(lr=0.5)"


def test_make_optimizer_names_aliases_and_case():
    expected = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
                "rmsprop": RMSprop, "adam": Adam}
    assert OPTIMIZERS == expected
    for name, cls in expected.items():
        assert type(make_optimizer(name)) is cls
    assert type(make_optimizer("RMSprop")) is RMSprop
    assert type(make_optimizer(" ADAM ")) is Adam
    assert type(make_optimizer("rmsprpo")) is RMSprop  # the book's Trainer spells it so
    optimizer = make_optimizer("Momentum", lr=0.2, momentum=0.5)
    assert (optimizer.lr, optimizer.momentum) == (0.2, 0.5)


def test_make_optimizer_errors():
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'.*sgd.*adam"):
        make_optimizer("adamw")
    with pytest.raises(TypeError, match="SGD has no hyperparameter 'momentum'"):
        make_optimizer("sgd", momentum=0.9)


def test_with_hyper_names_an_unknown_hyperparameter(backend):
    optimizer = Adam()
    state = optimizer.init({"W": backend.asarray(np.ones(3), "float32")})
    with pytest.raises(ValueError, match="no hyperparameter 'momentum'.*lr, beta1, beta2"):
        optimizer.with_hyper(state, momentum=0.5)
    replaced = optimizer.with_hyper(state, beta1=0.5)
    assert float(replaced.hyper["beta1"]) == 0.5 and float(state.hyper["beta1"]) == np.float32(0.9)
    assert dtype_name(replaced.hyper["beta1"].dtype) == "float32" and replaced.hyper["beta1"].shape == ()
    assert backend_of(replaced.hyper["beta1"]) is backend


@pytest.mark.parametrize("name", NAMES)
def test_a_missing_gradient_is_named(backend, name):
    params = {"W": backend.asarray(np.ones(2), "float64"), "b": backend.asarray(np.ones(2), "float64")}
    grads = {"W": backend.asarray(np.ones(2), "float64")}
    with pytest.raises(KeyError, match="'b'"):
        OPTIMIZERS[name]().update(params, grads)
    optimizer = OPTIMIZERS[name]()
    with pytest.raises(KeyError, match="'b'"):
        optimizer.apply(params, grads, optimizer.init(params))


@pytest.mark.parametrize("name", NAMES)
def test_each_parameter_keeps_its_own_dtype(backend, name):
    optimizer = OPTIMIZERS[name](lr=np.float64(0.1))
    params = {"x": backend.asarray([3.0, -1.0], "float32"), "y": backend.asarray([2.0, 0.5], "float64")}
    state = optimizer.init(params)
    assert all(dtype_name(v.dtype) == "float64" for v in state.hyper.values())  # the params' result type
    for _ in range(2):
        params, state = optimizer.apply(params, f_grads(params), state)
    assert (dtype_name(params["x"].dtype), dtype_name(params["y"].dtype)) == ("float32", "float64")
    assert all(dtype_name(getattr(state, slot)["x"].dtype) == "float32" for slot in SLOTS[name])
    assert all(dtype_name(getattr(state, slot)["y"].dtype) == "float64" for slot in SLOTS[name])


def test_optimizers_with_the_same_slots_share_one_state_class(backend):
    """Declared slots, shared state classes, and the checkpoint paths they give (opt_state/m/W1)."""
    assert Momentum.State is Nesterov.State is VelocityState
    assert AdaGrad.State is RMSprop.State is SquaresState
    assert (SGD.State, Adam.State) == (SGDState, MomentsState)
    params = {"W": backend.asarray(np.ones(2), "float32")}
    for name, cls in OPTIMIZERS.items():
        assert cls.State.SLOTS == SLOTS[name] and cls.State._fields == ("count", "hyper") + SLOTS[name]
        paths = {}
        _flatten(cls().init(params), "", paths)
        assert sorted(paths) == sorted(["count", *(f"hyper/{h}" for h in DEFAULTS[name]),
                                        *(f"{slot}/W" for slot in SLOTS[name])])


def test_adams_per_step_values_have_plain_names(backend):
    """lr_t (lr with both bias corrections), m_rate = 1 − β1, v_rate = 1 − β2, once per step."""
    xp = backend.xp
    hyper = {k: backend.asarray(v, "float64") for k, v in DEFAULTS["adam"].items()}
    per_step = Adam()._per_step(xp, hyper, backend.asarray(3.0, "float64"))
    assert set(per_step) == set(hyper) | {"lr_t", "m_rate", "v_rate"}
    assert_close(per_step["lr_t"], 0.001 * np.sqrt(1 - 0.999**3) / (1 - 0.9**3))
    assert_close(per_step["m_rate"], 1 - 0.9)
    assert_close(per_step["v_rate"], 1 - 0.999)
