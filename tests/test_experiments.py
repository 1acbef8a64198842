"""The chapter-6 experiments at quick size: their files, the book's findings, the training
helper behind them, and `xpnet experiment` end to end."""
import inspect
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from xpnet.backends import BACKEND_NAMES
from xpnet.cli import main
from xpnet.data import load_dataset
from xpnet.experiments import EXPERIMENTS
from xpnet.experiments.helpers import group, smooth, train_groups
from xpnet.nn.batching import epoch_orders
from xpnet.nn import MultiLayerNetExtend, make_optimizer
from xpnet.nn.training import fit

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BOOK_EXPERIMENTS = ["optimizer-paths", "optimizer-compare", "weight-init-histogram",
                    "weight-init-compare", "batchnorm", "overfit-weight-decay", "overfit-dropout"]
#: What each experiment's JSON holds besides the common keys.
KEYS = {
    "optimizer-paths": {"function", "start", "steps", "paths"},
    "optimizer-compare": {"iterations", "batch_size", "smoothing_window", "curves", "optimizers"},
    "weight-init-histogram": {"layers", "nodes", "samples", "bins", "setups"},
    "weight-init-compare": {"iterations", "batch_size", "smoothing_window", "curves", "weight_inits"},
    "batchnorm": {"epochs", "weight_init_stds", "train_accuracy", "mean_final_train_accuracy"},
    "overfit-weight-decay": {"epochs", "curves", "weight_decay_lambda", "train_size"},
    "overfit-dropout": {"epochs", "curves", "dropout_ratio", "train_size"},
}
COMMON_KEYS = {"experiment", "summary", "seconds", "backend", "dataset", "quick", "seed"}
#: The quick runs each backend makes (the `backend` fixture's full list would run them all).
#: numpy (the reference), jax (its own path: each chunk one compiled program, vmapped over the
#: nets) and cupy (a GPU, where there is one) run every experiment. torch and array-api-strict run
#: a representative subset, to keep these tests within minutes on two CPU cores:
#: - torch runs all but the two overfitting runs (100 and 150 epochs, 4 and 8 s): scan, the five
#:   optimizers, forward passes, train_groups with groups of one and of several nets, BatchNorm;
#: - array-api-strict, whose numbers are numpy's, runs the three cheapest (scan over 0-d
#:   parameters, forward passes, train_groups and loss_curves with a group of three nets), which
#:   take every array operation of the experiments' own code through the strict namespace.
#: What the subsets leave out (Dropout, a per-net λ in a group, BatchNorm, Adam and Momentum in
#: train_groups) is checked on every backend against `fit` by
#: test_nets_trained_together_equal_nets_trained_alone (and each optimizer by
#: tests/test_optimizers.py); on the portable backends a quick run's numbers would be numpy's
#: anyway (the same initial weights, batches and Dropout masks).
SUBSETS = {
    "torch": {"optimizer-paths", "weight-init-histogram", "weight-init-compare",
              "optimizer-compare", "batchnorm"},
    "array-api-strict": {"optimizer-paths", "weight-init-histogram", "weight-init-compare"},
}


def backends_for(name):
    """The backends (names, for the `backend` fixture) that make the quick run of `name`."""
    return [b for b in BACKEND_NAMES if name in SUBSETS.get(b, BOOK_EXPERIMENTS)]


def runs_of(*names):
    """(name, backend) pairs of the quick runs of `names`, for an indirect parametrization."""
    pairs = [(n, b) for n in names for b in backends_for(n)]
    return pytest.mark.parametrize("name, backend", pairs, indirect=["backend"])


def runs_on(name):
    """The `backend` fixture restricted to the backends that make the quick run of `name`."""
    return pytest.mark.parametrize("backend", backends_for(name), indirect=True)


_runs = {}  # (name, backend) -> (ExperimentResult, its JSON): each quick run happens once


def quick_run(name, backend, tmp_path_factory):
    if (name, backend.name) not in _runs:
        out = tmp_path_factory.mktemp(f"{name}-{backend.name}")
        result = EXPERIMENTS[name](backend=backend.name, dataset="mnist-5k", out_dir=out, quick=True,
                                   progress=False)
        _runs[name, backend.name] = result, json.loads(result.json.read_text())
    return _runs[name, backend.name]


def test_registry_holds_the_book_experiments_with_one_signature():
    assert set(BOOK_EXPERIMENTS) <= set(EXPERIMENTS)
    assert set(EXPERIMENTS) - set(BOOK_EXPERIMENTS) <= {"hyperparameter-search", "conv-filters", "misclassified"}
    for fn in EXPERIMENTS.values():
        params = inspect.signature(fn).parameters
        assert list(params)[:6] == ["backend", "dataset", "out_dir", "quick", "seed", "progress"]


def test_hyperparameter_search_is_the_last_experiment():
    from xpnet.experiments.search import hyperparameter_search_experiment

    assert list(EXPERIMENTS)[-1] == "hyperparameter-search"
    assert EXPERIMENTS["hyperparameter-search"] is hyperparameter_search_experiment
    params = inspect.signature(hyperparameter_search_experiment).parameters
    assert {"trials", "epochs", "executor", "sampler", "dask_address"} <= set(params)


def test_the_search_never_imports_the_experiments():
    """The experiments import the search (their last one runs it), never the reverse."""
    code = "import sys, xpnet.search; print(sorted(m for m in sys.modules if 'experiments' in m))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@runs_of(*BOOK_EXPERIMENTS)
def test_quick_run_writes_png_and_json(name, backend, tmp_path_factory):
    result, numbers = quick_run(name, backend, tmp_path_factory)
    assert result.png.name == f"{name}.png" and result.json.name == f"{name}.json"
    png = result.png.read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000  # a real picture, not an empty one
    assert COMMON_KEYS | KEYS[name] <= set(numbers)
    assert numbers["experiment"] == name and numbers["backend"] == backend.name
    assert numbers["quick"] is True and numbers["summary"] == result.summary
    assert result.seconds < 20  # the quick size is for seconds, JAX compilation included


@runs_on("optimizer-paths")
def test_optimizer_paths_approach_the_minimum_and_sgd_zigzags(backend, tmp_path_factory):
    _, numbers = quick_run("optimizer-paths", backend, tmp_path_factory)
    paths = numbers["paths"]
    assert list(paths) == ["SGD", "Momentum", "AdaGrad", "RMSprop", "Adam"]
    start = math.hypot(-7, 2)
    for info in paths.values():
        assert len(info["path"]) == 31 and info["path"][0] == [-7.0, 2.0]
        assert info["final_distance"] < 0.2 * start  # every one heads for (0, 0)
    sgd, adam = paths["SGD"], paths["Adam"]
    assert sgd["y_sign_changes"] == 30 and sgd["y_sign_changes"] > 5 * adam["y_sign_changes"]
    assert sgd["y_total_variation"] > 5 * adam["y_total_variation"]


@runs_on("optimizer-compare")
def test_optimizer_compare_sgd_learns_slowest(backend, tmp_path_factory):
    _, numbers = quick_run("optimizer-compare", backend, tmp_path_factory)
    final = {name: c["final_smoothed_loss"] for name, c in numbers["curves"].items()}
    assert len(final) == 5 and max(final, key=final.get) == "SGD"
    assert all(len(c["loss"]) == numbers["iterations"] == 200 for c in numbers["curves"].values())


@runs_on("weight-init-histogram")
def test_weight_init_histogram_std_001_collapses_xavier_spreads(backend, tmp_path_factory):
    _, numbers = quick_run("weight-init-histogram", backend, tmp_path_factory)
    setups = numbers["setups"]
    small, xavier = setups["sigmoid, std 0.01"], setups["sigmoid, Xavier"]
    for layer in range(1, 5):  # layers 2 to 5
        assert abs(small["mean"][layer] - 0.5) < 0.02 and small["std"][layer] < 0.03
        assert xavier["std"][layer] > 3 * small["std"][layer]
    assert min(setups["sigmoid, std 1"]["std"]) > 0.4  # saturated at 0 and 1
    he, relu_small = setups["ReLU, He"]["std"], setups["ReLU, std 0.01"]["std"]
    assert he[-1] > 0.5 * he[0] and relu_small[-1] < 1e-3 * relu_small[0]
    assert all(sum(h["counts"]) > 0 for h in small["histograms"])


@runs_on("weight-init-compare")
def test_weight_init_compare_he_beats_std_001(backend, tmp_path_factory):
    _, numbers = quick_run("weight-init-compare", backend, tmp_path_factory)
    final = {name: c["final_smoothed_loss"] for name, c in numbers["curves"].items()}
    assert final["He"] < final["std 0.01"] - 0.5
    assert final["std 0.01"] == pytest.approx(math.log(10), abs=0.01)  # learns nothing


@runs_on("batchnorm")
def test_batchnorm_beats_the_plain_net_across_scales(backend, tmp_path_factory):
    _, numbers = quick_run("batchnorm", backend, tmp_path_factory)
    mean = numbers["mean_final_train_accuracy"]
    assert mean["batchnorm"] > mean["plain"] + 0.2
    curves = np.array(numbers["train_accuracy"]["batchnorm"])
    assert curves.shape == (len(numbers["weight_init_stds"]), numbers["epochs"] + 1)


@runs_of("overfit-weight-decay", "overfit-dropout")
def test_regulariser_shrinks_the_train_test_gap(name, backend, tmp_path_factory):
    _, numbers = quick_run(name, backend, tmp_path_factory)
    plain, regularised = numbers["curves"].values()
    assert plain["final_train_accuracy"] > 0.95  # 300 images learned by heart
    assert regularised["gap"] < plain["gap"] - 0.03
    assert len(plain["test_accuracy"]) == numbers["epochs"] + 1


def test_nets_trained_together_equal_nets_trained_alone(backend):
    """train_groups (vmapped on JAX, looped elsewhere) follows `fit` batch for batch: BatchNorm,
    Dropout and a per-net weight decay included."""
    (x, t), (x_test, t_test) = load_dataset("mnist-5k").arrays()
    x, t, x_test, t_test = x[:400], t[:400], x_test[:100], t_test[:100]

    def net(std, lam):
        return MultiLayerNetExtend(784, [20, 20], 10, weight_init_std=std, use_batchnorm=True,
                                   use_dropout=True, dropout_ratio=0.2, weight_decay_lambda=lam,
                                   backend=backend, seed=3)

    # a group of two nets (vmapped on JAX) differing in init and λ, and a group of one
    groups = [group([net(0.1, 0.5), net("he", 0.5)], make_optimizer("adam"), weight_decays=[0.0, 0.5]),
              group([net("he", 0.0)], make_optimizer("momentum"))]
    trained = train_groups(backend, groups, x, t, epoch_orders(7, len(x), 50, 2),
                           evals=[(x_test, t_test)], seed=7, progress=False)
    losses, counts = np.concatenate(trained.losses), np.concatenate(trained.counts)
    for k, (name, std, lam) in enumerate([("adam", 0.1, 0.0), ("adam", "he", 0.5), ("momentum", "he", 0.0)]):
        alone = fit(net(std, lam), make_optimizer(name), (x, t), (x_test, t_test), epochs=2,
                    batch_size=50, seed=7, progress=False)
        np.testing.assert_allclose(losses[k], alone.batch_losses, rtol=2e-4, atol=1e-5)
        assert counts[k, -1, 0] == round(alone.epochs[-1].test_acc * 100)


def test_smooth_is_a_trailing_moving_average():
    np.testing.assert_allclose(smooth([1, 2, 3, 4, 5], 3), [1, 1.5, 2, 3, 4])
    assert np.isnan(smooth([1, np.nan, 3], 2)[1]) and smooth([1, np.nan, 3, 4, 5], 2)[-1] == 4.5


def test_cli_experiment_runs_and_prints_the_paths(tmp_path):
    done = subprocess.run([sys.executable, "-m", "xpnet", "experiment", "optimizer-paths", "--quick",
                           "--out", str(tmp_path), "--backend", "numpy"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for suffix in ("json", "png"):
        path = tmp_path / f"optimizer-paths.{suffix}"
        assert path.is_file() and str(path) in done.stdout
    assert "SGD(lr=0.95)" in done.stdout and "time:" in done.stdout


def test_cli_unknown_experiment_is_one_line_with_status_2():
    done = subprocess.run([sys.executable, "-m", "xpnet", "experiment", "optimizer-race"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("xpnet: error: unknown experiment 'optimizer-race'; choose one of:")
    assert "batchnorm" in done.stderr and "Traceback" not in done.stderr


def test_cli_list_and_unwritable_out(tmp_path, capsys):
    assert main(["experiment", "--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed[:len(BOOK_EXPERIMENTS)] == BOOK_EXPERIMENTS  # the book's order
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["experiment", "optimizer-paths", "--out", str(blocker / "sub")]) == 2
    assert "xpnet: error: cannot create --out " in capsys.readouterr().err  # before running
