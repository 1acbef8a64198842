"""Gradient check: backprop against central differences (and the library's automatic
differentiation where the backend has one: `jax.grad`), per parameter.

The book's chapter-5 check, with the errors stated per parameter array:
- max abs: max |g − g_backprop| over the array's entries;
- max rel: max abs divided by max |g_backprop| over the array (the error relative to the scale
  of that gradient; an entry-wise ratio is meaningless where a gradient is 0).
An entry passes when its error ≤ tolerance · max |g_backprop| + rounding, where rounding =
eps(dtype) · max(|loss|, 1) / 2h is what rounding the loss alone does to a central difference.

Kinks: ReLU is not differentiable at 0, max pooling where two entries of a window tie. Where a
step of ±h moves a value across one, the central difference is not the derivative there, however
right backprop is. So an entry that fails at the book's h = 1e-4 is checked again at KINK_STEP:
a value within 1e-4 of a kink is rarely within 1e-6 of it, while a wrong backprop disagrees at
every step. Such entries are counted as `kinks`; their error is the one at the smaller step.
float64 only: in float32 the rounding at 1e-6 would swamp any error.
"""
import functools
import statistics
import time
from typing import NamedTuple

import numpy as np

from xpnet.checks import check_int, check_number
from xpnet.nn.central_differences import H
from xpnet.nn.structured_gradient import model_numerical_gradient

#: Relative tolerance per dtype. float64: central differences with h = 1e-4 are exact to about
#: h² ≈ 1e-8 relative on smooth nets, and backprop differentiates −log y where the loss is
#: −log(y + 1e-7) (about 1e-7/y apart); 1e-5 leaves room for both. float32: the rounding term
#: (about 1e-3 absolute) dominates; 1e-2 covers the rest.
TOLERANCES = {"float64": 1e-5, "float32": 1e-2}
#: The second step for entries that fail at H (see Kinks above).
KINK_STEP = H / 100


class GradientError(NamedTuple):
    name: str      # parameter, e.g. "W1"
    method: str    # "numerical" or "jax.grad"
    max_abs: float
    max_rel: float
    passed: bool   # every entry within tolerance · max |g_backprop| + rounding
    kinks: int = 0  # entries that failed at H and passed at KINK_STEP


class GradCheckResult(NamedTuple):
    errors: list     # of GradientError, per parameter and method
    seconds: dict    # method -> median seconds of one gradient ("backprop", "numerical", ...)
    tolerance: float
    rounding: float  # eps · max(|loss|, 1) / 2h: the absolute error rounding alone causes

    @property
    def passed(self):
        return all(e.passed for e in self.errors)


def gradient_check(net, x, t, tolerance=None, repeat=3):
    """Compare `net`'s backprop gradient with its numerical gradient (and `jax.grad` on JAX).

    Each method is called once to compile (JAX) and then timed `repeat` times, the device synced;
    `seconds` holds the median. `tolerance` defaults to TOLERANCES for the net's dtype.
    """
    if tolerance is not None:  # before minutes of gradients, not after
        check_number(tolerance, "tolerance", low=0, low_open=True)
    check_int(repeat, "repeat")
    backend, model = net.backend, net.model
    x, t = net.to_device(x, t)
    params, state, key = net.params, net.state, net.next_key()  # one Dropout mask for all methods
    backprop = backend.jit(lambda p, x, t: model.loss_and_grad(p, x, t, state, key)[1])
    methods = {
        "backprop": backprop,
        "numerical": lambda p, x, t: model_numerical_gradient(model, p, x, t, state, key),
    }
    if backend.autodiff:  # an independent oracle: the library's own differentiation
        methods[backend.autodiff] = backend.jit(
            backend.grad(lambda p, x, t: model.loss(p, x, t, True, state, key)))
    grads, seconds = {}, {}
    for method, gradient in methods.items():
        grads[method] = backend.sync(gradient(params, x, t))
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            backend.sync(gradient(params, x, t))
            times.append(time.perf_counter() - start)
        seconds[method] = statistics.median(times)

    dtype = np.dtype(net.dtype)
    if tolerance is None:
        tolerance = TOLERANCES[dtype.name]
    loss = float(model.loss(params, x, t, True, state, key))
    rounding = float(np.finfo(dtype).eps) * max(abs(loss), 1.0) / (2 * H)
    reference = {name: backend.to_numpy(g) for name, g in grads.pop("backprop").items()}
    at_kink_step = functools.cache(  # computed only if an entry fails at H
        lambda: model_numerical_gradient(model, params, x, t, state, key, h=KINK_STEP))
    errors = []
    for method, method_grads in grads.items():
        for name, expected in reference.items():
            scale = float(np.abs(expected).max())
            error = np.abs(backend.to_numpy(method_grads[name]) - expected)
            passed = error <= tolerance * scale + rounding
            kinks = 0
            if method == "numerical" and dtype == np.float64 and not passed.all():
                error_small = np.abs(backend.to_numpy(at_kink_step()[name]) - expected)
                passed_small = ~passed & (error_small <= tolerance * scale + rounding * H / KINK_STEP)
                error = np.where(passed_small, error_small, error)
                passed, kinks = passed | passed_small, int(passed_small.sum())
            max_abs = float(error.max())
            errors.append(GradientError(name, method, max_abs, max_abs / scale if scale > 0 else max_abs,
                                        bool(passed.all()), kinks))
    return GradCheckResult(errors, seconds, tolerance, rounding)

