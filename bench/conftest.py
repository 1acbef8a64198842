"""Collects the median time of each gradient benchmark and prints the speed-ups of one run."""
import pytest

MEDIANS = {}


@pytest.fixture
def record_median():
    """Call with (label, benchmark, backend) after a benchmark ran; the summary divides by the
    book loop, and the label goes into the JSON for bench/report.py."""
    def record(label, benchmark, backend):
        benchmark.extra_info.update(suite="gradient", label=label, backend=backend)
        if benchmark.stats is not None:  # None under --benchmark-disable
            MEDIANS[label] = benchmark.stats.stats.median
    return record


def pytest_terminal_summary(terminalreporter):
    reference = MEDIANS.get("book loop (numpy)")
    if not MEDIANS or reference is None:
        return
    terminalreporter.write_sep("-", "TwoLayerNet(784, 50, 10) gradient of one batch of 100, float64")
    terminalreporter.write_line(f"{'method':<34}{'median s':>12}{'speed-up vs book loop':>24}")
    for label, median in sorted(MEDIANS.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{label:<34}{median:>12.5f}{reference / median:>23.1f}x")
