"""Turns pytest-benchmark's JSON into a Markdown report and a PNG plot.

    python bench/report.py bench/results/latest.json [--out-dir DIR] [--stem NAME]

writes DIR/NAME.md and DIR/NAME.png (by default next to the JSON, with its stem) and prints the
Markdown. The numbers and verdicts come from bench/report_data.py.
"""
import argparse
import sys
from pathlib import Path

from impls import MODELS
from report_data import (AXES, BASELINE, BOOK, REFERENCE, SEARCH_BOOK, SEARCH_SEQUENTIAL, SUITES,
                         ReportError, _kind, _number, _order, epoch_rows, gradient_case, gradient_rows, load,
                         peaks, ratio, scaling_series, search_rows)


# ---------------------------------------------------------------- formatting


def secs(s):
    """Seconds to 3 significant digits ('0.3', '12.3', '1234'); '—' for None."""
    if s is None:
        return "—"
    return f"{s:.0f}" if s >= 1000 else f"{s:.3g}"




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
        title = MODELS[model]["title"] if model in MODELS else f"model {model}"
        out += ["", f"### Model {model}: {title}", ""]
        facts = []
        if rows[0]["batches"]:
            facts.append(f"{rows[0]['batches']} batches per epoch")
        if rows[0]["flops"]:
            what = "convolutions and matmuls" if "conv" in MODELS.get(model, {}) else "matmuls"
            facts.append(f"{rows[0]['flops'] / 1e9:.3g} GFLOP of {what}")
        for kind in ("cpu", "gpu"):  # the bound on each kind of device the model ran on
            row = next((r for r in rows if r["kind"] == kind and r["bound"]), None)
            if row:
                facts.append(f"FLOP bound ({kind}) {secs(row['bound'])} s "
                             f"at {gflops(peak[kind])} GFLOP/s")
        facts += [f"{r['impl']} timed on {r['timed_batches']} of the {r['batches']} batches, "
                  "its times scaled to the whole epoch" for r in rows if r["timed_batches"]]
        if facts:
            out += [" · ".join(facts), ""]
        # the optional columns, only where a row has them
        extra = [(head, key) for head, key in (("vs baseline", "vs_baseline"),
                                               (f"vs {BOOK}", "vs_book"),
                                               ("speed-up vs best CPU", "vs_cpu"))
                 if any(r[key] is not None for r in rows)]
        out += _table(
            ["impl", "device", "median s", "min s", "rounds", "vs torch"]
            + [head for head, _ in extra] + ["vs FLOP bound", "compile s", "target"],
            [[r["impl"], r["device"], secs(r["median"]), secs(r["min"]), r["rounds"],
              ratio(r["vs_torch"])] + [ratio(r[key]) for _, key in extra]
             + [ratio(r["vs_bound"]), secs(r["compile"]), r["target"] or "—"]
             for r in rows],
            "llrrrr" + "r" * len(extra) + "rrl")
    if out:
        out = ["", "## Full epoch", "",
               "Median over rounds; \"vs torch\" divides by PyTorch on the same kind of device "
               "(torch-cpu or torch-cuda); \"vs FLOP bound\" divides by the time the epoch's "
               "matmuls (and convolutions) take at the matmul peak measured on that kind of "
               "device; compile time is not in the median. plain-*: the same training "
               "hand-written in that library; matmuls-*: only the epoch's matmuls (with the batch "
               "gathers and a weight update), a floor for any implementation on that library at "
               f"these shapes; {BOOK}: the conv net in plain NumPy layers written the book's way "
               f"(\"vs {BOOK}\" divides by it). \"speed-up vs best CPU\": the fastest xpnet row on "
               "the CPU over a GPU row's time. IMPL@baseline: IMPL on the older checkout's xpnet "
               "(`make bench-compare`); \"vs baseline\" divides IMPL's time by it."] + out
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
    if any(gradient_case(label) != "mnist" for label, *_ in rows):
        note += ["Cases: 100 MNIST digits (no case named), `dense` (100 uniform [0, 1) inputs), "
                 "`batchnorm` (MultiLayerNetExtend 784-100×2-10 with BatchNorm on the digits); "
                 "each divides by its own case's book loop.", ""]
    return ["", "## Numerical gradient", ""] + note + _table(
        ["method", "median s", "speed-up vs the book loop"] + ["target"] * targets,
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
