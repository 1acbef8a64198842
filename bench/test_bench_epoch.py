"""Full-epoch training per implementation (xpnet per backend, and the PyTorch peer), the machine's
matmul peak for the FLOP lower bound, and the scaling of the epoch time with batch size and width.

Every implementation runs in a worker process of its own (bench/peers.py); the rounds of the
epoch suite are interleaved across implementations (round-major test order), so a noisy minute
of a shared machine hits them all alike. Each round is one epoch: 600 batches of 100 over the
60,000 training images in a shuffled order, float32, the device synced before the clock stops;
JAX compiles before the first round and reports its compile time apart. `bench/report.py` turns
the JSON into the Markdown table and plot. XPNET_BENCH_GPU=1 (`make bench-gpu`) benchmarks the
GPU implementations instead, and scales to the sizes where a GPU pulls away from the CPU (with
xpnet-numpy on the host as the CPU row; on the conv model that row times part of the epoch and
is scaled to all of it). XPNET_BENCH_IMPLS=a,b picks implementations, XPNET_BENCH_MODELS=C picks
models (impls without a version of a model skip it: bench/impls.py). With --benchmark-disable
(CI) or XPNET_BENCH_QUICK=1 everything runs once on 6,000 images (the conv model on fewer);
XPNET_BENCH_IMAGES=N times epochs over the first N images instead of all 60,000.

XPNET_BENCH_BASELINE=DIR (`make bench-compare`) adds IMPL@baseline to the epoch suite for
xpnet's impls: the same benchmark on the xpnet of the older checkout in DIR, for before/after.
"""
import os
import subprocess
import time

import pytest

from xpnet.data import resolve_dataset
from xpnet.data.datasets import IDX_FILES, SYSTEM_FASHION_MNIST_DIR
from xpnet.data.folders import default_data_dir

from impls import (BASELINE_IMPLS, BASELINE_VAR, CONV_MODELS, CPU_IMPLS, CPU_ROW, GPU_IMPLS, MODELS,
                   trains)
from peers import Worker, available

GPU = os.environ.get("XPNET_BENCH_GPU") == "1"
IMPLS = tuple(i.strip() for i in os.environ.get("XPNET_BENCH_IMPLS", "").split(",") if i.strip()) \
    or (GPU_IMPLS if GPU else CPU_IMPLS)
MODEL_NAMES = tuple(m.strip() for m in os.environ.get("XPNET_BENCH_MODELS", "").split(",")
                    if m.strip()) or tuple(MODELS)
if set(MODEL_NAMES) - set(MODELS):
    raise ValueError(f"XPNET_BENCH_MODELS={','.join(MODEL_NAMES)}: known models are {', '.join(MODELS)}")
ROUNDS = os.environ.get("XPNET_BENCH_ROUNDS")  # else each model's "rounds", else 5
BATCH, IMAGES, QUICK_IMAGES = 100, 60000, 6000
if GPU:
    SCALING = {"batch_size": [100, 1000, 10000], "hidden": [50, 4096]}
    SCALING_IMPLS = [i for i in IMPLS if i.startswith("xpnet-")] + ["xpnet-numpy"]  # the CPU row
else:
    SCALING = {"batch_size": [32, 64, 128, 256, 512, 1024], "hidden": [50, 128, 256, 512, 1024]}
    SCALING_IMPLS = [i for i in IMPLS if i.startswith("xpnet-")]
BASELINE = os.environ.get(BASELINE_VAR)
EPOCH_IMPLS = IMPLS + tuple(f"{impl}@baseline" for impl in IMPLS
                            if BASELINE and impl in BASELINE_IMPLS)


def model_impls(model):
    """The impls whose epoch of `model` is timed: those with a version of it (IMPL@baseline for
    the conv model only where the older checkout has the conv nets), and on a GPU run of the
    conv model the CPU row."""
    impls = [i for i in EPOCH_IMPLS if trains(i, model) and not (
        i.endswith("@baseline") and model in CONV_MODELS
        and not os.path.isfile(os.path.join(BASELINE, "xpnet", "nn", "convnets.py")))]
    return impls + [CPU_ROW] if GPU and model in CONV_MODELS and CPU_ROW not in impls else impls


def images(impl, model, quick):
    """(the training images `impl`'s epoch of `model` goes over, None for all of them; whether
    its time is to be scaled to the whole epoch's: the GPU run's CPU row on the conv model)."""
    spec = MODELS[model]
    if quick:
        return spec.get("quick_images", QUICK_IMAGES), False
    if os.environ.get("XPNET_BENCH_IMAGES"):  # a shorter epoch, for a look
        return int(os.environ["XPNET_BENCH_IMAGES"]), False
    if GPU and impl == CPU_ROW and spec.get("cpu_row_images"):
        return spec["cpu_row_images"], True
    return None, False


def baseline_commit():
    """The baseline checkout's commit (short hash), or its folder where git cannot tell."""
    done = subprocess.run(["git", "-C", BASELINE, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)
    return done.stdout.strip() or BASELINE


def bench_dataset():
    """MNIST when its files are present, else the full-size Fashion-MNIST from Debian's
    dataset-fashion-mnist (or the data dir), else synthetic data of the same shape."""
    if resolve_dataset("auto") == "mnist":
        return "mnist"
    for folder in (SYSTEM_FASHION_MNIST_DIR, default_data_dir() / "fashion-mnist"):
        if all((folder / name).is_file() for name in IDX_FILES):
            return "fashion-mnist"
    return "synthetic"


@pytest.fixture(scope="session")
def workers():
    started = {}

    def get(impl):
        ok, reason = available(impl)
        if not ok:
            pytest.skip(f"{impl} unavailable: {reason}")
        if impl not in started:
            started[impl] = Worker(impl, gpu=GPU)
        return started[impl]

    yield get
    for worker in started.values():
        worker.close()


@pytest.fixture(scope="session")
def runs(workers, quick):
    """(impl, model, batch_size, hidden) -> the worker's setup reply, set up once per session."""
    ready = {}
    dataset = bench_dataset()

    def get(impl, model, batch_size=BATCH, hidden=None, limit=QUICK_IMAGES if quick else None):
        key = (impl, model, batch_size, hidden, limit)
        if key not in ready:
            worker = workers(impl)
            reply = worker.call("setup", model=model, dataset=dataset, limit=limit,
                                batch_size=batch_size, hidden=hidden)
            ready[key] = (worker, {**reply, "dataset": dataset, "synthetic": dataset == "synthetic"})
        return ready[key]

    return get


#: Seconds of quiet before each timed epoch: the previous worker's idle threads (PyTorch's OpenMP
#: team, XLA's pool) spin for a while after their work and would steal the next one's cores.
PAUSE = 0.3


def time_epochs(benchmark, worker, run, rounds=1):
    """Time `rounds` epochs of a set-up run with pytest-benchmark (the call waits for the synced
    epoch; the worker's own clock is kept too, to show the IPC costs nothing)."""
    inner = []

    def epoch():
        inner.append(worker.call("epoch", run=run)["seconds"])

    benchmark.pedantic(epoch, setup=lambda: time.sleep(PAUSE), rounds=rounds, iterations=1)
    return min(inner)


EPOCH_CASES = [(model, r, impl) for model in MODEL_NAMES
               for r in range(int(ROUNDS or MODELS[model].get("rounds", 5)))
               for impl in model_impls(model)]


@pytest.mark.parametrize("model, round_, impl", EPOCH_CASES,
                         ids=[f"{m}-round{r}-{i}" for m, r, i in EPOCH_CASES])
def test_epoch(benchmark, runs, quick, model, round_, impl):
    if quick and round_ > 0:
        pytest.skip("smoke run: one round")
    limit, scaled = images(impl, model, quick)
    worker, setup = runs(impl, model, limit=limit)
    worker_seconds = time_epochs(benchmark, worker, setup["run"])
    batches, flops = setup["batches"], setup["flops"]
    if scaled:  # part of the epoch timed: the report scales it to the whole epoch
        scale = (IMAGES // BATCH) / batches
        benchmark.extra_info.update(timed_batches=batches, scale=scale)
        batches, flops = IMAGES // BATCH, flops * scale
    benchmark.extra_info.update(
        suite="epoch", model=model, impl=impl, round=round_, device=setup["device"],
        dataset=setup["dataset"], synthetic=setup["synthetic"], batches=batches,
        flops=flops, compile_seconds=setup["compile_seconds"], worker_seconds=worker_seconds)
    if impl.endswith("@baseline"):
        benchmark.extra_info["baseline"] = baseline_commit()
    assert worker_seconds > 0 and setup["batches"] == (limit or IMAGES) // BATCH


#: book-numpy's library is xpnet-numpy's: its peak is measured once.
PEAK_IMPLS = [i for i in IMPLS if not (i == "book-numpy" and "xpnet-numpy" in IMPLS)]


@pytest.mark.parametrize("impl", PEAK_IMPLS)
def test_matmul_peak(benchmark, workers, impl):
    """float32 n×n matmul throughput of each library: the best one sets the FLOP lower bound."""
    worker = workers(impl)
    reply = {}
    benchmark.pedantic(lambda: reply.update(worker.call("matmul")), rounds=1, iterations=1)
    benchmark.extra_info.update(suite="matmul-peak", impl=impl, **reply)
    assert reply["gflops"] > 0


SCALING_CASES = [(axis, value, impl) for axis, values in SCALING.items() for value in values
                 for impl in SCALING_IMPLS]


@pytest.mark.parametrize("axis, value, impl", SCALING_CASES,
                         ids=[f"{a}={v}-{i}" for a, v, i in SCALING_CASES])
def test_scaling(benchmark, runs, quick, axis, value, impl):
    """Model A's epoch time against the batch size (hidden 50) and the hidden width (batch 100)."""
    if quick and value not in (SCALING[axis][0], SCALING[axis][-1]):
        pytest.skip("smoke run: the smallest and the largest value only")
    args = {"batch_size": value} if axis == "batch_size" else {"hidden": value}
    worker, setup = runs(impl, "A", **args)
    time_epochs(benchmark, worker, setup["run"])
    benchmark.extra_info.update(suite="scaling", impl=impl, model="A", axis=axis, value=value,
                                batches=setup["batches"], device=setup["device"])
