"""Chapter 6.3: Batch Normalization makes training fast and indifferent to the initial weights."""
import numpy as np

from xpnet.experiments.helpers import figure, group, train_groups
from xpnet.experiments.registry import experiment
from xpnet.nn import MultiLayerNetExtend, SGD
from xpnet.nn.batching import epoch_orders


@experiment("batchnorm", data=True, train_size=1000)
def batchnorm(run):
    """Figure 6-19: training accuracy with and without BatchNorm for 16 initial weight scales.

    MultiLayerNetExtend 784-100×5-10 (ReLU), initial weight stds logspace(0, -4), on the first 1,000 training images, SGD lr 0.01,
    batches of 100, 20 epochs (quick: 4 stds, 10 epochs); the training accuracy per epoch.
    All 32 nets train in one program on JAX, on the same batches."""
    backend, data, seed, progress = run.backend, run.data, run.seed, run.progress
    scales, epochs = (np.logspace(0, -4, 4), 10) if run.quick else (np.logspace(0, -4, 16), 20)

    def nets(use_batchnorm):
        return [MultiLayerNetExtend(784, [100] * 5, 10, weight_init_std=float(w),
                                    use_batchnorm=use_batchnorm, backend=backend, seed=seed)
                for w in scales]

    optimizer = SGD(lr=0.01)
    orders = epoch_orders(seed, len(data.train[0]), 100, epochs)
    trained = train_groups(backend, [group(nets(True), optimizer), group(nets(False), optimizer)],
                           *data.train, orders, evals=[data.train], seed=seed, progress=progress,
                           desc=f"batchnorm on {backend.name} ({2 * len(scales)} nets)")
    bn, plain = (counts[:, :, 0] / len(data.train[1]) for counts in trained.counts)

    side = int(np.ceil(np.sqrt(len(scales))))
    fig, axes = figure(side, side, width=2.4, height=1.9, sharex=True, sharey=True)
    for ax, w, a, b in zip(axes.flat, scales, bn, plain):
        ax.plot(a, "-", color="tab:blue", label="Batch Normalization")
        ax.plot(b, "--", color="tab:orange", label="normal (without BN)")
        ax.set_title(f"W std {w:.2g}", fontsize=9)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("epochs")
    for ax in axes[:, 0]:
        ax.set_ylabel("train accuracy")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncols=2)
    fig.suptitle(f"784-100×5-10 ReLU, SGD lr 0.01,\n{len(data.train[1]):,} training images of {data.name}")

    summary = "\n".join(
        ["final training accuracy, with BatchNorm / without, by initial weight std:"]
        + [f"  std {w:8.2g}:  {a[-1]:.3f} / {b[-1]:.3f}" for w, a, b in zip(scales, bn, plain)]
        + [f"  mean over the stds: {bn[:, -1].mean():.3f} with BatchNorm, {plain[:, -1].mean():.3f} without"])
    numbers = {**run.describe(model="MultiLayerNetExtend(784, [100]*5, 10, relu)",
                              optimizer="SGD(lr=0.01)", batch_size=100, train_size=len(data.train[1])),
               "epochs": epochs, "weight_init_stds": scales.tolist(),
               "accuracy_index": "0: before training, e: after epoch e",
               "train_accuracy": {"batchnorm": bn.tolist(), "plain": plain.tolist()},
               "mean_final_train_accuracy": {"batchnorm": float(bn[:, -1].mean()),
                                             "plain": float(plain[:, -1].mean())}}
    return summary, numbers, fig
