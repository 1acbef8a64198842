"""The GPU check: one prepared, offline run that tests and times xpnet on CuPy, JAX and PyTorch
on a GPU machine that has those libraries but no package registry.

    bench/gpu_check.sh [PYTHON]                        make gpu-check (on the GPU machine)
    XPNET_GPU_CHECK_CPU=1 bench/gpu_check.sh .venv/bin/python   the same steps on the CPU, small

What the GPU machine lacks comes from bench/gpu-kit (`make gpu-check-prepare`, bench/gpu_kit.py,
on a CPU machine). The check never calls pip or the network: it puts the project and the kit on
PYTHONPATH and runs each step in a process of its own with its own time budget, so a failure or a
hang does not eat the other steps. Results go under $OUT (default bench/results/gpu):
gpu-check.md (the report), gpu-check.json (every step, test and benchmark), gpu-check.png,
tests.jsonl (one line per test, written as they finish) and log.txt (every step's output).
"""
import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))  # its neighbours, also when loaded as a pytest plugin
from gpu_kit import KIT  # noqa: E402
from gpu_probe import gpu_problems, run_probe  # noqa: E402
from gpu_report import RESULTS_VAR, merge_benchmarks, summarize_tests, write_report  # noqa: E402
import report_data  # noqa: E402

CPU_VAR = "XPNET_GPU_CHECK_CPU"
GPU_BACKENDS = ("cupy", "jax", "torch")
LIMIT_SECONDS = 8 * 60  # the whole check on the GPU: its steps' budgets and the probe's add up to less


# ---------------------------------------------------------------- the steps


class Step:
    """One step: a command run with the check's environment plus `env`, killed (with its worker
    processes) after `budget` seconds; `needs` names a module it cannot run without."""

    def __init__(self, name, what, budget, args, env=None, needs=None, benchmark=None):
        self.name, self.what, self.budget, self.args = name, what, budget, args
        self.env, self.needs, self.benchmark = env or {}, needs, benchmark


def steps(gpu, tmp):
    """The check's steps, in order; on the CPU (gpu False) the same steps at smoke size."""
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]

    def bench(name, *args):
        json_path = tmp / f"{name}.json"
        return [*pytest, *args, "--benchmark-only", f"--benchmark-json={json_path}",
                "--benchmark-columns=min,median,rounds"], json_path

    size = {"XPNET_BENCH_GPU": "1", "XPNET_BENCH_ROUNDS": "3"} if gpu else \
        {"XPNET_BENCH_QUICK": "1", "XPNET_BENCH_ROUNDS": "1",
         "XPNET_BENCH_IMPLS": "xpnet-numpy,xpnet-jax,xpnet-torch,torch-cpu"}
    backends = ",".join(GPU_BACKENDS) if gpu else "jax,torch"
    # on the GPU every test but this check's own (its dry run and kit need the CPU machine) and
    # the docs' (their examples run on numpy)
    tests = ["tests", "--ignore=tests/test_gpu_check.py", "--ignore=tests/test_docs.py"] if gpu else [
        "tests/test_device_safety.py", "tests/test_training.py",
        "-k", "device_safety or agrees_with_numpy"]
    if importlib.util.find_spec("xdist"):  # pytest-xdist, where there is one: the GPU machine's
        tests += ["-n", "6"]
    epoch, epoch_json = bench("epoch", "bench/test_bench_epoch.py", "-k", "test_epoch or matmul")
    conv, conv_json = bench("conv", "bench/test_bench_epoch.py", "-k", "test_epoch")
    # the conv model in a step of its own: a slow first conv on some library cannot cost A and B
    conv_size = {**size, "XPNET_BENCH_MODELS": "C"}
    if not gpu:  # the dry run: the compiled xpnet and the peer are enough to show the step works
        conv_size["XPNET_BENCH_IMPLS"] = "xpnet-jax,torch-cpu"
    gradient, gradient_json = bench("gradient", "bench/test_bench_gradient.py")
    search, search_json = bench("search", "bench/test_bench_search.py", "-k", "vmap")
    scaling, scaling_json = bench("scaling", "bench/test_bench_epoch.py", "-k", "test_scaling")
    return [
        Step("tests", f"the test suite on {backends.replace(',', ', ')}, equivalence to NumPy "
             "included", 150 if gpu else 240,
             [*pytest, "-p", "gpu_report", "-rfEs", *tests],
             env={"XPNET_TEST_BACKENDS": backends, "PYTHONPATH": _path(ROOT / "bench")}),
        Step("epoch", "epoch time of models A and B per implementation", 90 if gpu else 180,
             epoch, env={**size, "XPNET_BENCH_MODELS": "A,B"}, benchmark=epoch_json),
        Step("conv", "epoch time of the SimpleConvNet (model C) per implementation, with "
             "xpnet-numpy on the host as the CPU row", 60 if gpu else 180, conv, env=conv_size,
             benchmark=conv_json),
        Step("gradient", "numerical gradient of TwoLayerNet, batch 100, float64, vs the book's "
             "loop", 45 if gpu else 180, gradient, benchmark=gradient_json,
             env={"XPNET_BENCH_BOOK_ENTRIES": "400" if gpu else "100",
                  "XPNET_TEST_BACKENDS": "numpy," + backends,
                  "XPNET_BENCH_GRADIENT_CASES": "mnist"}),
        Step("search", "the 100-trial search, vmapped on JAX", 40 if gpu else 180, search,
             env=size, needs="optuna", benchmark=search_json),
        Step("scaling", "model A's epoch time vs batch size and hidden width", 45 if gpu else 180,
             scaling, env=size, benchmark=scaling_json),
    ]


def check_environment(gpu):
    """The environment every step runs in: the project and the kit on PYTHONPATH, the kit's data,
    no package index, and full float32 matmuls (no TF32) on every library."""
    env = dict(os.environ, PYTHONPATH=_path(ROOT, KIT / "site", os.environ.get("PYTHONPATH")),
               PIP_NO_INDEX="1", PYTHONUNBUFFERED="1",
               # several processes share the GPU: JAX must not take 75 % of it up front
               XLA_PYTHON_CLIENT_PREALLOCATE="false",
               # TF32 off: the float32 tolerances (1e-4) and a fair race need full float32 matmuls
               JAX_DEFAULT_MATMUL_PRECISION="float32", NVIDIA_TF32_OVERRIDE="0")
    if (KIT / "data").is_dir():
        env["XPNET_DATA"] = str(KIT / "data")
    if not gpu:
        env.update(JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="",
                   OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _path(*parts):
    return os.pathsep.join(str(p) for p in parts if p)


def run_step(step, env, log):
    """Run one step within its budget; returns its record (status, seconds, tail of its output)."""
    record = {"name": step.name, "what": step.what, "budget_s": step.budget}
    if step.needs and importlib.util.find_spec(step.needs) is None:
        record.update(status="skipped", seconds=0.0,
                      detail=f"{step.needs} is not installed here; run `make gpu-check-prepare` "
                             "on a CPU machine and carry bench/gpu-kit")
        return record
    env = dict(env, **{k: (_path(v, env["PYTHONPATH"]) if k == "PYTHONPATH" else v)
                       for k, v in step.env.items()})
    log.write(f"\n===== {step.name}: {' '.join(map(str, step.args))}\n")
    log.flush()
    start = time.perf_counter()
    process = subprocess.Popen(step.args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)  # its own group: the bench workers too
    try:
        code = process.wait(timeout=step.budget)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        code = None
    record["seconds"] = round(time.perf_counter() - start, 1)
    record["status"] = ("timed out" if code is None else "passed" if code == 0
                        else "no tests" if code == 5 else "failed")
    record["exit_code"] = code
    return record


# ---------------------------------------------------------------- commands


def run(out):
    """The whole check; returns the exit status (0 when every step passed or was skipped)."""
    gpu = os.environ.get(CPU_VAR) != "1"
    mode = "GPU" if gpu else "CPU dry run"
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("gpu-check.md", "gpu-check.json", "gpu-check.png", "tests.jsonl", "log.txt"):
        (out / stale).unlink(missing_ok=True)
    tmp = out / ".steps"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    env = check_environment(gpu)
    env[RESULTS_VAR] = str(out / "tests.jsonl")
    started = time.perf_counter()
    print(f"xpnet GPU check ({mode}) with {sys.executable}; results in {out}", flush=True)
    found = run_probe(env)
    problems = gpu_problems(found) if gpu else []
    if not gpu and "error" in found.get("xpnet", {}):
        problems = [f"xpnet cannot be imported: {found['xpnet']['error']}"]
    records = []
    if problems:
        write_report(out, mode, found, records, summarize_tests(out / "tests.jsonl"), None, None,
                     gpu, problems)
        print("gpu-check: stopped: " + "; ".join(problems), file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
        return 2
    with open(out / "log.txt", "w", encoding="utf-8") as log:
        for step in steps(gpu, tmp):
            record = run_step(step, env, log)
            records.append(record)
            print(f"  {record['name']:<9} {record['status']:<10} {record['seconds']:>6} s "
                  f"(budget {record['budget_s']} s)", flush=True)
    results = None
    merged = merge_benchmarks(records, tmp)
    if merged is not None:
        (tmp / "merged.json").write_text(json.dumps(merged), encoding="utf-8")
        results = report_data.load(tmp / "merged.json")
    text = write_report(out, mode, found, records, summarize_tests(out / "tests.jsonl"), merged,
                        results, gpu)
    shutil.rmtree(tmp, ignore_errors=True)
    print(text)
    print(f"gpu-check: {time.perf_counter() - started:.0f} s in all", flush=True)
    return 0 if all(r["status"] in ("passed", "skipped") for r in records) else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where the results go")
    return run(parser.parse_args(argv).out.resolve())


if __name__ == "__main__":
    sys.exit(main())
