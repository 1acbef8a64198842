"""Shared by the benchmark suites: the smoke-run switch, and the medians of the gradient and
book-script suites (their ratios of one run are printed at the end)."""
import os

import pytest

QUICK_VAR = "XPNET_BENCH_QUICK"
collect_ignore = ["gpu-kit"]  # the GPU check's packages (make gpu-check-prepare), tests and all

MEDIANS = {}
BOOK_MEDIANS = {}  # the book-script suite's: impl -> median s


@pytest.fixture(scope="session")
def quick(request):
    """A smoke run at a small size: under --benchmark-disable (CI's tests), or timed with
    XPNET_BENCH_QUICK=1 (the GPU check's dry run on the CPU)."""
    return bool(request.config.getoption("benchmark_disable")) or os.environ.get(QUICK_VAR) == "1"


@pytest.fixture
def record_median():
    """Call with (label, benchmark, backend) after a benchmark ran; the summary divides by the
    book loop, and the label goes into the JSON for bench/report.py. `scale` extrapolates a run
    over part of the work to all of it (the JSON's "seconds" then holds the extrapolated time)."""
    def record(label, benchmark, backend, scale=1.0):
        benchmark.extra_info.update(suite="gradient", label=label, backend=backend)
        if benchmark.stats is not None:  # None under --benchmark-disable
            MEDIANS[label] = benchmark.stats.stats.median * scale
            if scale != 1.0:
                benchmark.extra_info["seconds"] = MEDIANS[label]
    return record


@pytest.fixture
def record_book_median():
    """Call with (impl, benchmark) after a run of the book-script suite; the summary divides by
    the plain-NumPy run."""
    def record(impl, benchmark):
        benchmark.extra_info.update(suite="book-script", impl=impl)
        if benchmark.stats is not None:
            BOOK_MEDIANS[impl] = benchmark.stats.stats.median
    return record


def pytest_terminal_summary(terminalreporter):
    plain = next((m for impl, m in BOOK_MEDIANS.items() if impl.startswith("plain")), None)
    if plain is not None:
        terminalreporter.write_sep("-", "a chapter-6 script (batchnorm_compare.py), one whole run")
        terminalreporter.write_line(f"{'run':<34}{'median s':>12}{'vs plain numpy':>18}")
        for impl, median in BOOK_MEDIANS.items():
            terminalreporter.write_line(f"{impl:<34}{median:>12.3f}{median / plain:>17.2f}x")
    reference = MEDIANS.get("book loop (numpy)")
    if not MEDIANS or reference is None:
        return
    terminalreporter.write_sep("-", "TwoLayerNet(784, 50, 10) gradient of one batch of 100, float64")
    terminalreporter.write_line(f"{'method':<34}{'median s':>12}{'speed-up vs book loop':>24}")
    for label, median in sorted(MEDIANS.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{label:<34}{median:>12.5f}{reference / median:>23.1f}x")
