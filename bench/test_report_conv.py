"""The conv model's rows in bench/report.py, bench/report_data.py and the GPU check's targets, on
made-up pytest-benchmark JSON (the helpers are bench/test_report.py's): numbers and formatting,
not speed."""
import json

import pytest

import gpu_report
import report_data
from impls import MODELS
from test_report import GPU, by, entry, run, table

HEADING = f"### Model C: {MODELS['C']['title']}"
FLOPS = 259_560_000_000  # the conv model's epoch: bench/test_book_convnet.py


def conv(impl, times, device="cpu", **info):
    return [entry("epoch", t, model="C", impl=impl, device=device, round=n, dataset="mnist",
                  synthetic=False, batches=600, flops=FLOPS, compile_seconds=None, **info)
            for n, t in enumerate(times)]


def cpu_run():
    """A CPU run: xpnet-numpy at exactly 0.80× book-numpy, xpnet-jax 1.20× torch-cpu."""
    return {"benchmarks": [
        entry("matmul-peak", 1.0, impl="xpnet-numpy", gflops=100.0),
        *conv("xpnet-numpy", [8.0, 7.5, 9.0]), *conv("book-numpy", [10.0, 11.0, 9.5]),
        *conv("xpnet-jax", [3.0, 3.1, 2.9]), *conv("xpnet-torch", [5.0]),
        *conv("torch-cpu", [2.5, 2.4, 2.6])]}


def gpu_run():
    """A GPU run: the CPU row (xpnet-numpy on the host) timed on 20 of 600 batches, 0.3 s -> 9 s."""
    return {"benchmarks": [
        entry("matmul-peak", 0.01, impl="torch-cuda", gflops=10_000.0),
        *conv("xpnet-jax", [0.55, 0.6, 0.5], device=GPU),
        *conv("xpnet-torch", [0.4, 0.41], device=GPU),
        *conv("xpnet-cupy", [0.9], device=GPU),
        *conv("torch-cuda", [0.5, 0.5], device=GPU),
        *conv("xpnet-numpy", [0.3, 0.31, 0.29], timed_batches=20, scale=30.0)]}


@pytest.fixture(scope="module")
def cpu_md(tmp_path_factory):
    return run(tmp_path_factory.mktemp("cpu"), cpu_run())


@pytest.fixture(scope="module")
def gpu_md(tmp_path_factory):
    return run(tmp_path_factory.mktemp("gpu"), gpu_run())


def test_conv_cpu_targets_divide_by_the_book_style_numpy_and_torch_cpu(cpu_md):
    md = cpu_md
    rows = by(table(md, HEADING), "impl")
    assert list(rows) == ["xpnet-numpy", "xpnet-jax", "xpnet-torch", "torch-cpu", "book-numpy"]
    numpy, jax = rows["xpnet-numpy"], rows["xpnet-jax"]
    assert numpy["vs book-numpy"] == "0.80×" and numpy["target"] == "≤ 0.80× book-numpy: met"
    assert rows["book-numpy"]["vs book-numpy"] == "1.00×" and rows["book-numpy"]["target"] == "—"
    assert jax["vs torch"] == "1.20×" and jax["target"] == "≤ 1.00× torch: missed (1.20×)"
    assert "speed-up vs best CPU" not in numpy  # no GPU row, no such column
    assert rows["xpnet-torch"]["target"] == "—"


def test_conv_flop_bound_counts_convolutions_and_matmuls(cpu_md):
    md = cpu_md
    assert ("600 batches per epoch · 260 GFLOP of convolutions and matmuls · "
            "FLOP bound (cpu) 2.6 s at 100 GFLOP/s") in md
    rows = by(table(md, HEADING), "impl")
    assert rows["xpnet-numpy"]["vs FLOP bound"] == "3.08×"  # 8.0 s / 2.5956 s


def test_conv_gpu_targets_against_torch_cuda_and_the_scaled_cpu_row(gpu_md):
    md = gpu_md
    assert "xpnet-numpy timed on 20 of the 600 batches, its times scaled to the whole epoch" in md
    rows = by(table(md, HEADING), "impl")
    numpy, jax, torch = rows["xpnet-numpy"], rows["xpnet-jax"], rows["xpnet-torch"]
    assert (numpy["median s"], numpy["min s"], numpy["device"]) == ("9", "8.7", "cpu")
    assert numpy["target"] == "≤ 0.80× book-numpy: — (no book-numpy)"
    assert "vs book-numpy" not in numpy  # no book-numpy row, no such column
    # 9 s / 0.55 s = 16.4×: faster than torch-cuda's 1.20× limit allows, not 20× the CPU row
    assert jax["speed-up vs best CPU"] == "16.4×"
    assert jax["target"] == ("≤ 1.20× torch: met; "
                             "≥ 20.0× best CPU (xpnet-numpy): missed (16.4×)")
    assert torch["target"] == "≤ 1.20× torch: met; ≥ 20.0× best CPU (xpnet-numpy): met (22.2×)"
    assert rows["xpnet-cupy"]["speed-up vs best CPU"] == "10.0×"
    assert rows["xpnet-cupy"]["target"] == "—" and numpy["speed-up vs best CPU"] == "—"


def test_the_speed_up_goal_says_when_there_is_no_cpu_row(tmp_path):
    data = gpu_run()
    data["benchmarks"] = [b for b in data["benchmarks"]
                          if b["extra_info"].get("impl") != "xpnet-numpy"]
    rows = by(table(run(tmp_path, data), HEADING), "impl")
    assert rows["xpnet-jax"]["target"] == "≤ 1.20× torch: met; ≥ 20.0× best CPU: — (no CPU row)"


def test_the_gpu_check_lists_the_conv_targets(tmp_path):
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(gpu_run()))
    tests = {"counts": {"passed": 1}, "transfer_guard": "passed"}
    goals = dict(gpu_report.targets(report_data.load(path), tests, gpu=True))
    assert goals["epoch of model C, xpnet-torch"] == ("≤ 1.20× torch: met; ≥ 20.0× best CPU "
                                                      "(xpnet-numpy): met (22.2×)")
    assert goals["epoch of model C, xpnet-jax"].endswith("missed (16.4×)")
    assert "epoch of model C, xpnet-cupy" not in goals  # no target of its own on the conv model
