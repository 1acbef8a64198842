"""What a search found, for people: the trials ranked, the narrowed ranges, a few lines for the
terminal and the book's figure of the best 20 trials (matplotlib, imported when it is drawn)."""
import math

import numpy as np

from xpnet.search.common import TOP


def ranking(trials):
    """Trials best first: by final validation accuracy, finished ones before pruned ones."""
    return sorted(trials, key=lambda t: (not t["pruned"], t["final_val_acc"]), reverse=True)


def suggest_ranges(ranked):
    """The lr and λ ranges spanned by the best tenth of the trials (at least 2, at most TOP):
    the narrowed search space the book's next round would use."""
    best = ranked[:min(TOP, max(2, math.ceil(len(ranked) / 10)))]
    out = {"from_best": len(best)}
    for name in ("lr", "weight_decay"):
        values = [t[name] for t in best]
        out[name] = [min(values), max(values)]
        out[f"log10_{name}"] = [math.log10(min(values)), math.log10(max(values))]
    return out


def summarize(result):
    """A few lines for the terminal: what ran, the best trial, the narrowed ranges."""
    best, s = result.best, result.suggested
    pruned = sum(t["pruned"] for t in result.trials)
    return "\n".join([
        f"{len(result.trials)} trials ({pruned} pruned) of {result.config['epochs']} epochs; "
        f"{result.ran} run now with {result.executor} on {result.backend} in {result.seconds:.1f} s "
        f"({result.trials_per_second:.2f} trials/s)",
        f"best: val acc {best['final_val_acc']:.3f} with lr {best['lr']:.3g}, "
        f"weight decay {best['weight_decay']:.3g} (trial {best['number']})",
        f"suggested (the best {s['from_best']}): lr 10^{s['log10_lr'][0]:.1f} .. "
        f"10^{s['log10_lr'][1]:.1f}, weight decay 10^{s['log10_weight_decay'][0]:.1f} .. "
        f"10^{s['log10_weight_decay'][1]:.1f}"])


def plot_best(result, top=TOP):
    """The book's figure: one small panel per best trial, validation accuracy solid, training
    accuracy dashed, against the epoch."""
    from matplotlib.figure import Figure

    by_number = {t["number"]: t for t in result.trials}
    best = [by_number[n] for n in result.ranking[:top]]
    cols = 5
    rows = max(1, math.ceil(len(best) / cols))
    figure = Figure(figsize=(2.4 * cols, 2.1 * rows + 0.6), layout="constrained")
    for k, trial in enumerate(best):
        ax = figure.add_subplot(rows, cols, k + 1)
        x = np.arange(1, len(trial["val_acc"]) + 1)
        ax.plot(x, trial["val_acc"], label="validation")
        ax.plot(x, trial["train_acc"], "--", label="train")
        ax.set_xlim(1, max(2, result.config["epochs"]))
        ax.set_ylim(0.0, 1.0)
        ax.set_xticks([])
        if k % cols:
            ax.set_yticks([])
        pruned = " (pruned)" if trial["pruned"] else ""
        ax.set_title(f"Best-{k + 1}: val {trial['final_val_acc']:.2f}{pruned}\n"
                     f"lr {trial['lr']:.1e}, λ {trial['weight_decay']:.1e}", fontsize=7)
    s = result.suggested
    figure.suptitle(f"{len(result.trials)} trials: validation (solid) and training (dashed) "
                    f"accuracy of the best {len(best)}; suggested lr 10^[{s['log10_lr'][0]:.1f}, "
                    f"{s['log10_lr'][1]:.1f}], λ 10^[{s['log10_weight_decay'][0]:.1f}, "
                    f"{s['log10_weight_decay'][1]:.1f}]", fontsize=9)
    return figure
