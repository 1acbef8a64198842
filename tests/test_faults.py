"""What a careless or hostile user does, and what xpnet must answer: one line naming the problem,
exit status 2 for bad input and 3 for divergence, and nothing saved lost or replaced.

The checkpoint, data and search cases live in test_faults_checkpoint.py, test_faults_data.py
and test_faults_search.py."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import xpnet
from xpnet.cli import main
from xpnet.errors import ConfigError, DataError, DivergedError
from xpnet.nn import SGD, Adam, Momentum, MultiLayerNet, TwoLayerNet
from xpnet.nn.training import fit


def one_line_error(capsys, status, expected_status, phrase):
    """The CLI's answer: the status, and one line on stderr that names the problem."""
    err = capsys.readouterr().err.strip()
    assert status == expected_status, err
    assert len(err.splitlines()) == 1 and err.startswith("xpnet: error: "), err
    assert phrase in err, err
    return err


TRAIN = ["train", "--dataset", "mnist-5k", "--epochs", "1", "--backend", "numpy"]


@pytest.mark.parametrize("args, phrase", [
    (["--lr", "nan"], "lr must be a finite number > 0, got nan"),
    (["--lr", "inf"], "lr must be a finite number > 0, got inf"),
    (["--lr", "-1"], "lr must be a finite number > 0"),
    (["--lr", "0"], "lr must be a finite number > 0"),
    (["--model", "multi-layer", "--weight-decay", "nan"], "weight_decay_lambda must be a finite"),
    (["--model", "multi-layer", "--weight-decay", "-1"], "weight_decay_lambda must be a finite number >= 0"),
    (["--batch-size", "5000"], "batch size 5000 is larger than the training set (4000 samples)"),
    (["--seed", "-1"], "seed must be an integer >= 0, got -1"),
    (["--weight-init", "-1"], "weight_init_std must be a finite number >= 0"),
    (["--hidden", str(10**10)], "GB of memory available; use smaller layers"),
])
def test_nonsense_hyperparameters_are_one_line_before_training(capsys, args, phrase):
    status = main([*TRAIN, *args])
    one_line_error(capsys, status, 2, phrase)
    assert "epoch" not in capsys.readouterr().out  # refused before any training


@pytest.mark.parametrize("tolerance", ["nan", "-1", "0"])
def test_gradcheck_refuses_a_tolerance_that_is_not_positive(capsys, tolerance):
    status = main(["gradcheck", "--dataset", "mnist-5k", "--batch-size", "5", "--tolerance", tolerance])
    one_line_error(capsys, status, 2, "tolerance must be a finite number > 0")


def test_divergence_stops_with_status_3_and_strict_json(capsys, tmp_path):
    out = tmp_path / "run.json"
    status = main([*TRAIN, "--model", "multi-layer", "--lr", "1e9", "--epochs", "3",
                   "--json", str(out)])
    err = one_line_error(capsys, status, 3, "training diverged: the loss became nan at epoch 1")
    assert err.endswith("lower the learning rate (--lr)")

    def no_constants(name):
        raise AssertionError(f"{name} is not JSON")
    report = json.loads(out.read_text(), parse_constant=no_constants)
    assert report["diverged"]["epoch"] == 1 and report["diverged"]["batch"] >= 1
    assert report["final_test_acc"] is None and report["epochs"] == []


def test_divergence_keeps_the_last_finite_params_and_checkpoint(tmp_path):
    x = np.random.default_rng(0).random((200, 20)).astype(np.float32)
    t = x[:, :3].argmax(axis=1)
    net = MultiLayerNet(20, [16, 16], 3, backend="numpy", seed=0)
    checkpoint = tmp_path / "run.npz"
    fit(net, SGD(lr=0.1), (x, t), (x, t), epochs=1, batch_size=50, checkpoint=checkpoint,
        progress=False)
    saved, before = checkpoint.read_bytes(), {k: np.array(v) for k, v in net.params.items()}
    with pytest.raises(DivergedError, match="at epoch 1, batch") as info:
        fit(net, SGD(lr=1e12), (x, t), (x, t), epochs=2, batch_size=50, checkpoint=checkpoint,
            progress=False, overwrite=True)
    assert info.value.history == [] and not math.isfinite(info.value.loss)
    assert checkpoint.read_bytes() == saved  # the finite run's checkpoint is still there
    for name, value in before.items():  # and the net kept its last finite params
        np.testing.assert_array_equal(net.params[name], value)


@pytest.mark.parametrize("labels, message", [
    ([1, 2, 3, 4, 12], "labels must lie in 0..4, found 1..12"),
    ([-1, 0, 1, 2, 3], "labels must lie in 0..4, found -1..3"),
    ([0, 1, 2, 3], "5 samples but 4 labels"),
    ([0.0, 1.0, 2.0, 3.0, 4.0], "labels must be integers"),
])
def test_the_api_refuses_bad_labels_on_every_backend(backend, labels, message):
    """On JAX an out-of-range label used to give a finite loss (the gather clamps it)."""
    net = TwoLayerNet(4, 3, 5, backend=backend, seed=0)
    x = np.ones((5, 4), np.float32)
    for call in (net.loss, net.gradient, net.accuracy, net.numerical_gradient):
        with pytest.raises(DataError, match=message):
            call(x, np.array(labels))
    with pytest.raises(DataError, match=message):  # labels already on the device too
        net.loss(x, backend.asarray(np.array(labels)))


def test_the_api_refuses_an_empty_batch(backend):
    net = TwoLayerNet(4, 3, 5, backend=backend, seed=0)
    with pytest.raises(DataError, match=r"no samples \(x has shape \(0, 4\)\)"):
        net.loss(np.ones((0, 4), np.float32), np.zeros(0, np.int64))


@pytest.mark.parametrize("make, message", [
    (lambda: TwoLayerNet(4, 3, 5, dtype="int32"), "dtype must be one of float32, float64"),
    (lambda: TwoLayerNet(4, 3, 5, seed=-1), "seed must be an integer >= 0"),
    (lambda: TwoLayerNet(4, 0, 5), "a hidden size must be an integer >= 1, got 0"),
    (lambda: TwoLayerNet(4, 2.5, 5), "a hidden size must be an integer >= 1, got 2.5"),
    (lambda: TwoLayerNet(0, 3, 5), "input_size must be an integer >= 1"),
    (lambda: TwoLayerNet(4, 3, 5, weight_init_std=float("nan")), "weight_init_std must be a finite"),
    (lambda: MultiLayerNet(4, [3], 5, weight_decay_lambda=-1.0), "weight_decay_lambda must be"),
    (lambda: MultiLayerNet(4, [], 5), "hidden_size_list must hold at least one size"),
    (lambda: MultiLayerNet(4, [10**7, 10**7], 5), "GB of memory available"),
    (lambda: SGD(lr=float("nan")), "lr must be a finite number > 0, got nan"),
    (lambda: Momentum(momentum=1.0), "momentum must be a finite number >= 0 and < 1"),
    (lambda: Adam(beta2=-0.1), "beta2 must be a finite number >= 0 and < 1"),
])
def test_the_api_refuses_nonsense_settings(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


@pytest.mark.parametrize("options, message", [
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
    ({"seed": -1}, "seed must be an integer >= 0, got -1"),
    ({"eval_samples": 0}, "eval_samples must be an integer >= 1"),
])
def test_fit_refuses_nonsense_settings_before_training(options, message):
    x = np.ones((10, 4), np.float32)
    t = np.zeros(10, np.int64)
    net = TwoLayerNet(4, 3, 5, backend="numpy", seed=0)
    with pytest.raises(ConfigError, match=message):  # a ValueError too, as Python's own are
        fit(net, SGD(), (x, t), (x, t), progress=False, **{"epochs": 1, **options})


def run_cli(*args, **env):
    return subprocess.run([sys.executable, "-m", "xpnet", *args], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, **env))


@pytest.mark.parametrize("variable, value, phrase", [
    ("JAX_PLATFORMS", "cuda", "JAX_PLATFORMS='cuda' names a platform"),
    ("JAX_PLATFORMS", "garbage", "Unable to initialize backend 'garbage'"),
    ("JAX_ENABLE_X64", "garbage", "invalid truth value 'garbage' for environment 'JAX_ENABLE_X64'"),
])
def test_a_bad_jax_environment_is_a_reason_not_a_traceback(variable, value, phrase):
    if not xpnet.available_backends()["jax"][0]:
        pytest.skip("jax is not usable here")
    if variable == "JAX_PLATFORMS" and value == "cuda" and \
            "gpu" in xpnet.available_backends()["jax"][1]:
        pytest.skip("this machine's jax has CUDA")
    info = run_cli("info", **{variable: value})
    assert info.returncode == 0 and "Traceback" not in info.stderr, info.stderr
    assert "jax: unavailable" in info.stdout and phrase in info.stdout
    train = run_cli("train", "--backend", "jax", "--dataset", "synthetic", "--epochs", "1",
                    **{variable: value})
    assert train.returncode == 2 and len(train.stderr.strip().splitlines()) == 1, train.stderr
    assert "backend 'jax' is not usable here" in train.stderr and phrase in train.stderr


def test_a_reader_that_leaves_early_gets_no_traceback():
    """`xpnet info | head -1`: the pipe closes after one line; exit quietly, as Unix tools do."""
    process = subprocess.Popen([sys.executable, "-m", "xpnet", "info"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    first = process.stdout.readline()
    process.stdout.close()
    err = process.stderr.read()
    process.wait(timeout=60)
    assert first.startswith("xpnet ") and err == ""


def test_saved_work_is_never_replaced_without_being_asked(capsys, tmp_path):
    checkpoint = tmp_path / "c.npz"
    assert main([*TRAIN, "--epochs", "2", "--checkpoint", str(checkpoint)]) == 0
    saved = checkpoint.read_bytes()
    capsys.readouterr()
    status = main([*TRAIN, "--checkpoint", str(checkpoint)])  # no --resume: refused, kept
    one_line_error(capsys, status, 2, "already holds a checkpoint (epoch 2); pass --resume to "
                                      "continue it or --overwrite to start over")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    status = main([*TRAIN, "--checkpoint", str(notes), "--overwrite"])
    one_line_error(capsys, status, 2, "is not an xpnet checkpoint; refusing to replace it")
    assert checkpoint.read_bytes() == saved and notes.read_text() == "my notes"
    assert main([*TRAIN, "--checkpoint", str(checkpoint), "--overwrite"]) == 0  # asked: replaced
    assert checkpoint.read_bytes() != saved


@pytest.mark.parametrize("args, phrase", [
    (["--checkpoint", "/etc/passwd/x.npz"], "cannot write checkpoint /etc/passwd/x.npz: /etc/passwd is not a folder"),
    (["--checkpoint", ""], "checkpoint needs a file path, but the path given is empty"),
    (["--json", ""], "--json needs a file path, but the path given is empty"),
    (["--json", "/nonexistent-folder/run.json"], "its folder /nonexistent-folder does not exist"),
    (["--overwrite"], "--overwrite needs --checkpoint PATH"),
])
def test_unwritable_outputs_are_found_before_training(capsys, args, phrase):
    status = main([*TRAIN, *args])
    one_line_error(capsys, status, 2, phrase)
    assert "epoch" not in capsys.readouterr().out


def test_an_experiment_with_an_unwritable_out_fails_before_running(capsys):
    status = main(["experiment", "weight-init-compare", "--quick", "--out", "/etc/passwd/x"])
    one_line_error(capsys, status, 2, "cannot create --out /etc/passwd/x")
    assert "time:" not in capsys.readouterr().out


def test_a_full_disk_while_saving_is_one_line_and_keeps_the_previous_checkpoint(tmp_path):
    """The file size limit (RLIMIT_FSIZE) stands in for a full disk: writes past it fail."""
    checkpoint = tmp_path / "c.npz"
    assert main([*TRAIN, "--checkpoint", str(checkpoint)]) == 0
    saved = checkpoint.read_bytes()
    limit = ("import resource, signal, sys; from xpnet.cli import main; "
             "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
             f"resource.setrlimit(resource.RLIMIT_FSIZE, ({len(saved) // 2}, {len(saved) // 2})); "
             "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", limit, *TRAIN, "--epochs", "2", "--checkpoint",
                           str(checkpoint), "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"xpnet: error: cannot save checkpoint {checkpoint}: File too large; the previous one (if "
        "any) is kept"]
    assert checkpoint.read_bytes() == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]  # no .part, no lock left
