"""The GPU check's results: each test's outcome as it finishes (a pytest plugin: `-p gpu_report`),
the benchmarks merged, the targets judged, and gpu-check.md / gpu-check.json written."""
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its neighbours, also as a pytest plugin
from report import _table, markdown, plot  # noqa: E402
import report_data  # noqa: E402
from gpu_kit import manifest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS_VAR = "XPNET_GPU_CHECK_RESULTS"  # where the plugin writes each test's result


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
    count = tests["counts"]
    bad = count.get("failed", 0) + count.get("error", 0)
    out = [("every test passes", f"{'met' if bad == 0 and count else 'missed'} "
            f"({count.get('passed', 0)} passed, {bad} failed, {count.get('skipped', 0)} skipped)"),
           ("no implicit host↔device copies (transfer-guard test)",
            {"passed": "met", None: "— (did not run)"}.get(tests["transfer_guard"],
                                                          tests["transfer_guard"]))]
    if results is None:
        return out
    epochs = report_data.epoch_rows(results)
    rows = {(m, r["impl"]): r for m, model_rows in epochs.items() for r in model_rows}
    for impl in ("xpnet-jax", "xpnet-cupy", "xpnet-torch") if gpu else ():
        for model in epochs:
            row = rows.get((model, impl))
            if row and row["target"]:
                out.append((f"epoch of model {model}, {impl}", row["target"]))
    gradient = [(up, label, target) for label, _, up, target in report_data.gradient_rows(results)
                if target and up]
    if gradient:
        up, label, target = max(gradient)
        out.append((f"numerical gradient, best GPU backend ({label})",
                    f"{target.split(': ')[-1]} ({report_data.ratio(up)})"))
    for row in report_data.search_rows(results):
        if row["target"]:
            out.append((f"search ({row['label']}, {row['backend']})", row["target"]))
    return out


def write_report(out, mode, found, records, tests, merged, results, gpu, problems=()):
    """gpu-check.json (everything, the benchmarks as pytest-benchmark wrote them) and
    gpu-check.md (the report, with bench/report.py's tables and plot); returns the Markdown."""

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    kit = manifest()
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
    md += ["", "## Steps", ""] + _table(
        ["step", "status", "seconds", "budget s", "what"],
        [[r["name"], r["status"], r.get("seconds", "—"), r["budget_s"], r.get("detail", r["what"])]
         for r in records], "llrrl")
    if goals:
        md += ["", "## Targets", ""] + _table(["target", "verdict"], goals, "ll")
    if tests["counts"]:
        md += ["", "## Tests", "", ", ".join(f"{n} {k}" for k, n in sorted(tests["counts"].items()))]
        md += [""] + [f"- **{t['outcome']}** `{t['test']}`: {t['message']}" for t in tests["failures"]]
        if tests["skips"]:
            md += ["", "Skipped, by reason:", ""] + [f"- {n} × {reason}"
                                                    for reason, n in sorted(tests["skips"].items())]
    if results is not None:
        png = out / "gpu-check.png"
        drawn = plot(results, png)
        bench = markdown(results, png.name if drawn else None).split("\n", 1)[1]
        md += ["", "# Benchmarks", bench]
    text = "\n".join(md).rstrip() + "\n"
    (out / "gpu-check.md").write_text(text, encoding="utf-8")
    return text
