"""Chapters 7 and 8: what the first convolution learns, and which digits the deep net gets wrong.

Both train one of the book's conv nets with `fit` (Adam lr 0.001, batches of 100, as the book's
train_convnet.py and train_deepnet.py) on the data set's images as (N, 1, 28, 28).
"""
import numpy as np

from xpnet.experiments.helpers import figure, jsonable
from xpnet.experiments.registry import experiment
from xpnet.nn.convnets import DeepConvNet, SimpleConvNet
from xpnet.nn.optimizers import Adam
from xpnet.nn.training import fit

LR, BATCH_SIZE = 0.001, 100
#: The accuracies after each epoch are measured on the first 1,000 images of each set, as the
#: book's Trainer does (evaluate_sample_num_per_epoch); the final test accuracy is on the whole
#: test set, predicted a batch at a time.
EVAL_SAMPLES = 1000


def images(data, train_size=None, test_size=None):
    """(train, test) of `data` as (N, 1, 28, 28) images, each set cut to its first `train_size`
    or `test_size` images (None: all)."""
    (x, t), (x_test, t_test) = data.train, data.test
    return ((x[:train_size].reshape(-1, 1, 28, 28), t[:train_size]),
            (x_test[:test_size].reshape(-1, 1, 28, 28), t_test[:test_size]))


def train(run, net, train_set, test_set, epochs, name):
    """Train `net` with the book's Adam on `train_set` for `epochs`; returns fit's epoch list as
    JSON-able dicts (a progress bar on a terminal, as the other experiments show)."""
    result = fit(net, Adam(lr=LR), train_set, test_set, epochs=epochs, batch_size=BATCH_SIZE,
                 seed=run.seed, progress=run.progress,
                 eval_samples=EVAL_SAMPLES, config={"experiment": name})
    return [{k: round(v, 6) if isinstance(v, float) else v for k, v in e._asdict().items()}
            for e in result.epochs]


def predict_labels(net, x, batch_size=BATCH_SIZE):
    """The labels `net` predicts for host images `x`, in inference mode (Dropout off), a batch at a
    time (one compiled program on JAX); a host int array."""
    backend, model = net.backend, net.model
    predict = backend.jit(lambda params, xb, state: model.predict(params, xb, False, state))
    labels = []
    for start in range(0, x.shape[0], batch_size):
        scores = predict(net.params, net.to_device(x[start:start + batch_size]), net.state)
        labels.append(np.argmax(backend.to_numpy(scores), axis=1))
    return np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64)


def neighbour_correlation(filters):
    """Mean over the filters of the correlation between horizontally and vertically adjacent
    weights: about 0 for random filters, clearly positive for smooth edge or blob patterns."""
    values = []
    for f in np.asarray(filters, dtype=np.float64).reshape(-1, *np.shape(filters)[-2:]):
        pairs = np.concatenate([np.stack([f[:, :-1].ravel(), f[:, 1:].ravel()]),
                                np.stack([f[:-1, :].ravel(), f[1:, :].ravel()])], axis=1)
        values.append(np.corrcoef(pairs)[0, 1])
    return float(np.mean(values))


def plural(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


def show_image(ax, image, title=None, **title_options):
    """An image in the book's style: matplotlib's gray_r (dark = large), scaled to its own
    min..max, no ticks, no frame."""
    ax.imshow(image, cmap="gray_r", interpolation="nearest")
    ax.set(xticks=[], yticks=[])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title is not None:
        ax.set_title(title, **title_options)


@experiment("conv-filters", data=True)
def conv_filters(run, *, epochs=None, train_size=None):
    """Figure 7-24: SimpleConvNet's 30 first-layer 5×5 filters before and after training.

    SimpleConvNet (conv 30×5×5 - relu - pool - affine 100 - relu - affine 10; weight std 0.01),
    Adam lr 0.001, batches of 100, 10 epochs on all training images (quick: 1 epoch on 1,000).
    The random filters become smooth edge and blob detectors: the correlation of neighbouring
    weights goes from about 0 to clearly positive."""
    epochs = epochs if epochs is not None else 1 if run.quick else 10
    train_size = train_size if train_size is not None else 1000 if run.quick else None
    train_set, test_set = images(run.data, train_size)
    net = SimpleConvNet(backend=run.backend, seed=run.seed)
    before = np.asarray(run.backend.to_numpy(net.params["W1"]), dtype=np.float64)
    history = train(run, net, train_set, test_set, epochs, "conv-filters")
    after = np.asarray(run.backend.to_numpy(net.params["W1"]), dtype=np.float64)
    accuracy = float(np.mean(predict_labels(net, test_set[0]) == test_set[1]))
    corr = {"before": neighbour_correlation(before), "after": neighbour_correlation(after)}

    n = before.shape[0]
    fig, axes = figure(2, n, width=0.45, height=0.75)
    for row, (label, filters) in enumerate([("before", before), (f"after {plural(epochs, 'epoch')}", after)]):
        for i, ax in enumerate(axes[row]):
            show_image(ax, filters[i, 0])
        axes[row, 0].set_ylabel(label, fontsize=9, rotation=0, ha="right", va="center")
    fig.suptitle(f"SimpleConvNet's {n} first-layer 5×5 filters before and after "
                 f"{plural(epochs, 'epoch')} of Adam on {len(train_set[1]):,} images of "
                 f"{run.data.name} (test accuracy {accuracy:.3f})\neach filter scaled to its own "
                 "range, dark = large", fontsize=9)

    change = np.linalg.norm(after - before) / np.linalg.norm(before)
    summary = "\n".join([
        f"SimpleConvNet after {plural(epochs, 'epoch')}: test accuracy {accuracy:.4f}",
        f"first-layer filters {before.shape}: |after - before| / |before| = {change:.2f}",
        f"correlation of neighbouring weights: before {corr['before']:+.3f}, "
        f"after {corr['after']:+.3f} (about 0 for noise, positive for smooth edges and blobs)"])
    numbers = {**run.describe(model="SimpleConvNet(conv 30×5×5, hidden 100, weight_init_std 0.01)",
                              optimizer=f"Adam(lr={LR})", batch_size=BATCH_SIZE,
                              train_size=len(train_set[1]), test_size=len(test_set[1])),
               "epochs": epochs, "eval_samples": EVAL_SAMPLES,
               "epoch_results": history, "test_accuracy": accuracy,
               "filter_shape": list(before.shape), "relative_change": float(change),
               "neighbour_correlation": corr,
               "filters_before": jsonable(before), "filters_after": jsonable(after)}
    return summary, numbers, fig


@experiment("misclassified", data=True)
def misclassified(run, *, epochs=None, train_size=None, test_size=None, max_shown=40):
    """Chapter 8.1: the test digits DeepConvNet gets wrong, with predicted and true labels.

    DeepConvNet (six 3×3 convolutions, He init, Dropout 0.5), Adam lr 0.001, batches of 100,
    5 epochs on all training images (quick: 1 epoch on 300, 300 test images); then the test set
    is predicted (Dropout off) and the first `max_shown` wrong ones drawn, titled "predicted /
    true" as in the book's misclassified_mnist.py. The JSON lists every wrong one."""
    epochs = epochs if epochs is not None else 1 if run.quick else 5
    train_size = train_size if train_size is not None else 300 if run.quick else None
    test_size = test_size if test_size is not None else 300 if run.quick else None
    train_set, (x_test, t_test) = images(run.data, train_size, test_size)
    net = DeepConvNet(backend=run.backend, seed=run.seed)
    history = train(run, net, train_set, (x_test, t_test), epochs, "misclassified")
    predicted = predict_labels(net, x_test)
    wrong = np.flatnonzero(predicted != t_test)
    accuracy = 1.0 - len(wrong) / len(t_test)
    listed = [{"index": int(i), "predicted": int(predicted[i]), "true": int(t_test[i])} for i in wrong]
    pairs, counts = np.unique(np.stack([t_test[wrong], predicted[wrong]], axis=1), axis=0,
                              return_counts=True) if len(wrong) else (np.zeros((0, 2), int), [])
    common = [{"true": int(a), "predicted": int(b), "count": int(c)}
              for (a, b), c in sorted(zip(pairs.tolist(), counts), key=lambda p: -p[1])]

    shown = wrong[:max_shown]
    cols = 8 if len(shown) > 20 else 5
    rows = max(1, -(-len(shown) // cols))
    fig, axes = figure(rows, cols, width=1.05, height=1.25)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, i in zip(axes.flat, shown):
        ax.set_axis_on()
        show_image(ax, x_test[i, 0], f"{predicted[i]} / {t_test[i]}", fontsize=10, color="tab:red")
    if not len(wrong):
        axes[0, 0].text(0.5, 0.5, "no test image misclassified", ha="center", va="center")
    fig.suptitle(f"DeepConvNet after {plural(epochs, 'epoch')} on {len(train_set[1]):,} images of "
                 f"{run.data.name}: {len(wrong)} of {len(t_test):,} test images wrong "
                 f"(accuracy {accuracy:.3f});\nthe first {len(shown)}, titled predicted / true",
                 fontsize=9)

    top = ", ".join(f"{c['true']}→{c['predicted']} ×{c['count']}" for c in common[:5])
    summary = "\n".join([
        f"DeepConvNet after {plural(epochs, 'epoch')}: test accuracy {accuracy:.4f} "
        f"({len(wrong)} of {len(t_test):,} wrong; the figure shows the first {len(shown)})",
        f"most frequent confusions (true→predicted): {top or 'none'}"])
    numbers = {**run.describe(model=repr(net), optimizer=f"Adam(lr={LR})", batch_size=BATCH_SIZE,
                              train_size=len(train_set[1]), test_size=len(t_test)),
               "epochs": epochs, "eval_samples": EVAL_SAMPLES,
               "epoch_results": history, "test_accuracy": accuracy,
               "misclassified_count": len(wrong), "shown": len(shown), "max_shown": max_shown,
               "misclassified": listed, "confusions": common}
    return summary, numbers, fig
