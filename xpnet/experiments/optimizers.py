"""Chapter 6.1: how SGD, Momentum, AdaGrad, RMSprop and Adam move, on a toy function and on MNIST."""
import numpy as np

from xpnet.experiments.helpers import figure, group, jsonable, loss_curves
from xpnet.experiments.registry import experiment
from xpnet.nn import MultiLayerNet, make_optimizer

#: The book's learning rates for f(x, y) = x²/20 + y²; RMSprop is not in the book's figure: with
#: its decay 0.99 the first step is 10 × lr per coordinate, so lr 0.1 starts with a step of 1.
PATH_OPTIMIZERS = {"sgd": 0.95, "momentum": 0.1, "adagrad": 1.5, "rmsprop": 0.1, "adam": 0.3}
PATH_START, PATH_STEPS = (-7.0, 2.0), 30


def f(x, y):
    """The book's test function: a valley 20 times longer in x than in y, minimum at (0, 0)."""
    return x**2 / 20.0 + y**2


def optimizer_path(optimizer, backend, steps=PATH_STEPS, start=PATH_START):
    """The (steps + 1, 2) host array of (x, y) that `optimizer` visits from `start`, using the
    analytic gradient (x/10, 2y); one compiled `lax.scan` on JAX."""
    xp = backend.xp

    def step(carry, i):
        params, state = carry
        grads = {"x": params["x"] / 10.0, "y": 2.0 * params["y"]}
        params, state = optimizer.apply(params, grads, state)
        return (params, state), xp.stack([params["x"], params["y"]])

    def run(params):
        return backend.scan(step, (params, optimizer.init(params)), steps)[1]

    params = {"x": backend.asarray(start[0], "float64"), "y": backend.asarray(start[1], "float64")}
    return np.concatenate([[start], backend.to_numpy(backend.jit(run)(params))])


@experiment("optimizer-paths")
def optimizer_paths(run):
    """Figure 6-8: the paths of SGD, Momentum, AdaGrad, RMSprop and Adam on x²/20 + y².

    30 steps of each from (-7, 2) with the book's learning rates (RMSprop's: see
    PATH_OPTIMIZERS). SGD zig-zags across the narrow y direction while crawling along x; the
    others take straighter paths. Tiny, so quick and full are the same; no data set is used."""
    paths, lines = {}, []
    for name, lr in PATH_OPTIMIZERS.items():
        optimizer = make_optimizer(name, lr=lr)
        path = optimizer_path(optimizer, run.backend)
        y_sign_changes = int(np.count_nonzero(np.diff(np.sign(path[:, 1])) != 0))
        paths[type(optimizer).__name__] = {
            "optimizer": repr(optimizer), "lr": lr, "path": jsonable(path),
            "final": jsonable(path[-1]), "final_f": float(f(*path[-1])),
            "final_distance": float(np.hypot(*path[-1])),
            "y_sign_changes": y_sign_changes,
            "y_total_variation": float(np.abs(np.diff(path[:, 1])).sum()),
        }
        lines.append(f"  {repr(optimizer):<42} ends at ({path[-1, 0]:+.3f}, {path[-1, 1]:+.3f}), "
                     f"f = {f(*path[-1]):.4f}; y changed sign {y_sign_changes} times")

    fig, axes = figure(2, 3, width=4.0, height=2.6, sharex=True, sharey=True)
    gx, gy = np.meshgrid(np.linspace(-10, 10, 201), np.linspace(-5, 5, 101))
    for ax in axes.flat:
        ax.contour(gx, gy, f(gx, gy), levels=[0.25, 0.5, 1, 2, 3, 4, 5, 6, 7], colors="0.7",
                   linewidths=0.7)
        ax.plot(0, 0, "+", color="k", markersize=10)
        ax.set(xlim=(-10, 10), ylim=(-5, 5))
    for ax, (name, info) in zip(axes.flat, paths.items()):
        path = np.array(info["path"])
        ax.plot(path[:, 0], path[:, 1], "o-", color="tab:red", markersize=3, linewidth=1)
        ax.set_title(f"{name} (lr {info['lr']})", fontsize=10)
        axes.flat[-1].plot(path[:, 0], path[:, 1], ".-", markersize=3, linewidth=1, label=name)
    axes.flat[-1].set_title("all five", fontsize=10)
    axes.flat[-1].legend(fontsize=7, loc="lower right")
    for ax in axes[-1]:
        ax.set_xlabel("x")
    for ax in axes[:, 0]:
        ax.set_ylabel("y")
    fig.suptitle(f"f(x, y) = x²/20 + y², {PATH_STEPS} steps from {PATH_START}")

    summary = (f"{PATH_STEPS} steps on f(x, y) = x²/20 + y² from {PATH_START} (minimum at (0, 0)):\n"
               + "\n".join(lines))
    numbers = {**run.describe(), "function": "x**2/20 + y**2", "start": list(PATH_START),
               "steps": PATH_STEPS, "paths": paths}
    return summary, numbers, fig


@experiment("optimizer-compare", data=True)
def optimizer_compare(run):
    """Figure 6-9: the five optimizers training a 4×100 ReLU net on digits; SGD is slowest.

    MultiLayerNet 784-100×4-10 (ReLU, He) trained by each optimizer at the classes' default
    hyperparameters (the book's), from the same initial weights on the same batches of 128, for
    2,000 iterations (quick: 200)."""
    iterations = 200 if run.quick else 2000
    net = MultiLayerNet(784, [100] * 4, 10, backend=run.backend, seed=run.seed)
    optimizers = [make_optimizer(name) for name in ("sgd", "momentum", "adagrad", "rmsprop", "adam")]
    labels = [type(o).__name__ for o in optimizers]
    numbers, fig = loss_curves(run, [group([net], o) for o in optimizers], labels, iterations,
                               128, f"optimizer-compare on {run.backend.name}")
    fig.axes[0].set_title(f"MultiLayerNet 784-100×4-10 (ReLU, He) on {run.data.name}, batch 128")
    curves = numbers["curves"]
    summary = "\n".join(
        [f"final training loss (moving average) after {iterations} iterations, and test accuracy:"]
        + [f"  {repr(o):<42} {curves[label]['final_smoothed_loss']:.4f}   "
           f"{curves[label]['final_test_accuracy']:.4f}" for o, label in zip(optimizers, labels)])
    numbers = {**run.describe(model="MultiLayerNet(784, [100]*4, 10, relu, he)",
                              optimizers={label: repr(o) for o, label in zip(optimizers, labels)}),
               **numbers}
    return summary, numbers, fig
