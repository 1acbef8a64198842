"""Chapter 6.4: overfitting 300 images with a deep net, and how weight decay and Dropout curb it."""
import time

import numpy as np

from xpnet.backends import get_backend
from xpnet.experiments import experiment, save_result
from xpnet.experiments.helpers import describe, figure, group, load_data, train_groups
from xpnet.nn import MultiLayerNet, MultiLayerNetExtend, SGD
from xpnet.nn.batching import epoch_orders

TRAIN_SIZE, BATCH_SIZE, LR = 300, 100, 0.01


def overfit(name, groups, labels, regulariser, data, epochs, backend, out_dir, quick, seed, progress,
            started, **settings):
    """Train `groups` (the plain net, then the regularised one) on the same batches for `epochs`,
    measuring train and test accuracy after every epoch (and before the first); plot one panel
    each and save. The gap is train − test accuracy, averaged over the last tenth of the epochs
    so that one noisy epoch does not decide it."""
    orders = epoch_orders(seed, len(data.train[0]), BATCH_SIZE, epochs)
    trained = train_groups(backend, groups, *data.train, orders, evals=[data.train, data.test],
                           seed=seed, progress=progress, desc=f"{name} on {backend.name}")
    counts = np.concatenate(trained.counts)  # (nets, epochs + 1, [train, test])
    accuracy = counts / np.array([len(data.train[1]), len(data.test[1])])
    tail = max(1, epochs // 10)
    fig, axes = figure(1, 2, width=4.6, height=3.6, sharey=True)
    curves, lines = {}, []
    for ax, label, acc in zip(axes[0], labels, accuracy):
        gap = float((acc[-tail:, 0] - acc[-tail:, 1]).mean())
        ax.plot(acc[:, 0], label="train")
        ax.plot(acc[:, 1], label="test")
        ax.set(title=f"{label}: gap {gap:.3f}", xlabel="epochs", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        curves[label] = {"train_accuracy": acc[:, 0].tolist(), "test_accuracy": acc[:, 1].tolist(),
                         "final_train_accuracy": float(acc[-1, 0]),
                         "final_test_accuracy": float(acc[-1, 1]), "gap": gap}
        lines.append(f"  {label:<22} train {acc[-1, 0]:.3f}  test {acc[-1, 1]:.3f}  gap {gap:.3f}")
    axes[0, 0].set_ylabel("accuracy")
    axes[0, 0].legend(loc="lower right")
    fig.suptitle(f"784-100×6-10 ReLU, SGD lr {LR}, {len(data.train[1])} training images of {data.name}")
    summary = "\n".join(
        [f"accuracy after {epochs} epochs, and the train-test gap (mean of the last {tail} epochs):"]
        + lines + [f"  gap with {regulariser} {curves[labels[1]]['gap']:.3f}, without "
                   f"{curves[labels[0]]['gap']:.3f}"])
    numbers = {**describe(backend, data, quick, seed, optimizer=f"SGD(lr={LR})", batch_size=BATCH_SIZE,
                          train_size=len(data.train[1]), test_size=len(data.test[1]), **settings),
               "epochs": epochs, "gap_epochs": tail, "curves": curves,
               "accuracy_index": "0: before training, e: after epoch e"}
    return save_result(name, summary, numbers, fig, out_dir, started)


@experiment("overfit-weight-decay")
def overfit_weight_decay(backend=None, dataset="auto", out_dir=".", quick=False, seed=0, progress=None):
    """Figures 6-20 and 6-21: overfitting 300 images, with and without weight decay λ = 0.1.

    MultiLayerNet 784-100×6-10 (ReLU, He) on 300 training images, SGD
    lr 0.01, batches of 100, 201 epochs (quick: 100), with weight decay λ = 0.1 and without.
    Without it the net learns the 300 images perfectly and the test accuracy stays far behind;
    with it the gap shrinks. Both nets start from the same weights and train in one program."""
    started = time.perf_counter()
    backend = get_backend(backend)
    data = load_data(dataset, train_size=TRAIN_SIZE)
    epochs, lam = (100 if quick else 201), 0.1
    nets = [MultiLayerNet(784, [100] * 6, 10, weight_decay_lambda=lam, backend=backend, seed=seed)
            for _ in range(2)]
    groups = [group(nets, SGD(lr=LR), weight_decays=[0.0, lam])]  # λ is an array: one program
    return overfit("overfit-weight-decay", groups, ["without weight decay", f"weight decay λ = {lam}"],
                   "weight decay", data, epochs, backend, out_dir, quick, seed, progress, started,
                   model="MultiLayerNet(784, [100]*6, 10, relu, he)", weight_decay_lambda=lam)


@experiment("overfit-dropout")
def overfit_dropout(backend=None, dataset="auto", out_dir=".", quick=False, seed=0, progress=None):
    """Figure 6-23: overfitting 300 images, with and without Dropout 0.2.

    MultiLayerNetExtend 784-100×6-10 (ReLU, He) on 300 training images, SGD lr
    0.01, batches of 100, 301 epochs (quick: 150), with Dropout 0.2 after every hidden layer and
    without (the book's Dropout: scale by 0.8 at test). Both from the same weights, same batches."""
    started = time.perf_counter()
    backend = get_backend(backend)
    data = load_data(dataset, train_size=TRAIN_SIZE)
    epochs, ratio = (150 if quick else 301), 0.2
    groups = [group([MultiLayerNetExtend(784, [100] * 6, 10, use_dropout=use, dropout_ratio=ratio,
                                         backend=backend, seed=seed)], SGD(lr=LR))
              for use in (False, True)]
    return overfit("overfit-dropout", groups, ["without Dropout", f"Dropout {ratio}"], "Dropout",
                   data, epochs, backend, out_dir, quick, seed, progress, started,
                   model="MultiLayerNetExtend(784, [100]*6, 10, relu, he)", dropout_ratio=ratio)
