"""The command line, end to end: `train` on real digits, `info`, and one-line errors."""
import json
import os
import subprocess
import sys

import pytest

import xpnet
from xpnet.cli import main


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "xpnet", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def env_with(**variables):
    """This process's environment without XPNET_BACKEND and XPNET_DEVICE, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if k not in ("XPNET_BACKEND", "XPNET_DEVICE")}
    return {**env, **variables}


def needs(name):
    ok, reason = xpnet.available_backends()[name]
    if not ok:
        pytest.skip(f"{name} unavailable: {reason}")


def test_train_end_to_end_writes_json(tmp_path):
    out = tmp_path / "run.json"
    done = run_cli("train", "--dataset", "mnist-5k", "--epochs", "2", "--lr", "0.5",
                   "--json", str(out), "--backend", "numpy")
    assert done.returncode == 0, done.stderr
    assert "dataset: MNIST 5k subset (4,000 train / 1,000 test" in done.stdout
    epoch_lines = [line for line in done.stdout.splitlines() if line.startswith("epoch")]
    assert len(epoch_lines) == 2 and "train_loss" in epoch_lines[0] and "test_acc" in epoch_lines[0]
    report = json.loads(out.read_text())
    assert report["backend"] == "numpy" and report["dataset"] == "mnist-5k"
    assert [e["epoch"] for e in report["epochs"]] == [1, 2]
    assert set(report["epochs"][0]) == {"epoch", "train_loss", "train_acc", "test_acc", "seconds",
                                        "eval_seconds"}
    assert report["final_test_acc"] == report["epochs"][-1]["test_acc"]
    assert report["final_test_acc"] > 0.5  # two epochs on real digits: far above chance (0.1)
    assert report["epochs"][1]["train_loss"] < report["epochs"][0]["train_loss"]


def test_train_on_jax_in_process(tmp_path, capsys):
    if not xpnet.available_backends()["jax"][0]:
        pytest.skip("jax unavailable")
    out = tmp_path / "jax.json"
    status = main(["train", "--backend", "jax", "--dataset", "mnist-5k", "--epochs", "1",
                   "--json", str(out), "--no-progress"])
    assert status == 0
    assert "compile time" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["backend"] == "jax" and report["compile_seconds"] > 0


def test_synthetic_data_is_labelled_as_such(capsys):
    assert main(["train", "--dataset", "synthetic", "--epochs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "synthetic random data" in out and "meaningless" in out


@pytest.mark.parametrize("args, message", [
    (["train", "--backend", "tensorflow"], "unknown backend 'tensorflow'"),
    (["train", "--dataset", "cifar"], "unknown dataset 'cifar'"),
])
def test_user_errors_are_one_line_with_status_2(args, message):
    done = run_cli(*args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr
    assert "Traceback" not in done.stderr


def test_unusable_backend_is_one_line_with_status_2():
    name = next((n for n, (ok, _) in xpnet.available_backends().items() if not ok), None)
    if name is None:
        pytest.skip("every backend is usable on this machine")
    done = run_cli("train", "--backend", name, "--epochs", "1")
    assert done.returncode == 2
    assert done.stderr.startswith(f"xpnet: error: backend {name!r} is not usable here")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_info_lists_backends_and_versions():
    done = run_cli("info", env=env_with())
    assert done.returncode == 0, done.stderr
    assert "numpy: available" in done.stdout and "cupy:" in done.stdout and "jax:" in done.stdout
    assert "torch:" in done.stdout and "array-api-strict:" in done.stdout
    assert f"xpnet {xpnet.__version__}" in done.stdout
    assert "default backend: numpy (set XPNET_BACKEND or pass --backend)" in done.stdout
    assert "default device: cpu (the library's default; set XPNET_DEVICE or pass --device)" in done.stdout
    assert "  devices: cpu\n" in done.stdout  # numpy's


def test_info_survives_a_device_no_backend_has():
    done = run_cli("info", env=env_with(XPNET_DEVICE="tpu:7"))
    assert done.returncode == 0, done.stderr
    assert "default device: none usable (numpy computes on the CPU only; got device 'tpu:7')" in done.stdout
    assert "numpy: available" in done.stdout and "not usable on XPNET_DEVICE=tpu:7" in done.stdout


def test_help_lists_the_backends_and_device():
    done = run_cli("train", "--help")
    assert done.returncode == 0
    assert "numpy | jax | torch | cupy" in " ".join(done.stdout.split()) and "--device D" in done.stdout


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_train_on_a_device_says_and_records_it(backend, tmp_path, capsys):
    needs(backend)
    out = tmp_path / "run.json"
    status = main(["train", "--backend", backend, "--device", "cpu", "--dataset", "synthetic",
                   "--epochs", "1", "--no-progress", "--json", str(out)])
    assert status == 0
    assert f"backend: {backend} on cpu\n" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["backend"] == backend and report["device"] == "cpu"


def test_device_comes_from_xpnet_device_and_the_option_wins(monkeypatch, capsys):
    needs("array-api-strict")
    monkeypatch.setenv("XPNET_DEVICE", "device2")
    common = ["gradcheck", "--backend", "array-api-strict", "--dataset", "synthetic", "--batch-size", "2",
              "--hidden", "3"]
    assert main(common) == 0
    assert "backend: array-api-strict on device2\n" in capsys.readouterr().out
    assert main([*common, "--device", "CPU_DEVICE"]) == 0
    assert "backend: array-api-strict on CPU_DEVICE\n" in capsys.readouterr().out


@pytest.mark.parametrize("backend, device, message", [
    ("numpy", "cuda", "numpy computes on the CPU only; got device 'cuda'"),
    ("torch", "tpu", "torch devices are 'cpu', 'cuda', 'cuda:N' or 'mps'; got 'tpu'"),
    ("array-api-strict", "cpu", "array-api-strict devices are"),
])
def test_unknown_device_is_one_line_with_status_2(backend, device, message):
    needs(backend)
    for args, env in [(["--device", device], env_with()), ([], env_with(XPNET_DEVICE=device))]:
        done = run_cli("train", "--backend", backend, *args, "--dataset", "synthetic", env=env)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("xpnet: error: ") and message in done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_experiment_gets_the_backend_with_its_device(tmp_path, monkeypatch, capsys):
    needs("array-api-strict")
    from xpnet.experiments import EXPERIMENTS, ExperimentResult

    seen = {}

    def fake(backend, **options):
        seen["backend"] = backend
        return ExperimentResult("fake", "done", {}, tmp_path / "fake.png", tmp_path / "fake.json", 0.0)

    monkeypatch.setitem(EXPERIMENTS, "fake", fake)
    assert main(["experiment", "fake", "--backend", "array-api-strict", "--device", "device2",
                 "--dataset", "synthetic"]) == 0
    assert seen["backend"].name == "array-api-strict" and seen["backend"].device_name == "device2"
    assert "experiment fake on array-api-strict (device2)" in capsys.readouterr().out


def test_json_write_failure_is_one_line_and_leaves_no_temp_file(tmp_path, capsys):
    (tmp_path / "report").mkdir()  # a directory where the report should go
    status = main(["train", "--dataset", "synthetic", "--epochs", "1", "--no-progress",
                   "--json", str(tmp_path / "report")])
    assert status == 2
    assert capsys.readouterr().err.startswith(
        f"xpnet: error: cannot write --json {tmp_path / 'report'}: it is a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_a_failed_run_keeps_an_earlier_report(tmp_path):
    out = tmp_path / "run.json"
    out.write_text('{"earlier": true}')
    assert main(["train", "--dataset", "cifar", "--json", str(out)]) == 2
    assert out.read_text() == '{"earlier": true}'


def gradcheck_rows(out):
    """{param: [numbers of its row]} from the table `xpnet gradcheck` prints."""
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0][:1] in "Wb" and parts[0][1:].isdigit():
            rows[parts[0]] = [float(p) for p in parts[1:] if "e" in p]
    return rows


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_gradcheck_passes_on_a_smooth_net(backend, capsys):
    if not xpnet.available_backends()[backend][0]:
        pytest.skip(f"{backend} unavailable")
    status = main(["gradcheck", "--backend", backend, "--dataset", "mnist-5k", "--batch-size", "20"])
    out = capsys.readouterr().out
    assert status == 0, out
    rows = gradcheck_rows(out)
    assert list(rows) == ["W1", "b1", "W2", "b2"]
    assert all(0 < max_rel < 1e-5 for row in rows.values() for max_rel in row[1::2])
    assert ("jax.grad" in out) == (backend == "jax")
    assert "numerical" in out and "backprop" in out and out.rstrip().splitlines()[-1].startswith("OK")


def test_gradcheck_simple_conv_checks_the_book_net_on_one_image(capsys):
    status = main(["gradcheck", "--model", "simple-conv", "--dataset", "mnist-5k", "--backend", "numpy"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "SimpleConvNet(input_dim=[1, 10, 10]" in out and "the first 1 training images" in out
    rows = gradcheck_rows(out)
    assert list(rows) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert all(max_rel < 1e-5 for row in rows.values() for max_rel in row[1::2])
    assert out.rstrip().splitlines()[-1].startswith("OK") and "checked again, and passed" in out


def test_gradcheck_multi_layer_with_weight_decay(capsys):
    status = main(["gradcheck", "--model", "multi-layer", "--hidden-sizes", "20,10", "--weight-decay",
                   "0.1", "--dataset", "mnist-5k", "--batch-size", "10", "--backend", "numpy"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert list(gradcheck_rows(out)) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert "MultiLayerNet(784, [20, 10], 10, sigmoid, init he, weight decay 0.1)" in out


def test_gradcheck_fails_with_status_1_above_the_tolerance(capsys):
    # central differences and backprop differ by about 1e-6 relative (h² and the loss's 1e-7)
    status = main(["gradcheck", "--tolerance", "1e-12", "--dataset", "mnist-5k",
                   "--batch-size", "10", "--backend", "numpy"])
    out = capsys.readouterr().out
    assert status == 1
    assert out.rstrip().splitlines()[-1].startswith("FAILED")


def test_train_with_numerical_gradients_follows_backprop(tmp_path):
    reports = {}
    for gradient in ("numerical", "backprop"):
        out = tmp_path / f"{gradient}.json"
        done = run_cli("train", "--gradient", gradient, "--dataset", "mnist-5k", "--epochs", "2",
                       "--lr", "0.5", "--dtype", "float64", "--backend", "numpy", "--json", str(out))
        assert done.returncode == 0, done.stderr
        assert f"float64, {gradient} gradients" in done.stdout
        reports[gradient] = json.loads(out.read_text())
    numerical, backprop = reports["numerical"], reports["backprop"]
    assert numerical["gradient"] == "numerical" and numerical["dtype"] == "float64"
    assert numerical["final_test_acc"] > 0.5  # learns: chance is 0.1
    # gradients equal to about 1e-6 relative: the same path through training
    for a, b in zip(numerical["epochs"], backprop["epochs"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)
        assert a["test_acc"] == pytest.approx(b["test_acc"], abs=0.005)


@pytest.mark.parametrize("args, message", [
    (["--weight-init", "glorot"], "must be a number or one of"),
    (["--hidden-sizes", "100,,5"], "must be positive integers separated by commas"),
])
def test_bad_model_options_are_usage_errors(args, message):
    done = run_cli("train", *args)
    assert done.returncode == 2 and message in done.stderr


def test_weight_decay_needs_multi_layer():
    done = run_cli("train", "--weight-decay", "0.1")
    assert done.returncode == 2 and "--weight-decay needs --model multi-layer" in done.stderr


def test_train_with_checkpoint_and_resume_ends_where_a_straight_run_ends(tmp_path):
    common = ["train", "--backend", "numpy", "--dataset", "mnist-5k", "--model", "multi-layer",
              "--hidden-sizes", "50,50", "--optimizer", "adam", "--batchnorm", "--dropout", "0.2",
              "--weight-decay", "0.01", "--no-progress"]
    straight, resumed, ckpt = tmp_path / "straight.json", tmp_path / "resumed.json", tmp_path / "ck.npz"
    assert main([*common, "--epochs", "2", "--json", str(straight)]) == 0
    assert main([*common, "--epochs", "1", "--checkpoint", str(ckpt)]) == 0
    assert main([*common, "--epochs", "2", "--checkpoint", str(ckpt), "--resume", "--json", str(resumed)]) == 0
    a, b = json.loads(straight.read_text()), json.loads(resumed.read_text())
    keys = ("epoch", "train_loss", "train_acc", "test_acc")
    assert [[e[k] for k in keys] for e in a["epochs"]] == [[e[k] for k in keys] for e in b["epochs"]]
    assert "MultiLayerNetExtend(784, [50, 50], 10, relu, init he, weight decay 0.01, BatchNorm, " \
           "Dropout 0.2)" in a["model"]
    # a checkpoint of another configuration is refused, and kept
    before = ckpt.read_bytes()
    done = run_cli(*common[:-1], "--optimizer", "sgd", "--epochs", "3", "--checkpoint", str(ckpt), "--resume")
    assert done.returncode == 2 and "was saved by a different run: optimizer" in done.stderr
    assert ckpt.read_bytes() == before


def test_resume_needs_a_checkpoint_path():
    done = run_cli("train", "--resume")
    assert done.returncode == 2 and "--resume needs --checkpoint PATH" in done.stderr


def test_search_has_its_own_command(tmp_path, capsys):
    status = main(["search", "--backend", "numpy", "--dataset", "mnist-5k", "--trials", "2",
                   "--epochs", "2", "--executor", "sequential", "--no-progress",
                   "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0 and out.startswith("experiment hyperparameter-search on numpy")
    assert {p.name for p in tmp_path.iterdir()} >= {"hyperparameter-search.json",
                                                    "hyperparameter-search.png", "search.db"}
    assert len(json.loads((tmp_path / "hyperparameter-search.json").read_text())["trials"]) == 2
    with pytest.raises(SystemExit):  # the search's options belong to `xpnet search` only
        main(["experiment", "weight-init-compare", "--trials", "2"])


def test_eval_samples_thins_the_epochs_accuracies_but_not_the_final_one(tmp_path, capsys):
    reports = {}
    for eval_samples in (None, 30):
        out = tmp_path / f"{eval_samples}.json"
        flags = [] if eval_samples is None else ["--eval-samples", str(eval_samples)]
        assert main(["train", "--dataset", "mnist-5k", "--epochs", "2", "--lr", "0.5", "--backend",
                     "numpy", *flags, "--json", str(out)]) == 0
        reports[eval_samples] = json.loads(out.read_text())
    capsys.readouterr()
    whole, thinned = reports[None], reports[30]
    assert thinned["final_test_acc"] == whole["final_test_acc"]  # the same training, all 1,000
    for a, b in zip(whole["epochs"], thinned["epochs"]):
        assert a["train_loss"] == b["train_loss"]
        assert round(b["test_acc"] * 30, 9) % 1 == 0 and round(b["train_acc"] * 30, 9) % 1 == 0
    assert any(round(e["test_acc"] * 30, 9) % 1 for e in whole["epochs"])  # out of 1,000, not 30
