"""The book's chapter-6 hyperparameter search (100 trials x 50 epochs of MultiLayerNet 6 x 100 on
400 training images, 100 validation; xpnet.search) end to end, per executor: sequentially on
NumPy, in local processes (NumPy), and as one vmapped program on JAX, all with pruning; plus the
book's own loop (sequential NumPy, no pruning) as the reference. Each round starts from an empty
study, so it includes opening the sqlite study, starting workers and compiling. With
--benchmark-disable (CI) each case runs once on 4 trials x 2 epochs.
"""
import itertools

import pytest

from xpnet.backends import available_backends, get_backend
from xpnet.search import hyperparameter_search

from peers import epoch_flops

def trial_epoch_flops(config):
    """Matmul FLOPs of one trial-epoch: the training steps (as the epoch benchmark counts them)
    plus the forward passes of the accuracy counts on the training and validation images."""
    sizes = [784, *config["hidden"], 10]
    n_val = int(config["train_size"] * config["validation_rate"])  # as validation_split
    n_train = config["train_size"] - n_val
    forward = 2 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return (epoch_flops(sizes, n_train // config["batch_size"], config["batch_size"])
            + forward * config["train_size"])


CASES = [  # (label, executor, backend, prune)
    ("book loop", "sequential", "numpy", False),
    ("sequential", "sequential", "numpy", True),
    ("processes", "processes", "numpy", True),
    ("vmap", "vmap", "jax", True),
]


@pytest.mark.parametrize("label, executor, backend, prune", CASES, ids=[c[0] for c in CASES])
def test_search(benchmark, quick, tmp_path, label, executor, backend, prune):
    ok, reason = available_backends()[backend]
    if not ok:
        pytest.skip(f"backend {backend} unavailable: {reason}")
    trials, epochs = (4, 2) if quick else (100, 50)
    rounds = itertools.count()
    results = []

    def run():
        results.append(hyperparameter_search(
            trials=trials, epochs=epochs, backend=backend, executor=executor, prune=prune,
            out_dir=tmp_path / f"round{next(rounds)}", dataset="auto", progress=False))

    benchmark.pedantic(run, rounds=1, iterations=1)
    result = results[-1]
    trial_epochs = sum(len(t["train_loss"]) for t in result.trials)
    benchmark.extra_info.update(
        suite="search", label=label, executor=result.executor, backend=backend,
        device=get_backend(backend).device_name, trials=trials,
        epochs=epochs, prune=prune, seconds=result.seconds,
        trials_per_second=result.trials_per_second,
        pruned=sum(t["pruned"] for t in result.trials), best_val_acc=result.best["final_val_acc"],
        dataset=result.config["dataset"], trial_epochs=trial_epochs,
        flops=trial_epochs * trial_epoch_flops(result.config))
    assert result.ran == trials and len(result.trials) == trials
