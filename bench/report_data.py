"""The numbers of a pytest-benchmark JSON, as bench/report.py shows them: entries per suite, rows
per model and implementation with their ratios, and each row's verdict against its target.

Entries are told apart by extra_info["suite"]: "epoch", "matmul-peak", "scaling", "gradient"
and "search"; entries of any other suite (or none) are ignored.
"""
import json
from pathlib import Path
from statistics import median

from impls import IMPLS

SUITES = ("epoch", "matmul-peak", "scaling", "gradient", "search")
#: IMPL@baseline: IMPL on an older checkout's xpnet (`make bench-compare`); IMPL's time over its
#: time may be at most BASELINE_LIMIT.
BASELINE, BASELINE_LIMIT = "@baseline", 1.05
AXES = {"batch_size": "batch size", "hidden": "hidden width"}
REFERENCE = "book loop (numpy)"
BOOK = "book-numpy"  # the epoch suite's book-style NumPy conv net
#: The search suite's labels: the book's loop (sequential NumPy, no pruning) and the same pruned
#: trials one after another on NumPy, which the parallel executors are measured against.
SEARCH_BOOK, SEARCH_SEQUENTIAL = "book loop", "sequential"
#: Targets: the whole search per kind of device, and vs one after another.
SEARCH_SECONDS, SEARCH_SPEEDUP = {"cpu": 60.0, "gpu": 5.0}, 3.0
#: Target: the numerical gradient on a GPU at least this many times the book's loop.
GRADIENT_SPEEDUP_GPU = 1000.0
# (device kind, impl, model) -> [(what the time is divided by, the most it may be)]; rows with a
# baseline row also get ("baseline", BASELINE_LIMIT)
TARGETS = {
    ("cpu", "xpnet-numpy", "A"): [("torch", 0.60)],
    ("cpu", "xpnet-numpy", "B"): [("torch", 0.65)],
    ("cpu", "xpnet-jax", "A"): [("torch", 0.35), ("bound", 1.8)],
    ("cpu", "xpnet-jax", "B"): [("torch", 0.35), ("bound", 1.8)],
    ("cpu", "xpnet-torch", "A"): [("torch", 1.10)],
    ("cpu", "xpnet-torch", "B"): [("torch", 1.10)],
    ("gpu", "xpnet-jax", "A"): [("torch", 0.20)],
    ("gpu", "xpnet-torch", "A"): [("torch", 1.10)],
    ("gpu", "xpnet-torch", "B"): [("torch", 1.10)],
    ("gpu", "xpnet-cupy", "A"): [("torch", 1.0)],
    ("gpu", "xpnet-cupy", "B"): [("torch", 1.0)],
    ("cpu", "xpnet-numpy", "C"): [("book", 0.80)],
    ("cpu", "xpnet-jax", "C"): [("torch", 1.0)],
    ("gpu", "xpnet-jax", "C"): [("torch", 1.20), ("cpu", 20.0)],
    ("gpu", "xpnet-torch", "C"): [("torch", 1.20), ("cpu", 20.0)],
}
#: What a time is divided by, by name: torch (torch-cpu or torch-cuda, the row's kind of device),
#: the FLOP bound, IMPL@baseline, book-numpy (the conv net in the book's NumPy layers); and "cpu",
#: a speed-up that must be at least the goal: the fastest xpnet row on the CPU over this time.
GOALS = {"torch": "torch", "bound": "FLOP bound", "baseline": "baseline", "book": BOOK,
         "cpu": "best CPU"}




class ReportError(Exception):
    """A results file that cannot be read."""


# ---------------------------------------------------------------- reading


def load(path):
    """The JSON at path as {"machine", "datetime", "commit", and one list of entries per suite}.

    Each entry is its extra_info plus "median" and "min" (seconds) from its stats.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"cannot read {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise ReportError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ReportError(f"{path} is not pytest-benchmark JSON (no 'benchmarks' list)")
    results = {"machine": data.get("machine_info") or {}, "datetime": data.get("datetime"),
               "commit": data.get("commit_info") or {}, **{s: [] for s in SUITES}}
    for bench in data["benchmarks"]:
        info = bench.get("extra_info") if isinstance(bench, dict) else None
        stats = bench.get("stats") if isinstance(bench, dict) else None
        if not isinstance(info, dict) or not isinstance(stats, dict):
            continue
        if info.get("suite") in SUITES and _number(stats.get("median")):
            low = stats.get("min") if _number(stats.get("min")) else stats["median"]
            results[info["suite"]].append({**info, "median": stats["median"], "min": low})
    return results


def _number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _order(names):
    """Implementations in the usual order, unknown ones last, IMPL@baseline right after IMPL."""
    def key(name):
        impl, _, version = name.partition("@")
        return (IMPLS.index(impl) if impl in IMPLS else len(IMPLS), impl, version)
    return sorted(set(names), key=key)


def _kind(device):
    """'gpu' for a device string starting with cuda or gpu, else 'cpu'."""
    return "gpu" if str(device or "cpu").lower().startswith(("cuda", "gpu")) else "cpu"


def peaks(results):
    """{device kind: the matmul-peak entry with the most GFLOP/s on that kind of device}.

    A CPU time is bounded by the CPU's peak, a GPU time by the GPU's. An entry's kind comes from
    its device, else from the device its impl ran the epochs on, else from its impl's name.
    """
    ran_on = {e.get("impl"): e["device"] for s in ("epoch", "scaling") for e in results[s]
              if e.get("device")}
    best = {}
    for e in results["matmul-peak"]:
        if not (_number(e.get("gflops")) and e["gflops"] > 0):
            continue
        impl = str(e.get("impl", ""))
        gpu_name = "gpu" if "cuda" in impl or "cupy" in impl else "cpu"
        kind = _kind(e.get("device") or ran_on.get(e.get("impl")) or gpu_name)
        if e["gflops"] > best.get(kind, {}).get("gflops", 0):
            best[kind] = e
    return {kind: best[kind] for kind in sorted(best)}


def epoch_rows(results):
    """{model: [row per impl]}, with the median over rounds, ratios and targets."""
    groups = {}
    for e in results["epoch"]:
        groups.setdefault((str(e.get("model", "?")), str(e.get("impl", "?"))), []).append(e)
    peak = {kind: e["gflops"] for kind, e in peaks(results).items()}
    rows = {}
    for (model, impl), entries in groups.items():
        # part of the epoch timed: "scale" takes its time to the whole epoch's
        entries = [{**e, "median": e["median"] * e["scale"], "min": e["min"] * e["scale"]}
                   if _number(e.get("scale")) else e for e in entries]
        flops = next((e["flops"] for e in entries if _number(e.get("flops"))), None)
        compiles = [e["compile_seconds"] for e in entries if _number(e.get("compile_seconds"))]
        device = next((e["device"] for e in entries if e.get("device")), "cpu")
        top = peak.get(_kind(device))
        rows.setdefault(model, []).append({
            "impl": impl, "device": device, "kind": _kind(device),
            "median": median(e["median"] for e in entries),
            "min": min(e["min"] for e in entries), "rounds": len(entries),
            "compile": median(compiles) if compiles else None,
            "batches": next((e["batches"] for e in entries if e.get("batches")), None),
            "timed_batches": next((e["timed_batches"] for e in entries if e.get("timed_batches")),
                                  None),
            "flops": flops, "bound": flops / (top * 1e9) if flops and top else None})
    for model, model_rows in rows.items():
        times = {r["impl"]: r["median"] for r in model_rows}
        model_rows.sort(key=lambda r: _order(times).index(r["impl"]))
        cpu = [r for r in model_rows if r["kind"] == "cpu" and r["impl"].startswith("xpnet-")
               and BASELINE not in r["impl"]]
        best_cpu = min(cpu, key=lambda r: r["median"]) if cpu else None
        for r in model_rows:
            torch = "torch-cuda" if r["kind"] == "gpu" else "torch-cpu"
            r["torch"], r["best_cpu"] = torch, best_cpu["impl"] if best_cpu else None
            r["vs_torch"] = r["median"] / times[torch] if times.get(torch) else None
            r["vs_book"] = r["median"] / times[BOOK] if times.get(BOOK) else None
            r["vs_cpu"] = (best_cpu["median"] / r["median"] if best_cpu and r["kind"] == "gpu"
                           else None)
            r["vs_bound"] = r["median"] / r["bound"] if r["bound"] else None
            before = times.get(r["impl"] + BASELINE)
            r["vs_baseline"] = r["median"] / before if before else None
            goals = TARGETS.get((r["kind"], r["impl"], model), [])
            if r["vs_baseline"] is not None:
                goals = goals + [("baseline", BASELINE_LIMIT)]
            r["target"] = _target(r, goals)
    return dict(sorted(rows.items()))


def _target(row, goals):
    """'≤ 0.60× torch: met', '... missed (0.71×)', one clause per goal, joined by '; '; a speed-up
    goal reads '≥ 20.0× best CPU (xpnet-numpy): met (35.0×)'."""
    clauses = []
    for what, limit in goals:
        value, name = row[f"vs_{what}"], GOALS[what]
        if what == "cpu":
            verdict = ("— (no CPU row)" if value is None else
                       f"{'met' if value >= limit else 'missed'} ({ratio(value)})")
            clauses.append(f"≥ {ratio(limit)} {name}"
                           + (f" ({row['best_cpu']})" if row.get("best_cpu") else "") + f": {verdict}")
            continue
        if value is None:
            verdict = f"— (no {row['torch'] if what == 'torch' else name})"
        elif value <= limit * (1 + 1e-9):
            verdict = "met"
        else:  # never print a miss that rounds to the limit
            shown = ratio(value) if ratio(value) != ratio(limit) else f"{value:.3f}×"
            verdict = f"missed ({shown})"
        clauses.append(f"≤ {ratio(limit)} {name}: {verdict}")
    return "; ".join(clauses)


def scaling_series(results):
    """{(axis, model): {"values", "impls", "time": {(impl, value): s}, "batches": {value: n}}}."""
    groups = {}
    for e in results["scaling"]:
        if not _number(e.get("value")):
            continue
        key = (str(e.get("axis", "?")), str(e.get("model", "A")))
        groups.setdefault(key, {}).setdefault((str(e.get("impl", "?")), e["value"]), []).append(e)
    series = {}
    for key in sorted(groups, key=lambda k: (list(AXES).index(k[0]) if k[0] in AXES else 9, k)):
        cells = groups[key]
        series[key] = {
            "values": sorted({v for _, v in cells}),
            "impls": _order(i for i, _ in cells),
            "time": {c: median(e["median"] for e in es) for c, es in cells.items()},
            "batches": {v: e["batches"] for (_, v), es in cells.items() for e in es
                        if e.get("batches")}}
    return series


def gradient_case(label):
    """The input case a gradient label names: "xpnet numerical (jax, dense)" -> "dense";
    labels without one are the MNIST case."""
    inner = label[label.rfind("(") + 1:].rstrip(")")
    return inner.split(", ")[1] if ", " in inner else "mnist"


def gradient_rows(results):
    """[(label, median s, speed-up vs its case's book loop or None, target or None)], by case
    (MNIST first), slowest first within each; a numerical gradient on a GPU has the target
    GRADIENT_SPEEDUP_GPU on the MNIST case."""
    groups, on_gpu = {}, set()
    for e in results["gradient"]:  # "seconds": a time extrapolated from part of the work
        seconds = e["seconds"] if _number(e.get("seconds")) else e["median"]
        label = str(e.get("label", e.get("backend", "?")))
        groups.setdefault(label, []).append(seconds)
        if (_kind(e.get("device")) == "gpu" and label.startswith("xpnet numerical")
                and gradient_case(label) == "mnist"):
            on_gpu.add(label)
    times = {label: median(ts) for label, ts in groups.items()}
    cases = list(dict.fromkeys(["mnist"] + [gradient_case(label) for label in times]))
    rows = []
    for case in cases:
        reference = times.get(REFERENCE if case == "mnist" else f"{REFERENCE[:-1]}, {case})")
        for label, t in sorted(times.items(), key=lambda item: -item[1]):
            if gradient_case(label) != case:
                continue
            up = reference / t if reference else None
            target = None
            if label in on_gpu:
                target = f"≥ {GRADIENT_SPEEDUP_GPU:,.0f}×: " + (
                    "— (no book loop)" if up is None else "met" if up >= GRADIENT_SPEEDUP_GPU else "missed")
            rows.append((label, t, up, target))
    return rows


def search_rows(results):
    """[row per search label]: its time (the search's own clock), trials/s, ratios and targets."""
    times = {str(e.get("label", "?")): e for e in results["search"]}
    seconds = {label: e["seconds"] if _number(e.get("seconds")) else e["median"]
               for label, e in times.items()}
    rows = []
    for label, e in times.items():
        t, limit = seconds[label], SEARCH_SECONDS[_kind(e.get("device"))]
        speedup = {ref: seconds[ref] / t if ref in seconds else None
                   for ref in (SEARCH_BOOK, SEARCH_SEQUENTIAL)}
        target = None
        if label not in (SEARCH_BOOK, SEARCH_SEQUENTIAL):
            goals = [f"≤ {limit:.0f} s: " + ("met" if t <= limit else "missed")]
            # "the same trials one after another": the book's loop, or the same pruned trials
            verdicts = [("met" if speedup[ref] >= SEARCH_SPEEDUP else "missed")
                        + f" vs {name} ({ratio(speedup[ref])})"
                        for ref, name in ((SEARCH_BOOK, "the book's loop"),
                                          (SEARCH_SEQUENTIAL, "the same pruned trials"))
                        if speedup[ref] is not None]
            if verdicts:
                goals.append(f"≥ {SEARCH_SPEEDUP:.0f}× one after another: " + ", ".join(verdicts))
            target = "; ".join(goals)
        flops = e.get("flops")
        rows.append({"label": label, "executor": e.get("executor", "?"),
                     "backend": e.get("backend", "?"), "seconds": t,
                     "trials_per_second": e.get("trials_per_second"),
                     "trial_epochs": e.get("trial_epochs"), "pruned": e.get("pruned"),
                     "gflops": flops / t / 1e9 if _number(flops) and t > 0 else None,
                     "vs_book": speedup[SEARCH_BOOK], "vs_sequential": speedup[SEARCH_SEQUENTIAL],
                     "target": target})
    return sorted(rows, key=lambda r: -r["seconds"])

def ratio(r):
    """A ratio as '0.57×', '12.3×', '350×' or '0.012×'; '—' for None."""
    if r is None:
        return "—"
    if r >= 100:
        return f"{r:.0f}×"
    if r >= 10:
        return f"{r:.1f}×"
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"
