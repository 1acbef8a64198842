"""Chapter 6.2: why the scale of the initial weights matters, before and during training."""
import numpy as np

from xpnet.experiments.helpers import figure, group, jsonable, loss_curves
from xpnet.experiments.registry import experiment
from xpnet.nn import MultiLayerNet, SGD, relu, sigmoid
from xpnet.nn.init import affine_params, host_rng
from xpnet.nn.layers import Affine

#: (label, activation, weight init) of each histogram row: the book's figures 6-10 to 6-14.
HISTOGRAM_SETUPS = [
    ("sigmoid, std 1", "sigmoid", 1.0),
    ("sigmoid, std 0.01", "sigmoid", 0.01),
    ("sigmoid, Xavier", "sigmoid", "xavier"),
    ("tanh, Xavier", "tanh", "xavier"),
    ("ReLU, std 0.01", "relu", 0.01),
    ("ReLU, Xavier", "relu", "xavier"),
    ("ReLU, He", "relu", "he"),
]
LAYERS, NODES, SAMPLES, BINS = 5, 100, 1000, 30


def activations(backend, activation, init, seed):
    """The host arrays (LAYERS, SAMPLES, NODES) of each layer's output for a standard-normal
    input, through Affine layers (bias 0) of xpnet's initial weights; the same draws for every
    setup, so only the scale and the activation differ."""
    rng = host_rng(seed)
    x = backend.asarray(rng.standard_normal((SAMPLES, NODES)), "float32")
    params = {k: backend.asarray(v, "float32")
              for k, v in affine_params(rng, [NODES] * (LAYERS + 1), init).items()}
    act = {"sigmoid": sigmoid, "relu": relu, "tanh": backend.xp.tanh}[activation]
    outputs = []
    for i in range(1, LAYERS + 1):
        x = act(Affine(f"W{i}", f"b{i}").forward(params, x)[0])
        outputs.append(backend.to_numpy(x))
    return np.stack(outputs)


@experiment("weight-init-histogram")
def weight_init_histogram(run):
    """Figures 6-10 to 6-14: activation histograms of 5 layers for 7 initial weight scales.

    5 layers of 100 nodes, 1,000 standard-normal inputs, no training. Sigmoid with std 1 saturates at 0 and 1 (vanishing
    gradients), std 0.01 collapses to 0.5 (every node alike); Xavier keeps them spread. With
    ReLU, std 0.01 shrinks layer by layer, He keeps the spread. No data set, no training:
    quick and full are the same."""
    fig, axes = figure(len(HISTOGRAM_SETUPS), LAYERS, width=2.2, height=1.5)
    setups, lines = {}, []
    for row, (label, activation, init) in zip(axes, HISTOGRAM_SETUPS):
        a = activations(run.backend, activation, init, run.seed)
        # ReLU's outputs are half zeros: their histogram shows the positive ones
        values = [layer[layer > 0] if activation == "relu" else layer.ravel() for layer in a]
        top = {"sigmoid": 1.0, "tanh": 1.0}.get(activation) or float(np.quantile(np.concatenate(values), 0.99))
        span = (-1.0 if activation == "tanh" else 0.0, top)
        hists = []
        for layer, (ax, v) in enumerate(zip(row, values), start=1):
            counts, edges = np.histogram(v, BINS, range=span)
            ax.stairs(counts, edges, fill=True, color="tab:blue")
            ax.set_yticks([])
            ax.tick_params(labelsize=7)
            ax.set_title(f"layer {layer}" if label == HISTOGRAM_SETUPS[0][0] else "", fontsize=9)
            hists.append({"counts": counts.tolist(), "edges": jsonable(edges)})
        row[0].set_ylabel(label + (",\n> 0" if activation == "relu" else ""), fontsize=8)
        stds = a.reshape(LAYERS, -1).std(axis=1)
        setups[label] = {"activation": activation, "weight_init": init,
                         "mean": jsonable(a.reshape(LAYERS, -1).mean(axis=1)), "std": jsonable(stds),
                         "histograms": hists}
        lines.append(f"  {label:<18} " + "  ".join(f"{s:.4f}" for s in stds))
    fig.suptitle(f"activations of {LAYERS} layers of {NODES} nodes, {SAMPLES} standard-normal inputs")
    summary = "std of each layer's activations (layers 1 to 5):\n" + "\n".join(lines)
    numbers = {**run.describe(), "layers": LAYERS, "nodes": NODES, "samples": SAMPLES,
               "bins": BINS, "setups": setups}
    return summary, numbers, fig


@experiment("weight-init-compare", data=True)
def weight_init_compare(run):
    """Figure 6-15: a 4×100 ReLU net from std 0.01, Xavier and He weights; He learns fastest.

    MultiLayerNet 784-100×4-10 (ReLU), SGD lr 0.01, the same batches of 128, 2,000 iterations
    (quick: 200). With std 0.01 the signal vanishes and nothing is learned."""
    iterations = 200 if run.quick else 2000
    inits = {"std 0.01": 0.01, "Xavier": "xavier", "He": "he"}
    nets = [MultiLayerNet(784, [100] * 4, 10, weight_init_std=init, backend=run.backend,
                          seed=run.seed) for init in inits.values()]
    numbers, fig = loss_curves(run, [group(nets, SGD(lr=0.01))], list(inits), iterations, 128,
                               f"weight-init-compare on {run.backend.name}")
    fig.axes[0].set_title(f"MultiLayerNet 784-100×4-10 (ReLU), SGD lr 0.01, on {run.data.name}")
    curves = numbers["curves"]
    summary = "\n".join(
        [f"final training loss (moving average) after {iterations} iterations, and test accuracy:"]
        + [f"  {label:<10} {c['final_smoothed_loss']:.4f}   {c['final_test_accuracy']:.4f}"
           for label, c in curves.items()])
    numbers = {**run.describe(model="MultiLayerNet(784, [100]*4, 10, relu)",
                              optimizer="SGD(lr=0.01)", weight_inits=inits), **numbers}
    return summary, numbers, fig
