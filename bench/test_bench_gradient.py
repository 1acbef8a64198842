"""Per-batch numerical gradient, batch of 100, float64: the book's loop (NumPy, the reference) and
xpnet's numerical gradient per backend, on three cases (`CASES`), plus backprop on the first.
`make bench` prints the speed-ups of one run.

- mnist: TwoLayerNet(784, 50, 10) on real digits (the labels of earlier runs are kept);
- dense: the same net on dense inputs, uniform in [0, 1) (the shape of standardised data: no
  zeros nor repeated values for the structured gradient to skip);
- batchnorm: MultiLayerNetExtend(784, [100, 100], 10, use_batchnorm=True) on real digits.

Every entry has extra_info "case"; the labels of the other cases name it ("book loop (numpy,
dense)", "xpnet numerical (jax, batchnorm)"), and each case's speed-ups divide by its own book
loop (printed at the end of the module).

XPNET_BENCH_GRADIENT_CASES=mnist,dense runs only those cases.
XPNET_BENCH_BOOK_ENTRIES=N times the book's loop on about N entries spread over every parameter
and extrapolates to all of them (each entry costs the same: two whole losses), for machines where
the GPU is fast and the full loop would eat the time; by default it runs over every entry, except
for the batchnorm net (BATCHNORM_BOOK_ENTRIES: its full loop takes minutes). The smoke run
(--benchmark-disable) times the loop on QUICK_BOOK_ENTRIES and the batchnorm net narrowed.
"""
import math
import os

import numpy as np
import pytest

from xpnet.data import load_mnist
from xpnet.nn import MultiLayerNetExtend, TwoLayerNet, numerical_gradient

BATCH = 100
BOOK_ENTRIES = int(os.environ.get("XPNET_BENCH_BOOK_ENTRIES", "0"))
BATCHNORM_BOOK_ENTRIES = 4000
QUICK_BOOK_ENTRIES = 200
SAME_AS_BOOK = 1e-7  # the target: xpnet's numerical gradient equals the book's loop to this
ALL_CASES = ("mnist", "dense", "batchnorm")
#: XPNET_BENCH_GRADIENT_CASES=mnist,dense limits the cases (all by default).
CASES = tuple(c.strip() for c in os.environ.get("XPNET_BENCH_GRADIENT_CASES", ",".join(ALL_CASES))
              .split(",") if c.strip())
if set(CASES) - set(ALL_CASES):
    unknown = ", ".join(sorted(set(CASES) - set(ALL_CASES)))
    raise ValueError(f"XPNET_BENCH_GRADIENT_CASES: unknown case(s) {unknown}; "
                     f"the cases are {', '.join(ALL_CASES)}")
#: Medians (extrapolated for the book loop) per case and label, for the summary.
CASE_MEDIANS = {}


def label(method, backend, case):
    """"xpnet numerical (jax)" for the mnist case (its labels of earlier runs), else with the case."""
    return f"{method} ({backend})" if case == "mnist" else f"{method} ({backend}, {case})"


@pytest.fixture(scope="module")
def digits():
    (x, t), _ = load_mnist(dataset="mnist-5k")
    return x[:BATCH].astype(np.float64), t[:BATCH]


def inputs(case, digits):
    x, t = digits
    return (np.random.default_rng(0).random((BATCH, 784)), t) if case == "dense" else (x, t)


def make_net(case, backend, quick):
    if case == "batchnorm":
        hidden = [20, 20] if quick else [100, 100]
        return MultiLayerNetExtend(784, hidden, 10, use_batchnorm=True, seed=0, dtype="float64",
                                   backend=backend)
    return TwoLayerNet(784, 50, 10, seed=0, dtype="float64", backend=backend)


def book_entries(params, budget):
    """{name: every k-th flat index} with about `budget` entries in all (every entry for 0)."""
    total = sum(p.size for p in params.values())
    stride = max(1, math.ceil(total / budget)) if budget else 1
    return {name: slice(None, None, stride) for name in params}


def book_budget(case, quick):
    if quick:
        return min(filter(None, (BOOK_ENTRIES, QUICK_BOOK_ENTRIES)))
    return BOOK_ENTRIES or (BATCHNORM_BOOK_ENTRIES if case == "batchnorm" else 0)


def book_loop_gradient(net, x, t, picks):
    """The book's numerical_gradient of the net, one element at a time, the whole loss each time
    (training mode for BatchNorm, as the book's MultiLayerNetExtend), over the picked flat
    entries of each parameter (views, so the loop perturbs the net)."""
    train = net.batchnorm

    def loss_W(W):
        return net.loss(x, t, train_flg=train)  # reads the array numerical_gradient perturbs in place
    return {name: numerical_gradient(loss_W, np.reshape(net.params[name], -1)[pick])
            for name, pick in picks.items()}


@pytest.fixture(scope="module")
def book_gradient(digits, quick):
    """case -> (picks, the book loop's values on them), to check each backend's gradient."""
    cache = {}

    def get(case):
        if case not in cache:
            net = make_net(case, "numpy", quick)
            picks = book_entries(net.params, book_budget(case, quick))
            cache[case] = picks, book_loop_gradient(net, *inputs(case, digits), picks)
        return cache[case]
    return get


@pytest.fixture(scope="module", autouse=True)
def case_summary(request):
    """Each case's methods and their speed-ups over that case's book loop, after the module."""
    yield
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None or capture is None or not CASE_MEDIANS:
        return
    with capture.global_and_fixture_disabled():  # teardown output is captured otherwise
        reporter.write_line("")
        reporter.write_sep("-", "numerical gradient of one batch of 100, float64, per case")
        reporter.write_line(f"{'case':<11}{'method':<44}{'median s':>11}{'vs book loop':>14}")
        for case in CASES:
            times = CASE_MEDIANS.get(case, {})
            book = times.get(label("book loop", "numpy", case))
            for name, median in sorted(times.items(), key=lambda item: -item[1]):
                ratio = f"{book / median:>13.1f}x" if book else f"{'—':>14}"
                reporter.write_line(f"{case:<11}{name:<44}{median:>11.5f}{ratio}")


def record(benchmark, case, name, backend, record_median, scale=1.0):
    """The entry's extra_info (suite, label, backend, case) and its median for the summary."""
    if case == "mnist":
        record_median(name, benchmark, backend, scale=scale)
    else:
        benchmark.extra_info.update(suite="gradient", label=name, backend=backend)
        if benchmark.stats is not None and scale != 1.0:
            benchmark.extra_info["seconds"] = benchmark.stats.stats.median * scale
    benchmark.extra_info["case"] = case
    if benchmark.stats is not None:
        CASE_MEDIANS.setdefault(case, {})[name] = benchmark.stats.stats.median * scale


@pytest.mark.parametrize("case", CASES)
def test_book_loop_numpy(benchmark, case, digits, book_gradient, quick, record_median):
    net = make_net(case, "numpy", quick)
    picks, expected = book_gradient(case)
    grads = benchmark.pedantic(book_loop_gradient, args=(net, *inputs(case, digits), picks),
                               rounds=1, iterations=1)
    entries = sum(g.size for g in grads.values())
    total = sum(p.size for p in net.params.values())
    benchmark.extra_info.update(entries_timed=entries, entries=total)
    record(benchmark, case, label("book loop", "numpy", case), "numpy", record_median, total / entries)
    for name in grads:
        np.testing.assert_array_equal(grads[name], expected[name])


@pytest.mark.parametrize("case", CASES)
def test_numerical_gradient(benchmark, backend, case, digits, book_gradient, quick, record_median):
    net = make_net(case, backend, quick)
    x, t = net.to_device(*inputs(case, digits))
    if backend.compiles or not quick:
        backend.sync(net.numerical_gradient(x, t))  # compile (JAX) before timing
    grads = benchmark.pedantic(lambda: backend.sync(net.numerical_gradient(x, t)),
                               rounds=3 if case == "batchnorm" else 5, iterations=1)
    record(benchmark, case, label("xpnet numerical", backend.name, case), backend.name, record_median)
    benchmark.extra_info["device"] = backend.device_name
    picks, expected = book_gradient(case)
    for name, pick in picks.items():
        got = np.reshape(backend.to_numpy(grads[name]), -1)[pick]
        np.testing.assert_allclose(got, expected[name], atol=SAME_AS_BOOK, rtol=0, err_msg=name)


def test_backprop(benchmark, backend, digits, record_median):
    net = TwoLayerNet(784, 50, 10, seed=0, dtype="float64", backend=backend)
    x, t = net.to_device(*digits)
    gradient = backend.jit(net.model.loss_and_grad)
    backend.sync(gradient(net.params, x, t))
    benchmark(lambda: backend.sync(gradient(net.params, x, t)))
    record_median(f"backprop ({backend.name})", benchmark, backend.name)
    benchmark.extra_info.update(device=backend.device_name, case="mnist")
