"""The chapter-6 hyperparameter search (xpnet.search) with the real libraries: Optuna on sqlite,
process pools, a local Dask cluster, JAX's vmap. Small searches (a few trials of a few epochs).

What is asserted across executors: the same seed plans the same trials (random sampler), and in
float64 every executor (numpy in this process, numpy in worker processes, numpy on Dask, one
vmapped JAX program) and every backend (torch and array-api-strict in this process) gives the
same pruning decisions and the same accuracies, to 1e-9; in float32 the vmapped JAX program's
final validation accuracies are within 0.05 of numpy's.
"""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from xpnet.backends import available_backends
from xpnet.errors import XpnetError
from xpnet.experiments.search import hyperparameter_search_experiment
from xpnet.search import (DaskExecutor, LR_RANGE, WEIGHT_DECAY_RANGE, hyperparameter_search,
                          prune_rule, run_trial, run_trials)

TRIALS, EPOCHS = 6, 4  # W = 2: trials are pruned after their second epoch

needs_jax = pytest.mark.skipif(not available_backends()["jax"][0], reason="jax is not installed")


def search(tmp_path, name, **options):
    options = {"trials": TRIALS, "epochs": EPOCHS, "backend": "numpy", "progress": False,
               "dataset": "mnist-5k", **options}
    return hyperparameter_search(out_dir=tmp_path / name, **options)


def plan(result):
    return [(t["number"], t["lr"], t["weight_decay"]) for t in result.trials]


def check_plausible(result, trials=TRIALS, epochs=EPOCHS):
    rule = prune_rule(epochs)
    assert len(result.trials) == trials and result.ran == trials and result.trials_per_second > 0
    for t in result.trials:
        assert LR_RANGE[0] <= t["lr"] <= LR_RANGE[1]
        assert WEIGHT_DECAY_RANGE[0] <= t["weight_decay"] <= WEIGHT_DECAY_RANGE[1]
        n = rule["epoch"] if t["pruned"] else epochs
        assert len(t["val_acc"]) == len(t["train_acc"]) == len(t["train_loss"]) == n
        assert all(0 <= a <= 1 for a in t["val_acc"] + t["train_acc"])
        assert t["final_val_acc"] == t["val_acc"][-1]
    assert not result.best["pruned"] and result.best["number"] == result.ranking[0]
    assert sorted(result.ranking) == list(range(trials))
    s = result.suggested
    assert s["lr"][0] <= s["lr"][1] and math.isclose(s["log10_lr"][0], math.log10(s["lr"][0]))


@pytest.fixture(scope="module")
def float64_runs(tmp_path_factory):
    """The same float64 search run by three executors (vmap only where JAX is)."""
    tmp = tmp_path_factory.mktemp("float64")
    runs = {"sequential": search(tmp, "sequential", executor="sequential", dtype="float64"),
            "processes": search(tmp, "processes", executor="processes", parallel=2, dtype="float64")}
    if available_backends()["jax"][0]:
        runs["vmap"] = search(tmp, "vmap", executor="vmap", backend="jax", dtype="float64")
    return runs


def test_every_executor_plans_the_same_trials_and_agrees_in_float64(float64_runs):
    reference = float64_runs["sequential"]
    check_plausible(reference)
    assert 0 < sum(t["pruned"] for t in reference.trials) < TRIALS  # some pruned, some not
    for name, result in float64_runs.items():
        check_plausible(result)
        assert plan(result) == plan(reference), name
        for t, r in zip(result.trials, reference.trials):
            assert t["pruned"] == r["pruned"], (name, t["number"])
            np.testing.assert_allclose(t["val_acc"], r["val_acc"], rtol=0, atol=1e-9)
            np.testing.assert_allclose(t["train_loss"], r["train_loss"], rtol=1e-9)
    assert float64_runs["processes"].executor == "processes (2 workers)"


def test_pruned_trials_are_reported_to_optuna(float64_runs):
    import optuna

    result = float64_runs["sequential"]
    study = optuna.load_study(study_name="xpnet-hyperparameter-search", storage=result.storage)
    by_number = {t["number"]: t for t in result.trials}
    for frozen in study.trials:
        mine = by_number[frozen.number]
        assert frozen.state.name == ("PRUNED" if mine["pruned"] else "COMPLETE")
        reported = [frozen.intermediate_values[e] for e in sorted(frozen.intermediate_values)]
        assert reported == mine["val_acc"]
        assert frozen.user_attrs["train_acc"] == mine["train_acc"]


def test_vmap_matches_numpy_in_float32_where_the_backend_vectorizes(backend, tmp_path):
    """The vmap executor on a backend that vectorizes (JAX); on the others (a vmap there is a
    loop) the request is one clear error."""
    if not backend.vectorizes:
        with pytest.raises(XpnetError, match=f"needs backend 'jax', not '{backend.name}'"):
            search(tmp_path, "x", executor="vmap", backend=backend)
        return
    numpy_run = search(tmp_path, "numpy", executor="sequential")
    vmap_run = search(tmp_path, backend.name, executor="vmap", backend=backend)
    assert plan(vmap_run) == plan(numpy_run) and vmap_run.backend == backend.name
    check_plausible(vmap_run)
    for t, r in zip(vmap_run.trials, numpy_run.trials):
        assert abs(t["final_val_acc"] - r["final_val_acc"]) <= 0.05


def test_a_search_on_each_backend_agrees_with_numpy_in_float64(backend, float64_runs, tmp_path):
    """The trials run on the backend's device in this process (sequential executor): the same
    plan, pruning and accuracies as the numpy reference, to 1e-9 in float64."""
    if backend.name == "numpy":
        pytest.skip("numpy is the reference: float64_runs['sequential']")
    if backend.name == "jax":
        pytest.skip("jax's trials are checked by the vmap run of float64_runs and by "
                    "test_trials_run_together_equal_trials_run_alone (run_trial alone)")
    result = search(tmp_path, backend.name, executor="sequential", backend=backend, dtype="float64")
    reference = float64_runs["sequential"]
    check_plausible(result)
    assert result.backend == backend.name and result.executor == "sequential (1 worker)"
    assert plan(result) == plan(reference)
    for t, r in zip(result.trials, reference.trials):
        assert t["pruned"] == r["pruned"], t["number"]
        np.testing.assert_allclose(t["val_acc"], r["val_acc"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(t["train_loss"], r["train_loss"], rtol=1e-9)


def test_trials_run_together_equal_trials_run_alone(backend):
    """run_trials (one program: vmapped on JAX, a loop over the trials elsewhere; pruned rows
    dropped down to a single net) gives every trial the numbers run_trial gives it alone, and
    calls back once per epoch and per trial. In float64: in float32 vmapped sums round apart,
    enough to move a count by a sample."""
    lrs = [1e-6, 2e-6, 3e-6, 1e-2, 4e-6]  # four learn nothing: pruned at epoch 2, one row is left
    specs = [{"number": k, "lr": lr, "weight_decay": 10.0 ** -(k + 4), "trial_seed": 100 + k,
              "backend": backend.name, "device": backend.device_name, "epochs": EPOCHS,
              "dataset": "mnist-5k", "train_size": 500, "validation_rate": 0.2, "seed": 3,
              "dtype": "float64", "prune": prune_rule(EPOCHS)}
             for k, lr in enumerate(lrs)]
    epochs, done = [], {}
    together = run_trials(specs, on_epoch=lambda i, e, acc: epochs.append((i, e, acc)),
                          on_done=lambda i, result: done.setdefault(i, result))
    assert [t["pruned"] for t in together] == [True, True, True, False, True]
    assert sorted(done) == list(range(len(specs))) and all(done[i] is together[i] for i in done)
    assert sorted(epochs) == sorted((i, e + 1, acc) for i, t in enumerate(together)
                                    for e, acc in enumerate(t["val_acc"]))
    for t, spec in zip(together, specs):
        alone = run_trial(spec)
        assert t["pruned"] == alone["pruned"] and t["val_acc"] == alone["val_acc"]
        assert t["train_acc"] == alone["train_acc"]
        np.testing.assert_allclose(t["train_loss"], alone["train_loss"], rtol=1e-9)
        assert {k: t[k] for k in ("number", "lr", "weight_decay", "final_val_acc")} == \
            {k: alone[k] for k in ("number", "lr", "weight_decay", "final_val_acc")}
        assert set(t) == set(alone) == {"number", "lr", "weight_decay", "train_loss", "train_acc",
                                        "val_acc", "pruned", "final_val_acc", "seconds"}


@needs_jax
def test_vmap_with_tpe_runs_in_groups(tmp_path):
    result = search(tmp_path, "tpe", executor="vmap", backend="jax", sampler="tpe", trials=4,
                    epochs=3, parallel=2)
    check_plausible(result, trials=4, epochs=3)
    assert result.sampler == "tpe" and "up to 2 trials" in result.executor


def test_a_study_resumes_from_its_storage(tmp_path):
    first = search(tmp_path, "study", executor="sequential", trials=4)
    again = search(tmp_path, "study", executor="sequential", trials=6)
    assert again.ran == 2 and len(again.trials) == 6
    assert plan(again)[:4] == plan(first)  # the first four come from the storage
    assert not {p[1:] for p in plan(again)[4:]} & {p[1:] for p in plan(first)}  # no replay
    assert search(tmp_path, "study", executor="sequential", trials=5).ran == 0
    with pytest.raises(XpnetError, match="epochs 4 .now 5."):
        search(tmp_path, "study", executor="sequential", epochs=5)


def test_dask_executor_on_a_local_cluster(tmp_path, float64_runs):
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        result = search(tmp_path, "dask", dask_address=cluster.scheduler_address, dtype="float64")
    assert result.executor == "dask (2 workers)"
    reference = float64_runs["sequential"]
    assert plan(result) == plan(reference)
    for t, r in zip(result.trials, reference.trials):
        assert t["pruned"] == r["pruned"] and abs(t["final_val_acc"] - r["final_val_acc"]) <= 1e-9


def test_an_unreachable_dask_scheduler_is_one_clear_error():
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    message = r"cannot reach the Dask scheduler at tcp://127.0.0.1:1 within 1 s"
    with pytest.raises(XpnetError, match=message) as info:
        DaskExecutor("tcp://127.0.0.1:1", timeout=1)
    assert "\n" not in str(info.value)


def test_bad_requests_are_clear_errors(tmp_path):
    with pytest.raises(XpnetError, match="needs backend 'jax', not 'numpy'"):
        search(tmp_path, "x", executor="vmap", backend="numpy")
    with pytest.raises(ValueError, match="unknown executor 'threads'"):
        search(tmp_path, "x", executor="threads")
    with pytest.raises(ValueError, match="unknown sampler 'grid'"):
        search(tmp_path, "x", sampler="grid")
    with pytest.raises(ValueError, match="executor 'dask' needs dask_address"):
        search(tmp_path, "x", executor="dask")


#: The quick runs of the experiment: numpy, and torch, which joins the experiments and the search
#: (jax's search runs above, array-api-strict's in test_a_search_on_each_backend_...).
@pytest.mark.parametrize("backend", ["numpy", "torch"], indirect=True)
def test_the_experiment_writes_a_png_and_json(backend, tmp_path):
    result = hyperparameter_search_experiment(backend=backend, dataset="mnist-5k", out_dir=tmp_path,
                                              quick=True, progress=False, executor="sequential",
                                              trials=5, epochs=3)
    assert result.name == "hyperparameter-search" and "best: val acc" in result.summary
    assert f"with sequential (1 worker) on {backend.name} in" in result.summary
    assert result.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    numbers = json.loads(result.json.read_text())
    assert numbers["experiment"] == "hyperparameter-search" and len(numbers["trials"]) == 5
    assert numbers["backend"] == backend.name
    assert numbers["config"]["epochs"] == 3 and numbers["suggested"]["from_best"] == 2


def test_a_script_without_a_main_guard_gets_a_clear_error(tmp_path):
    """Spawned workers import the main script again; one that runs the search at top level
    kills them at their start, and the parent says why instead of "BrokenProcessPool"."""
    script = tmp_path / "search_script.py"
    script.write_text("from xpnet.search import hyperparameter_search\n"
                      f"hyperparameter_search(trials=2, epochs=1, executor='processes', parallel=2, "
                      f"out_dir={str(tmp_path)!r}, progress=False)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode != 0
    assert 'put the call under `if __name__ == "__main__":`' in done.stderr.splitlines()[-1]
