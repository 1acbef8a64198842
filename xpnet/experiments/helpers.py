"""What the chapter-6 experiments share: their data, many nets trained side by side on the same
batches (one compiled program on JAX, see xpnet.nn.stacked), loss smoothing, figures and
progress bars."""
import sys
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from xpnet.data import load_dataset
from xpnet.nn.batching import iteration_orders
from xpnet.nn.stacked import stack, stacked_programs, train_stacked
from xpnet.nn.training import initial_train_state


class Data(NamedTuple):
    name: str
    description: str
    train: tuple  # (x, t): float32 (N, 784) in [0, 1], int32 labels
    test: tuple


def load_data(dataset="auto", train_size=None):
    """The data set's normalized, flattened host arrays, the training set cut to its first
    `train_size` images (None: all) as the book's BatchNorm and overfitting experiments do."""
    data = load_dataset(dataset)
    (x, t), test = data.arrays(normalize=True, flatten=True)
    return Data(data.name, data.description, (x[:train_size], t[:train_size]), test)


class Group(NamedTuple):
    """Nets trained side by side that share a model and an optimizer and differ only in their
    arrays (initial weights, λ): on JAX one `vmap`ped step trains them all."""
    model: object
    optimizer: object
    states: list  # a TrainState per net


def group(nets, optimizer, weight_decays=None):
    """The Group of `nets` (same layers) trained by `optimizer`; `weight_decays` gives each net
    its λ (else each keeps its own)."""
    states = [initial_train_state(net, optimizer) for net in nets]
    if weight_decays is not None:
        states = [s._replace(weight_decay=nets[0].backend.asarray(lam, s.weight_decay.dtype))
                  for s, lam in zip(states, weight_decays)]
    return Group(nets[0].model, optimizer, states)


class Trained(NamedTuple):
    losses: list  # per group: (nets, iterations) host array of mini-batch losses
    counts: list  # per group: (nets, chunks + 1, evals) correct counts, [:, 0] before training


def train_groups(backend, groups, x, t, orders, evals=(), seed=0, progress=None, desc="training"):
    """Train every net of every group on the same batches: chunk c runs the steps of the index
    array `orders[c]` (an epoch, or a block of iterations), then counts right answers on each
    (x, t) of `evals` (`train_stacked`). The data goes to the device once; on JAX a chunk for all
    nets is one compiled program (see `stacked_programs`), compiled once.
    """
    x, t = backend.asarray(x, "float32"), backend.asarray(t)
    evals = [(backend.asarray(ex, "float32"), backend.asarray(et)) for ex, et in evals]
    orders_device = backend.asarray(np.asarray(orders), dtype=backend.index_dtype)
    chunk, count = (backend.jit(fn) for fn in
                    stacked_programs(backend, [(g.model, g.optimizer) for g in groups], seed))

    def host(per_group):  # a list of device arrays -> host arrays
        return [np.asarray(backend.to_numpy(a)) for a in per_group]

    states = [stack(backend, g.states) for g in groups]
    counts, losses = [host(count(states, evals))], []
    bar = tqdm(total=orders.shape[0] * orders.shape[1], unit="step", desc=desc, file=sys.stderr,
               disable=None if progress is None else not progress, leave=False, dynamic_ncols=True)

    def after(c, chunk_losses, chunk_counts):
        losses.append(host(chunk_losses))
        counts.append(host(chunk_counts))
        bar.update(orders.shape[1])

    # the book's unstable settings (weights of std 1) overflow to inf/NaN: that is their finding
    with bar, np.errstate(over="ignore", invalid="ignore"):
        train_stacked(backend, chunk, states, x, t, orders_device, evals, after)
    return Trained([np.concatenate([part[g] for part in losses]).T for g in range(len(groups))],
                   [np.stack([part[g] for part in counts], axis=1) for g in range(len(groups))])


def smooth(values, window):
    """Trailing moving average of `values` over `window` points (fewer at the start), as the
    book smooths its noisy mini-batch loss curves; a NaN spoils only the windows holding it."""
    values, kernel = np.asarray(values, dtype=np.float64), np.ones(window)
    return (np.convolve(values, kernel)[:len(values)]
            / np.convolve(np.ones(len(values)), kernel)[:len(values)])


def figure(rows, cols, width=3.2, height=2.6, **subplots):
    """A Figure on the Agg canvas (no pyplot state) and its (rows, cols) array of axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, **subplots)
    return fig, axes


def jsonable(array, digits=6):
    """A host array as nested lists of rounded floats, with None for NaN and infinities (JSON
    has no NaN)."""
    array = np.asarray(array, dtype=np.float64)
    rounded = np.round(array, digits).astype(object)
    rounded[~np.isfinite(array)] = None
    return rounded.tolist()


def describe(backend, data, quick, seed, **settings):
    """The numbers every experiment's JSON starts with: where and how it ran."""
    return {"backend": backend.name, "dataset": data.name if data else None,
            "dataset_description": data.description if data else None, "quick": quick,
            "seed": seed, **settings}


def loss_curves(run, groups, labels, iterations, batch_size, desc):
    """The book's iteration-based comparisons: train `groups` (one net per label, in order) for
    `iterations` mini-batches of `batch_size`, the same batches for all, from `run.data.train`.

    Returns (numbers, figure): every net's mini-batch losses, their moving average (window
    iterations/20) and the test accuracy every 100 iterations; the figure shows the smoothed
    losses, as the book plots them.
    """
    data, chunk = run.data, min(100, iterations)
    orders = iteration_orders(run.seed, len(data.train[0]), batch_size, iterations, chunk)
    trained = train_groups(run.backend, groups, *data.train, orders, evals=[data.test],
                           seed=run.seed, progress=run.progress, desc=desc)
    losses = np.concatenate(trained.losses)
    accuracy = np.concatenate(trained.counts)[:, :, 0] / len(data.test[1])
    window = max(1, iterations // 20)
    fig, axes = figure(1, 1, width=6.4, height=4.4)
    ax, curves = axes[0, 0], {}
    for label, loss, acc in zip(labels, losses, accuracy):
        smoothed = smooth(loss, window)
        ax.plot(np.arange(1, iterations + 1), smoothed, label=label)
        curves[label] = {"loss": jsonable(loss), "smoothed_loss": jsonable(smoothed),
                         "final_smoothed_loss": float(smoothed[-1]),
                         "test_accuracy": jsonable(acc), "final_test_accuracy": float(acc[-1])}
    top = np.nanmax([c["smoothed_loss"][window - 1] or np.nan for c in curves.values()])
    ax.set(xlabel="iterations", ylabel=f"training loss (moving average of {window})",
           ylim=(0, min(2.5, top * 1.05) if np.isfinite(top) else None))
    ax.legend()
    ax.grid(alpha=0.3)
    numbers = {"iterations": iterations, "batch_size": batch_size, "smoothing_window": window,
               "test_accuracy_every": chunk, "curves": curves}
    return numbers, fig
