"""Chapter 6.4: overfitting 300 images with a deep net, and how weight decay and Dropout curb it."""
import numpy as np

from xpnet.experiments.helpers import figure, group, train_groups
from xpnet.experiments.registry import experiment
from xpnet.nn import MultiLayerNet, MultiLayerNetExtend, SGD
from xpnet.nn.batching import epoch_orders

TRAIN_SIZE, BATCH_SIZE, LR = 300, 100, 0.01


def overfit(run, name, groups, labels, regulariser, epochs, **settings):
    """Train `groups` (the plain net, then the regularised one) on the same batches for `epochs`,
    measuring train and test accuracy after every epoch (and before the first); returns the
    summary, numbers and figure (one panel each) of experiment `name`. The gap is train − test
    accuracy, averaged over the last tenth of the epochs so that one noisy epoch does not decide
    it."""
    backend, data = run.backend, run.data
    orders = epoch_orders(run.seed, len(data.train[0]), BATCH_SIZE, epochs)
    trained = train_groups(backend, groups, *data.train, orders, evals=[data.train, data.test],
                           seed=run.seed, progress=run.progress, desc=f"{name} on {backend.name}")
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
    numbers = {**run.describe(optimizer=f"SGD(lr={LR})", batch_size=BATCH_SIZE,
                              train_size=len(data.train[1]), test_size=len(data.test[1]), **settings),
               "epochs": epochs, "gap_epochs": tail, "curves": curves,
               "accuracy_index": "0: before training, e: after epoch e"}
    return summary, numbers, fig


@experiment("overfit-weight-decay", data=True, train_size=TRAIN_SIZE)
def overfit_weight_decay(run):
    """Figures 6-20 and 6-21: overfitting 300 images, with and without weight decay λ = 0.1.

    MultiLayerNet 784-100×6-10 (ReLU, He) on 300 training images, SGD
    lr 0.01, batches of 100, 201 epochs (quick: 100), with weight decay λ = 0.1 and without.
    Without it the net learns the 300 images perfectly and the test accuracy stays far behind;
    with it the gap shrinks. Both nets start from the same weights and train in one program."""
    epochs, lam = (100 if run.quick else 201), 0.1
    nets = [MultiLayerNet(784, [100] * 6, 10, weight_decay_lambda=lam, backend=run.backend,
                          seed=run.seed) for _ in range(2)]
    groups = [group(nets, SGD(lr=LR), weight_decays=[0.0, lam])]  # λ is an array: one program
    return overfit(run, "overfit-weight-decay", groups,
                   ["without weight decay", f"weight decay λ = {lam}"], "weight decay", epochs,
                   model="MultiLayerNet(784, [100]*6, 10, relu, he)", weight_decay_lambda=lam)


@experiment("overfit-dropout", data=True, train_size=TRAIN_SIZE)
def overfit_dropout(run):
    """Figure 6-23: overfitting 300 images, with and without Dropout 0.2.

    MultiLayerNetExtend 784-100×6-10 (ReLU, He) on 300 training images, SGD lr
    0.01, batches of 100, 301 epochs (quick: 150), with Dropout 0.2 after every hidden layer and
    without (the book's Dropout: scale by 0.8 at test). Both from the same weights, same batches."""
    epochs, ratio = (150 if run.quick else 301), 0.2
    groups = [group([MultiLayerNetExtend(784, [100] * 6, 10, use_dropout=use, dropout_ratio=ratio,
                                         backend=run.backend, seed=run.seed)], SGD(lr=LR))
              for use in (False, True)]
    return overfit(run, "overfit-dropout", groups, ["without Dropout", f"Dropout {ratio}"],
                   "Dropout", epochs, model="MultiLayerNetExtend(784, [100]*6, 10, relu, he)",
                   dropout_ratio=ratio)
