"""Turns pytest-benchmark's JSON into a Markdown report and a PNG plot.

    python bench/report.py bench/results/latest.json [--out-dir DIR] [--stem NAME]

writes DIR/NAME.md and DIR/NAME.png (by default next to the JSON, with its stem) and prints the
Markdown. Entries are told apart by extra_info["suite"]: "epoch", "matmul-peak", "scaling",
"gradient" and "search"; entries of any other suite (or none) are ignored.
"""
import argparse
import json
import sys
from pathlib import Path
from statistics import median

SUITES = ("epoch", "matmul-peak", "scaling", "gradient", "search")
MODELS = {"A": "TwoLayerNet 784-50-10, sigmoid, SGD",
          "B": "784-100×5-10, ReLU, He init, Adam"}
IMPLS = ("xpnet-numpy", "xpnet-jax", "xpnet-torch", "xpnet-cupy", "torch-cpu", "torch-cuda")
#: IMPL@baseline: IMPL on an older checkout's xpnet (`make bench-compare`); IMPL's time over its
#: time may be at most BASELINE_LIMIT.
BASELINE, BASELINE_LIMIT = "@baseline", 1.05
AXES = {"batch_size": "batch size", "hidden": "hidden width"}
REFERENCE = "book loop (numpy)"
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
}
GOALS = {"torch": "torch", "bound": "FLOP bound", "baseline": "baseline"}  # their names


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
            "flops": flops, "bound": flops / (top * 1e9) if flops and top else None})
    for model, model_rows in rows.items():
        times = {r["impl"]: r["median"] for r in model_rows}
        model_rows.sort(key=lambda r: _order(times).index(r["impl"]))
        for r in model_rows:
            torch = "torch-cuda" if r["kind"] == "gpu" else "torch-cpu"
            r["torch"] = torch
            r["vs_torch"] = r["median"] / times[torch] if times.get(torch) else None
            r["vs_bound"] = r["median"] / r["bound"] if r["bound"] else None
            before = times.get(r["impl"] + BASELINE)
            r["vs_baseline"] = r["median"] / before if before else None
            goals = TARGETS.get((r["kind"], r["impl"], model), [])
            if r["vs_baseline"] is not None:
                goals = goals + [("baseline", BASELINE_LIMIT)]
            r["target"] = _target(r, goals)
    return dict(sorted(rows.items()))


def _target(row, goals):
    """'≤ 0.60× torch: met', '... missed (0.71×)', one clause per goal, joined by '; '."""
    clauses = []
    for what, limit in goals:
        value, name = row[f"vs_{what}"], GOALS[what]
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


def gradient_rows(results):
    """[(label, median s, speed-up vs the book loop or None, target or None)], slowest first;
    a numerical gradient on a GPU has the target GRADIENT_SPEEDUP_GPU."""
    groups, on_gpu = {}, set()
    for e in results["gradient"]:  # "seconds": a time extrapolated from part of the work
        seconds = e["seconds"] if _number(e.get("seconds")) else e["median"]
        label = str(e.get("label", e.get("backend", "?")))
        groups.setdefault(label, []).append(seconds)
        if _kind(e.get("device")) == "gpu" and label.startswith("xpnet numerical"):
            on_gpu.add(label)
    times = {label: median(ts) for label, ts in groups.items()}
    reference = times.get(REFERENCE)
    rows = []
    for label, t in sorted(times.items(), key=lambda item: -item[1]):
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


# ---------------------------------------------------------------- formatting


def secs(s):
    """Seconds to 3 significant digits ('0.3', '12.3', '1234'); '—' for None."""
    if s is None:
        return "—"
    return f"{s:.0f}" if s >= 1000 else f"{s:.3g}"


def ratio(r):
    """A ratio as '0.57×', '12.3×', '350×' or '0.012×'; '—' for None."""
    if r is None:
        return "—"
    if r >= 100:
        return f"{r:.0f}×"
    if r >= 10:
        return f"{r:.1f}×"
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


def gflops(g):
    return f"{g:.0f}" if g >= 100 else f"{g:.3g}"


def _table(header, rows, align):
    """A Markdown table; align holds 'l' or 'r' per column."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return [line(header), rule] + [line(row) for row in rows]


def _datasets(results):
    """The names of the epoch suite's data sets, comma-separated; '' without that suite."""
    return ", ".join(sorted({str(e.get("dataset", "unknown")) for e in results["epoch"]}))


def dataset_line(results):
    """The data set(s) of the epoch suite, flagging synthetic data; None without that suite."""
    epoch, names = results["epoch"], _datasets(results)
    if not epoch:
        return None
    if any(e.get("synthetic") for e in epoch):
        return f"{names} — **SYNTHETIC data** (random numbers of that shape: timings only)"
    return f"{names} (real data)" if all(e.get("synthetic") is False for e in epoch) else names


def markdown(results, png_name=None):
    """The whole report as Markdown; png_name, when given, is linked at the end."""
    machine = results["machine"]
    cpu = machine.get("cpu") if isinstance(machine.get("cpu"), dict) else {}
    brand = cpu.get("brand_raw") or machine.get("processor") or "unknown CPU"
    host = brand + (f", {cpu['count']} cores" if cpu.get("count") else "")
    if machine.get("python_version"):
        host += f", Python {machine['python_version']}"
    if machine.get("node"):
        host += f", node `{machine['node']}`"
    out = ["# xpnet benchmark report", "", f"- **Machine:** {host}"]
    gpus = sorted({str(e["device"]) for e in results["epoch"] if _kind(e.get("device")) == "gpu"})
    if gpus:
        out.append(f"- **GPU:** {', '.join(gpus)}")
    if dataset_line(results):
        out.append(f"- **Data:** {dataset_line(results)}")
    run = [str(results["datetime"])] if results["datetime"] else []
    if results["commit"].get("id"):
        dirty = " (dirty)" if results["commit"].get("dirty") else ""
        run.append(f"commit `{str(results['commit']['id'])[:10]}`{dirty}")
    if run:
        out.append(f"- **Run:** {', '.join(run)}")
    baselines = sorted({str(e["baseline"]) for e in results["epoch"] if e.get("baseline")})
    if baselines:
        shown = ", ".join(f"`{b}`" for b in baselines)
        out.append(f"- **Baseline:** {shown} (the IMPL{BASELINE} rows)")
    best = peaks(results)
    for kind, e in best.items():
        how = [str(e[k]) for k in ("impl", "library", "dtype") if e.get(k)]
        how += [f"n={e['n']}"] if e.get("n") else []
        out.append(f"- **Matmul peak ({kind}):** {gflops(e['gflops'])} GFLOP/s"
                   + (f" ({', '.join(how)})" if how else ""))
    out += _epoch_section(results, {kind: e["gflops"] for kind, e in best.items()})
    out += _gradient_section(results)
    out += _scaling_section(results)
    out += _search_section(results)
    if not any(results[s] for s in SUITES):
        out += ["", "No entries of a known suite (" + ", ".join(SUITES) + ") in this file."]
    if png_name:
        out += ["", f"![epoch times and scaling]({png_name})"]
    return "\n".join(out) + "\n"


def _epoch_section(results, peak):
    out = []
    for model, rows in epoch_rows(results).items():
        out += ["", f"### Model {model}: {MODELS.get(model, 'model ' + model)}", ""]
        facts = []
        if rows[0]["batches"]:
            facts.append(f"{rows[0]['batches']} batches per epoch")
        if rows[0]["flops"]:
            facts.append(f"{rows[0]['flops'] / 1e9:.3g} GFLOP of matmuls")
        for kind in ("cpu", "gpu"):  # the bound on each kind of device the model ran on
            row = next((r for r in rows if r["kind"] == kind and r["bound"]), None)
            if row:
                facts.append(f"FLOP bound ({kind}) {secs(row['bound'])} s "
                             f"at {gflops(peak[kind])} GFLOP/s")
        if facts:
            out += [" · ".join(facts), ""]
        compare = any(r["vs_baseline"] is not None for r in rows)  # its column only then
        out += _table(
            ["impl", "device", "median s", "min s", "rounds", "vs torch"]
            + ["vs baseline"] * compare + ["vs FLOP bound", "compile s", "target"],
            [[r["impl"], r["device"], secs(r["median"]), secs(r["min"]), r["rounds"],
              ratio(r["vs_torch"])] + [ratio(r["vs_baseline"])] * compare
             + [ratio(r["vs_bound"]), secs(r["compile"]), r["target"] or "—"]
             for r in rows],
            "llrrrr" + "r" * compare + "rrl")
    if out:
        out = ["", "## Full epoch", "",
               "Median over rounds; \"vs torch\" divides by PyTorch on the same kind of device "
               "(torch-cpu or torch-cuda); \"vs FLOP bound\" divides by the time the epoch's "
               "matmuls take at the matmul peak measured on that kind of device; compile time is "
               "not in the median. plain-*: the same training hand-written in that library; "
               "matmuls-*: only the epoch's matmuls (with the batch gathers and a weight update), "
               "a floor for any implementation on that library at these shapes. IMPL@baseline: IMPL "
               "on the older checkout's xpnet (`make bench-compare`); \"vs baseline\" divides "
               "IMPL's time by it."] + out
    return out


def _gradient_section(results):
    rows = gradient_rows(results)
    if not rows:
        return []
    extrapolated = next((e for e in results["gradient"] if e.get("label") == REFERENCE
                         and _number(e.get("seconds")) and e.get("entries")), None)
    note = ([f"The book loop ran on {extrapolated['entries_timed']:,} of the "
             f"{extrapolated['entries']:,} entries; its time is extrapolated to all of them.", ""]
            if extrapolated else [])
    targets = any(target for *_, target in rows)
    return ["", "## Numerical gradient", ""] + note + _table(
        ["method", "median s", f"speed-up vs {REFERENCE}"] + ["target"] * targets,
        [[label, secs(t), ratio(up)] + [target or "—"] * targets for label, t, up, target in rows],
        "lrr" + "l" * targets)


def _scaling_section(results):
    out = []
    for (axis, model), s in scaling_series(results).items():
        name = AXES.get(axis, axis)
        out += ["", f"### Model {model}: epoch seconds vs {name}", ""]
        with_batches = bool(s["batches"])
        header = [name] + (["batches"] if with_batches else []) + s["impls"]
        rows = [[v] + ([s["batches"].get(v, "—")] if with_batches else [])
                + [secs(s["time"].get((i, v))) for i in s["impls"]] for v in s["values"]]
        out += _table(header, rows, "r" * len(header))
    return (["", "## Scaling"] + out) if out else []


def _search_section(results):
    rows = search_rows(results)
    if not rows:
        return []
    first = results["search"][0]
    setup = [f"{first['trials']} trials × {first['epochs']} epochs" if first.get("trials") else None,
             f"data {first['dataset']}" if first.get("dataset") else None]
    note = ("One run each, from an empty study: opening it, starting workers and compiling are in "
            "the time. GFLOP/s: the matmul FLOPs of the trial-epochs run (training and both "
            "accuracy counts) over that time. \"vs sequential\" divides by the same pruned trials "
            "run one after another on NumPy; \"vs book loop\" by the book's way (no pruning).")
    return ["", "## Hyperparameter search", "", " · ".join(x for x in setup if x), "", note,
            ""] + _table(
        ["how", "executor", "backend", "seconds", "trials/s", "trial-epochs", "pruned", "GFLOP/s",
         "vs book loop", "vs sequential", "target"],
        [[r["label"], r["executor"], r["backend"], secs(r["seconds"]),
          secs(r["trials_per_second"]), r["trial_epochs"] if r["trial_epochs"] is not None else "—",
          r["pruned"] if r["pruned"] is not None else "—",
          gflops(r["gflops"]) if r["gflops"] else "—", ratio(r["vs_book"]),
          ratio(r["vs_sequential"]), r["target"] or "—"] for r in rows],
        "lllrrrrrrrl")


# ---------------------------------------------------------------- plotting


def plot(results, path):
    """Saves up to four panels (epoch bars, scaling per axis, the search) to path; False if none
    had data."""
    rows, series, search = epoch_rows(results), scaling_series(results), search_rows(results)
    panels = (["epoch"] if rows else []) + list(series) + (["search"] if search else [])
    if not panels:
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter, NullLocator

    impls = _order([r["impl"] for rs in rows.values() for r in rs]
                   + [i for s in series.values() for i in s["impls"]])
    color = {impl: f"C{n % 10}" for n, impl in enumerate(impls)}
    fig = Figure(figsize=(5.5 * len(panels), 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        if panel == "epoch":
            _epoch_bars(ax, rows, color)
            continue
        if panel == "search":
            _search_bars(ax, search, results["search"][0])
            continue
        s, (axis, model) = series[panel], panel
        for impl in s["impls"]:
            points = [(v, s["time"][(impl, v)]) for v in s["values"] if (impl, v) in s["time"]]
            ax.plot(*zip(*points), "o-", color=color[impl], label=impl)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(s["values"], [str(v) for v in s["values"]])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set(title=f"Model {model}: epoch time vs {AXES.get(axis, axis)}",
               xlabel=AXES.get(axis, axis), ylabel="seconds per epoch (log)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    title = "xpnet benchmarks" + (f" on {_datasets(results)}" if results["epoch"] else "")
    if any(e.get("synthetic") for e in results["epoch"]):
        title += " (synthetic data: timings only)"
    plain = FuncFormatter(lambda y, _: secs(y))
    for ax in axes[:len(panels) - bool(search)]:  # plain numbers (0.3, not 3×10⁻¹); minor ones only within a decade
        low, high = ax.get_ylim()
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain if high / low < 10 else NullFormatter())
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    return True


def _search_bars(ax, rows, first):
    """One bar per way of running the search: its seconds, trials/s and speed-ups."""
    rows = rows[::-1]  # barh draws from the bottom up: the slowest (the book's loop) on top
    ax.barh(range(len(rows)), [r["seconds"] for r in rows], color="C0")
    for y, r in enumerate(rows):
        ups = [f"{ratio(r[k])} {name}" for k, name in (("vs_book", "book loop"),
                                                      ("vs_sequential", "sequential"))
               if r[k] is not None and r["label"] not in (SEARCH_BOOK, SEARCH_SEQUENTIAL)]
        text = f" {secs(r['seconds'])} s" + (f", {secs(r['trials_per_second'])} trials/s"
                                             if r["trials_per_second"] else "")
        ax.text(r["seconds"], y, text + (f"\n {', '.join(ups)}" if ups else ""), va="center",
                fontsize=8)
    ax.set_yticks(range(len(rows)), [f"{r['label']}\n({r['backend']})" for r in rows])
    ax.set_xlim(0, 1.45 * max(r["seconds"] for r in rows))
    setup = [f"{first['trials']} trials × {first['epochs']} epochs" if first.get("trials") else "",
             str(first.get("dataset", ""))]
    setup = ", ".join(x for x in setup if x)
    ax.set(title="Hyperparameter search" + (f" ({setup})" if setup else ""), xlabel="seconds (one run)")
    ax.grid(True, axis="x", alpha=0.3)


def _epoch_bars(ax, rows, color):
    """Grouped bars: one group per model, one bar per impl, lines at the FLOP bounds."""
    models = list(rows)
    impls = _order(r["impl"] for rs in rows.values() for r in rs)
    width = 0.8 / len(impls)
    for n, impl in enumerate(impls):
        xs, ts = zip(*[(m + (n - (len(impls) - 1) / 2) * width, r["median"])
                       for m, model in enumerate(models) for r in rows[model]
                       if r["impl"] == impl])
        bars = ax.bar(xs, ts, width, color=color[impl], label=impl)
        ax.bar_label(bars, [secs(t) for t in ts], fontsize=7, padding=1)
    labelled = set()
    for m, model in enumerate(models):
        for kind, style in (("cpu", "--"), ("gpu", ":")):
            bound = next((r["bound"] for r in rows[model] if r["kind"] == kind and r["bound"]), None)
            if bound:
                ax.hlines(bound, m - 0.45, m + 0.45, colors="k", linestyles=style,
                          label=None if kind in labelled else f"FLOP bound ({kind})")
                labelled.add(kind)
    ax.set_yscale("log")
    ax.set_xticks(range(len(models)), [f"model {m}" for m in models])
    ax.set(title="Full epoch, median over rounds", ylabel="seconds per epoch (log)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.08))  # below


# ---------------------------------------------------------------- command line


def main(argv=None):
    """Writes <stem>.md and <stem>.png, prints the Markdown; returns 0, or 2 on a bad input."""
    parser = argparse.ArgumentParser(prog="report", description=__doc__.splitlines()[0])
    parser.add_argument("json", help="pytest-benchmark JSON (--benchmark-json)")
    parser.add_argument("--out-dir", help="where to write (default: next to the JSON)")
    parser.add_argument("--stem", help="output file name without suffix (default: the JSON's)")
    args = parser.parse_args(argv)
    source = Path(args.json)
    out_dir = Path(args.out_dir) if args.out_dir else source.parent
    stem = args.stem or source.stem
    try:
        results = load(source)
        out_dir.mkdir(parents=True, exist_ok=True)
        png = out_dir / f"{stem}.png"
        drawn = plot(results, png)
        if not drawn:
            png.unlink(missing_ok=True)  # a stale plot of an earlier run would mislead
        text = markdown(results, png.name if drawn else None)
        (out_dir / f"{stem}.md").write_text(text, encoding="utf-8")
    except (ReportError, OSError) as e:
        print(f"report: error: {e}", file=sys.stderr)
        return 2
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
