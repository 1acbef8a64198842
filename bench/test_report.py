"""bench/report.py and bench/report_data.py on a small made-up pytest-benchmark JSON: this checks
the numbers and the formatting, not speed."""
import json

import pytest
import report
import report_data

GPU = "cuda:0 (NVIDIA H100)"


def entry(suite, median, **info):
    """One benchmark as pytest-benchmark writes it (only the fields the report reads, and a few)."""
    stats = {"min": median, "max": median, "mean": median, "median": median, "rounds": 1}
    return {"group": None, "name": f"test_{suite}", "fullname": f"bench/x.py::test_{suite}",
            "params": None, "stats": stats, "extra_info": {"suite": suite, **info}}


def epoch(model, impl, times, device="cpu", compile_seconds=None, **info):
    """One entry per round, as the epoch suite records them."""
    flops = {"A": 2_000_000_000, "B": 5_000_000_000}[model]
    return [entry("epoch", t, model=model, impl=impl, device=device, round=n,
                  dataset="fashion-mnist", synthetic=True, batches=600, flops=flops,
                  compile_seconds=compile_seconds, worker_seconds=t, **info)
            for n, t in enumerate(times)]


def search_entries():
    """The search suite: the search's own clock (`seconds`) is what counts, not the median."""
    def search(label, executor, backend, seconds, pruned, trial_epochs):
        return entry("search", seconds + 1.0, label=label, executor=executor, backend=backend,
                     trials=100, epochs=50, seconds=seconds, trials_per_second=100 / seconds,
                     pruned=pruned, trial_epochs=trial_epochs, flops=trial_epochs * 4e8,
                     dataset="mnist-5k")
    return [search("book loop", "sequential (1 worker)", "numpy", 40.0, 0, 5000),
            search("sequential", "sequential (1 worker)", "numpy", 20.0, 60, 2000),
            search("processes", "processes (2 workers)", "numpy", 10.0, 60, 2000),
            search("vmap", "vmap (up to 100 trials per program)", "jax", 5.0, 60, 2000)]


def full_results():
    benchmarks = [
        # CPU peaks: numpy's 100 GFLOP/s is the best; jax's kind comes from its epoch device
        entry("matmul-peak", 0.5, impl="xpnet-numpy", gflops=100.0, n=2048, dtype="float32",
              library="numpy"),
        entry("matmul-peak", 0.9, impl="xpnet-jax", gflops=60.0, library="jax"),
        entry("matmul-peak", 0.9, impl="torch-cuda", gflops=1000.0, library="torch"),  # GPU
        # model A on the CPU: numpy's mean (0.493) would miss, its median (0.3) meets 0.60x
        *epoch("A", "xpnet-numpy", [0.3, 0.28, 0.9]),
        *epoch("A", "torch-cpu", [0.5, 0.52, 0.48]),
        *epoch("A", "xpnet-jax", [0.2, 0.21, 0.19], compile_seconds=1.5),
        *epoch("A", "xpnet-torch", [0.6, 0.55, 0.5]),  # 0.55 / 0.5: just meets 1.10x torch-cpu
        *epoch("A", "xpnet-cupy", [0.04], device=GPU),
        *epoch("A", "torch-cuda", [0.05], device=GPU),
        # model B: no torch-cpu; cupy misses 1.0x torch-cuda, xpnet-torch (GPU) misses 1.10x
        *epoch("B", "xpnet-numpy", [1.2, 1.3]),
        *epoch("B", "xpnet-cupy", [0.12], device=GPU),
        *epoch("B", "xpnet-torch", [0.115], device=GPU),
        *epoch("B", "torch-cuda", [0.1], device=GPU),
        entry("gradient", 12.0, label="book loop (numpy)", backend="numpy"),
        entry("gradient", 0.06, label="xpnet numerical (jax)", backend="jax"),
        entry("gradient", 0.0004, label="backprop (numpy)", backend="numpy"),
        *[entry("scaling", t, impl=impl, model="A", axis="batch_size", value=v, batches=60000 // v)
          for impl, k in (("xpnet-numpy", 1.0), ("torch-cpu", 2.0))
          for v, t in ((32, 0.9 * k), (100, 0.3 * k), (1000, 0.1 * k))],
        entry("scaling", 0.3, impl="xpnet-numpy", model="A", axis="hidden", value=50, batches=600),
        entry("scaling", 0.7, impl="xpnet-numpy", model="A", axis="hidden", value=200, batches=600),
        entry("scaling", 0.5, impl="torch-cpu", model="A", axis="hidden", value=50, batches=600),
        *search_entries(),
        entry("other-suite", 1.0, impl="xpnet-numpy"),  # ignored
        {**entry("epoch", 9.0), "extra_info": {}},  # no suite: ignored
    ]
    return {"machine_info": {"node": "box", "python_version": "3.12.3",
                             "cpu": {"brand_raw": "Made-up CPU 9000", "count": 16}},
            "commit_info": {"id": "0123456789abcdef", "dirty": False},
            "datetime": "2025-01-01T00:00:00", "version": "5.1.0", "benchmarks": benchmarks}


def run(tmp_path, data, capsys=None):
    path = tmp_path / "latest.json"
    path.write_text(json.dumps(data))
    assert report.main([str(path)]) == 0
    md = (tmp_path / "latest.md").read_text(encoding="utf-8")
    if capsys is not None:
        assert capsys.readouterr().out == md  # the Markdown is also printed
    return md


def table(md, heading):
    """The Markdown table right under the line `heading`, as a list of {column: cell}."""
    lines = md.splitlines()
    start = lines.index(heading)
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split(" | ")])
    header, _, *body = rows
    return [dict(zip(header, row)) for row in body]


def by(rows, column):
    return {row[column]: row for row in rows}


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    """One run on the full made-up results, shared by the tests that only read its output."""
    path = tmp_path_factory.mktemp("report") / "latest.json"
    path.write_text(json.dumps(full_results()))
    assert report.main([str(path)]) == 0
    return path.parent


@pytest.fixture
def md(out_dir):
    return (out_dir / "latest.md").read_text(encoding="utf-8")


def test_prints_the_markdown_it_writes(tmp_path, capsys):
    run(tmp_path, full_results(), capsys)


def test_header_names_machine_data_and_peak(md):
    assert "Made-up CPU 9000, 16 cores" in md
    assert "**Data:** fashion-mnist — **SYNTHETIC data**" in md
    assert "**GPU:** cuda:0 (NVIDIA H100)" in md
    assert "- **Matmul peak (cpu):** 100 GFLOP/s (xpnet-numpy, numpy, float32, n=2048)" in md
    assert "- **Matmul peak (gpu):** 1000 GFLOP/s (torch-cuda, torch)" in md


def test_real_data_is_not_flagged(tmp_path):
    data = full_results()
    for b in data["benchmarks"]:
        b["extra_info"]["synthetic"] = False
    md = run(tmp_path, data)
    assert "fashion-mnist (real data)" in md and "SYNTHETIC" not in md


def test_epoch_uses_median_over_rounds_and_ratio_to_torch(md):
    a = by(table(md, "### Model A: TwoLayerNet 784-50-10, sigmoid, SGD"), "impl")
    assert list(a) == ["xpnet-numpy", "xpnet-jax", "xpnet-torch", "xpnet-cupy", "torch-cpu",
                       "torch-cuda"]
    assert "vs baseline" not in a["xpnet-numpy"]  # no baseline rows, no such column
    numpy = a["xpnet-numpy"]
    assert (numpy["median s"], numpy["min s"], numpy["rounds"]) == ("0.3", "0.28", "3")
    assert numpy["vs torch"] == "0.60×"  # 0.3 / 0.5, not the mean 0.493 / 0.5
    assert numpy["target"] == "≤ 0.60× torch: met"
    assert a["torch-cpu"]["vs torch"] == "1.00×" and a["torch-cpu"]["target"] == "—"


def test_missed_targets_show_the_measured_ratio(md):
    a = by(table(md, "### Model A: TwoLayerNet 784-50-10, sigmoid, SGD"), "impl")
    jax = a["xpnet-jax"]
    assert jax["vs torch"] == "0.40×" and jax["compile s"] == "1.5"
    assert jax["target"] == "≤ 0.35× torch: missed (0.40×); ≤ 1.80× FLOP bound: missed (10.0×)"
    assert a["xpnet-numpy"]["compile s"] == "—"
    # the GPU impl is compared with torch-cuda, not torch-cpu
    assert a["xpnet-cupy"]["vs torch"] == "0.80×"
    assert a["xpnet-cupy"]["target"] == "≤ 1.00× torch: met"
    b = by(table(md, "### Model B: 784-100×5-10, ReLU, He init, Adam"), "impl")
    assert b["xpnet-cupy"]["target"] == "≤ 1.00× torch: missed (1.20×)"


def test_xpnet_torch_is_measured_against_the_native_pytorch_peer(md):
    a = by(table(md, "### Model A: TwoLayerNet 784-50-10, sigmoid, SGD"), "impl")
    assert a["xpnet-torch"]["vs torch"] == "1.10×"  # median 0.55 / torch-cpu 0.5
    assert a["xpnet-torch"]["target"] == "≤ 1.10× torch: met"
    b = by(table(md, "### Model B: 784-100×5-10, ReLU, He init, Adam"), "impl")
    torch = b["xpnet-torch"]  # on the GPU: divided by torch-cuda's 0.1
    assert (torch["device"], torch["vs torch"]) == (GPU, "1.15×")
    assert torch["target"] == "≤ 1.10× torch: missed (1.15×)"


def test_baseline_rows_follow_their_impl_and_give_its_ratio(tmp_path):
    data = {"benchmarks": [
        *epoch("A", "torch-cpu", [0.5]),
        *epoch("A", "xpnet-jax@baseline", [0.1], compile_seconds=1.0, baseline="a0d1959"),
        *epoch("A", "xpnet-jax", [0.2], compile_seconds=1.0),
        *epoch("A", "xpnet-numpy@baseline", [0.29, 0.3], baseline="a0d1959"),
        *epoch("A", "xpnet-numpy", [0.3, 0.31]),
        *epoch("B", "xpnet-numpy", [1.0])]}  # no baseline for model B: no column there
    md = run(tmp_path, data)
    assert "- **Baseline:** `a0d1959` (the IMPL@baseline rows)" in md
    a = by(table(md, "### Model A: TwoLayerNet 784-50-10, sigmoid, SGD"), "impl")
    assert list(a) == ["xpnet-numpy", "xpnet-numpy@baseline", "xpnet-jax", "xpnet-jax@baseline",
                       "torch-cpu"]
    numpy, jax = a["xpnet-numpy"], a["xpnet-jax"]
    assert numpy["vs baseline"] == "1.03×"  # 0.305 / 0.295
    assert numpy["target"] == "≤ 0.60× torch: missed (0.61×); ≤ 1.05× baseline: met"
    assert jax["vs baseline"] == "2.00×"
    assert jax["target"] == ("≤ 0.35× torch: missed (0.40×); ≤ 1.80× FLOP bound: — (no FLOP "
                             "bound); ≤ 1.05× baseline: missed (2.00×)")
    old = a["xpnet-numpy@baseline"]
    assert (old["vs baseline"], old["vs torch"], old["target"]) == ("—", "0.59×", "—")
    b = by(table(md, "### Model B: 784-100×5-10, ReLU, He init, Adam"), "impl")
    assert "vs baseline" not in b["xpnet-numpy"]
    assert b["xpnet-numpy"]["target"] == "≤ 0.65× torch: — (no torch-cpu)"


def test_flop_bound_is_flops_over_the_peak_of_the_same_kind_of_device(md):
    # model A, 2e9 flops: 0.02 s at the CPU's 100 GFLOP/s, 0.002 s at the GPU's 1000
    assert ("600 batches per epoch · 2 GFLOP of matmuls · FLOP bound (cpu) 0.02 s at 100 GFLOP/s"
            " · FLOP bound (gpu) 0.002 s at 1000 GFLOP/s") in md
    assert "FLOP bound (cpu) 0.05 s at 100 GFLOP/s" in md  # model B: 5e9 flops
    a = by(table(md, "### Model A: TwoLayerNet 784-50-10, sigmoid, SGD"), "impl")
    assert a["xpnet-jax"]["vs FLOP bound"] == "10.0×"  # 0.2 s / 0.02 s
    assert a["xpnet-numpy"]["vs FLOP bound"] == "15.0×"
    assert a["xpnet-cupy"]["vs FLOP bound"] == "20.0×"  # 0.04 s / 0.002 s


def test_missing_torch_gives_a_dash(md):
    b = by(table(md, "### Model B: 784-100×5-10, ReLU, He init, Adam"), "impl")
    numpy = b["xpnet-numpy"]
    assert numpy["median s"] == "1.25" and numpy["rounds"] == "2"
    assert numpy["vs torch"] == "—"
    assert numpy["target"] == "≤ 0.65× torch: — (no torch-cpu)"


def test_gradient_table(md):
    rows = table(md, "## Numerical gradient")
    assert [r["method"] for r in rows] == ["book loop (numpy)", "xpnet numerical (jax)",
                                           "backprop (numpy)"]
    ups = [r["speed-up vs the book loop"] for r in rows]
    assert ups == ["1.00×", "200×", "30000×"]
    assert rows[2]["median s"] == "0.0004"


def test_search_table_divides_by_both_sequential_runs(md):
    assert "100 trials × 50 epochs · data mnist-5k" in md
    rows = table(md, "## Hyperparameter search")
    assert [r["how"] for r in rows] == ["book loop", "sequential", "processes", "vmap"]
    rows = by(rows, "how")
    vmap, processes = rows["vmap"], rows["processes"]
    assert (vmap["seconds"], vmap["trials/s"], vmap["GFLOP/s"]) == ("5", "20", "160")
    assert (vmap["vs book loop"], vmap["vs sequential"]) == ("8.00×", "4.00×")
    assert vmap["target"] == ("≤ 60 s: met; ≥ 3× one after another: met vs the book's loop "
                              "(8.00×), met vs the same pruned trials (4.00×)")
    assert processes["target"] == ("≤ 60 s: met; ≥ 3× one after another: met vs the book's loop "
                                   "(4.00×), missed vs the same pruned trials (2.00×)")
    assert rows["sequential"]["target"] == "—" and rows["book loop"]["vs sequential"] == "0.50×"


def test_scaling_tables(md):
    batch = table(md, "### Model A: epoch seconds vs batch size")
    assert batch == [
        {"batch size": "32", "batches": "1875", "xpnet-numpy": "0.9", "torch-cpu": "1.8"},
        {"batch size": "100", "batches": "600", "xpnet-numpy": "0.3", "torch-cpu": "0.6"},
        {"batch size": "1000", "batches": "60", "xpnet-numpy": "0.1", "torch-cpu": "0.2"}]
    hidden = by(table(md, "### Model A: epoch seconds vs hidden width"), "hidden width")
    assert hidden["200"]["torch-cpu"] == "—" and hidden["200"]["xpnet-numpy"] == "0.7"


def test_png_is_written(md, out_dir):
    png = out_dir / "latest.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert md.rstrip().endswith("![epoch times and scaling](latest.png)")


def test_out_dir_and_stem(tmp_path):
    path = tmp_path / "latest.json"
    path.write_text(json.dumps(full_results()))
    assert report.main([str(path), "--out-dir", str(tmp_path / "out"), "--stem", "run1"]) == 0
    assert (tmp_path / "out" / "run1.md").exists() and (tmp_path / "out" / "run1.png").exists()


def test_only_the_gradient_suite(tmp_path, capsys):
    data = full_results()
    data["benchmarks"] = [b for b in data["benchmarks"]
                          if b["extra_info"].get("suite") == "gradient"]
    (tmp_path / "latest.png").write_bytes(b"stale")
    md = run(tmp_path, data, capsys)
    assert "## Numerical gradient" in md
    for absent in ("Full epoch", "Scaling", "**Data:**", "Matmul peak", "latest.png"):
        assert absent not in md
    assert not (tmp_path / "latest.png").exists()  # nothing to plot, and no stale plot left


def test_missing_optional_fields(tmp_path):
    data = {"benchmarks": [entry("epoch", 0.4, impl="xpnet-numpy", model="A"),
                           entry("epoch", 0.5, impl="torch-cpu", model="A")]}
    md = run(tmp_path, data)
    numpy = by(table(md, "### Model A: TwoLayerNet 784-50-10, sigmoid, SGD"), "impl")["xpnet-numpy"]
    assert numpy["vs torch"] == "0.80×" and numpy["vs FLOP bound"] == "—"  # no peak, no flops
    assert numpy["target"] == "≤ 0.60× torch: missed (0.80×)"
    assert "Matmul peak" not in md and "FLOP bound (" not in md
    assert "unknown CPU" in md and "**Data:** unknown\n" in md  # neither real nor synthetic


def test_a_bare_peak_bounds_the_cpu_only(tmp_path):
    data = {"benchmarks": [
        entry("matmul-peak", 0.1, gflops=50.0),  # no impl, no device: a CPU measurement
        *epoch("A", "xpnet-jax", [0.08], compile_seconds=2.0),
        *epoch("A", "xpnet-cupy", [0.01], device=GPU)]}
    md = run(tmp_path, data)
    a = by(table(md, "### Model A: TwoLayerNet 784-50-10, sigmoid, SGD"), "impl")
    assert "FLOP bound (cpu) 0.04 s at 50 GFLOP/s" in md and "FLOP bound (gpu)" not in md
    assert a["xpnet-jax"]["vs FLOP bound"] == "2.00×" and a["xpnet-cupy"]["vs FLOP bound"] == "—"
    assert a["xpnet-jax"]["target"] == ("≤ 0.35× torch: — (no torch-cpu); "
                                        "≤ 1.80× FLOP bound: missed (2.00×)")
    assert a["xpnet-cupy"]["target"] == "≤ 1.00× torch: — (no torch-cuda)"


def test_a_miss_never_prints_as_the_limit():
    row = {"vs_torch": 0.6004, "vs_bound": None, "torch": "torch-cpu"}
    assert report_data._target(row, [("torch", 0.60)]) == "≤ 0.60× torch: missed (0.600×)"
    row["vs_torch"] = 0.3 / 0.5
    assert report_data._target(row, [("torch", 0.60)]) == "≤ 0.60× torch: met"


@pytest.mark.parametrize("content", [None, "{not json", '{"machine_info": {}}', "[1, 2]"])
def test_bad_input_is_a_one_line_error_with_status_2(tmp_path, capsys, content):
    path = tmp_path / "latest.json"
    if content is not None:
        path.write_text(content)
    assert report.main([str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("report: error: ") and captured.err.count("\n") == 1
    assert not (tmp_path / "latest.md").exists()


def test_each_gradient_case_divides_by_its_own_book_loop():
    results = {"gradient": [{"label": "book loop (numpy)", "median": 20.0},
                            {"label": "xpnet numerical (jax)", "median": 0.05},
                            {"label": "book loop (numpy, dense)", "median": 30.0},
                            {"label": "xpnet numerical (jax, dense)", "median": 0.3, "device": "gpu"}]}
    rows = {label: (up, target) for label, _, up, target in report_data.gradient_rows(results)}
    assert [label for label, *_ in report_data.gradient_rows(results)][:2] == [
        "book loop (numpy)", "xpnet numerical (jax)"]  # MNIST first
    assert rows["xpnet numerical (jax)"][0] == pytest.approx(400)
    assert rows["xpnet numerical (jax, dense)"] == (pytest.approx(100), None)  # GPU goal: MNIST's
    assert report_data.gradient_case("xpnet numerical (jax, batchnorm)") == "batchnorm"
