"""`xpnet book run`: scripts in the book's style (tests/book_scripts, one per idiom of the book's
scripts) run unchanged on every backend, print what the book's modules would, and print the same
numbers on NumPy and JAX and with the plain-NumPy book-style modules of bench/book_style."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xpnet.backends import available_backends
from xpnet.book.runner import SERVED, run_script

SCRIPTS = Path(__file__).parent / "book_scripts"
BOOK_STYLE = Path(__file__).parent.parent / "bench" / "book_style"
NUMBER = re.compile(r"-?\d+\.\d+(?:e[-+]?\d+)?|-?\d+e[-+]?\d+")


@pytest.fixture
def scripts(tmp_path):
    """A copy of tests/book_scripts (scripts write files next to themselves, as the book's do)."""
    return Path(shutil.copytree(SCRIPTS, tmp_path / "book"))


def run(scripts, name, capsys, backend="numpy", **options):
    """Run one script through `xpnet book run` in this process: its stdout."""
    options = {"dataset": "mnist-5k", "seed": 0, **options}
    before = {name: sys.modules.get(name) for name in SERVED}  # (bench/book_convnet's `common`)
    assert run_script(scripts / name, backend=backend, **options) == 0
    assert {name: sys.modules.get(name) for name in SERVED} == before, \
        "the served names must be forgotten afterwards, what was there before put back"
    return capsys.readouterr().out


def value(out, label):
    """The number printed right after `label` (e.g. "W1:")."""
    return float(re.search(re.escape(label) + r"\s*(" + NUMBER.pattern + ")", out).group(1))


def numbers(out):
    return [float(n) for n in NUMBER.findall(out)]


def test_training_by_hand_learns_and_its_gradient_check_passes(backend, scripts, capsys, tmp_path):
    """params[key] -= lr * grad[key], host batches, losses plotted (and a decoy two_layer_net.py
    in the script's folder that must not be imported)."""
    out = run(scripts, "ch04/train_by_hand.py", capsys, backend, figures=tmp_path / "figs")
    assert value(out, "first loss:") > 2 * value(out, "last loss:")
    assert value(out, "test acc:") > 0.5
    for key in ("W1", "b1", "W2", "b2"):
        assert value(out, f"diff {key}:") < 1e-6
    assert (tmp_path / "figs" / "figure-01.png").stat().st_size > 1000


def test_labels_as_one_hot_integers_or_a_column_give_the_same_numbers(backend, scripts, capsys):
    lines = run(scripts, "ch05/labels.py", capsys, backend).splitlines()
    assert lines[0].split(" ", 1)[1] == lines[1].split(" ", 1)[1] == lines[2].split(" ", 1)[1]
    assert lines[3].endswith("type:ndarray")
    assert value(lines[3], "argmax agrees:") == value(lines[0], "acc:")
    assert lines[4] == "dtypes:float64"  # the book's weights, gradients and scores


def test_optimizers_update_the_nets_params_and_plain_floats_in_place(backend, scripts, capsys):
    out = run(scripts, "ch06/optimizers.py", capsys, backend)
    for name in ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"):
        line = next(s for s in out.splitlines() if s.startswith(name + " "))
        assert value(line, "last:") < 0.6 * value(line, "first:"), line
    assert "type:float" in out and abs(value(out, "floats x:")) < 7.0


def test_trainer_with_batchnorm_dropout_and_weight_decay(backend, scripts, capsys, tmp_path):
    out = run(scripts, "ch06/dropout_trainer.py", capsys, backend, figures=tmp_path)
    assert out.count("train loss:") == 18 and out.count("=== epoch:") == 3
    assert len(numbers(out.split("train acc list:")[1].splitlines()[0])) == 3
    assert value(out.split("Final Test Accuracy")[1], "test acc:") > 0.3
    assert "train_flg changes the output:True" in out
    assert (tmp_path / "figure-01.png").is_file()


def test_batchnorm_gradient_check_prints_differences_below_1e_6(backend, scripts, capsys):
    out = run(scripts, "ch06/batchnorm_check.py", capsys, backend)
    assert len(out.splitlines()) == 10  # W, b, gamma, beta of two blocks, then W3, b3
    assert all(value(line, ":") < 1e-6 for line in out.splitlines())


def test_conv_net_gradient_check_and_params_saved_without_pickle(backend, scripts, capsys):
    out = run(scripts, "ch07/conv_save_load.py", capsys, backend)
    for key in ("W1", "b1", "W2", "b2", "W3", "b3"):
        assert value(out, f"{key}:") < 1e-6
    assert "same after load:True" in out
    assert "im2col shape:(288, 9) out size:12.0" in out and value(out, "center count:") == 9
    saved = scripts / "ch07" / "params.pkl"
    assert saved.read_bytes()[:2] == b"PK"  # a .npz (zip) archive, not a pickle
    assert set(np.load(saved, allow_pickle=False).files) >= {"params/W1", "params/b3"}


def test_the_readers_own_layers_see_params_updated_in_place(backend, scripts, capsys):
    out = run(scripts, "ch07/own_layers.py", capsys, backend)
    assert value(out, "last:") < 0.5 * value(out, "first:")


def test_a_pickle_is_refused_in_one_line_and_left_as_it_was(scripts):
    pickled = scripts / "ch08" / "book_params.pkl"
    pickled.write_bytes(b"\x80\x04K\x01.")  # what pickle.dumps(1) writes
    done = subprocess.run([sys.executable, "-m", "xpnet", "book", "run", "ch08/pickle_refused.py",
                           "--dataset", "mnist-5k"], cwd=scripts, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "book_params.pkl is a pickle" in done.stderr
    assert "loaded" not in done.stdout
    assert pickled.read_bytes() == b"\x80\x04K\x01."


def test_cli_passes_script_arguments_and_exit_status(tmp_path):
    script = tmp_path / "args.py"
    script.write_text("import sys, os\nprint(sys.argv[1:], os.getcwd())\nsys.exit(3)\n")
    done = subprocess.run([sys.executable, "-m", "xpnet", "book", "run", str(script), "--seed", "1",
                           "--device", "cpu", "--", "--lr", "0.1"], capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    assert done.stdout.strip() == f"['--lr', '0.1'] {tmp_path}"
    missing = subprocess.run([sys.executable, "-m", "xpnet", "book", "run", "nowhere.py"],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no script at nowhere.py" in missing.stderr
    unknown = subprocess.run([sys.executable, "-m", "xpnet", "book", "run", str(script),
                              "--backend", "nope"], capture_output=True, text=True)
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
    assert "unknown backend 'nope'" in unknown.stderr
    negative = subprocess.run([sys.executable, "-m", "xpnet", "book", "run", str(script),
                               "--seed", "-1"], capture_output=True, text=True)
    assert negative.returncode == 2 and "seed" in negative.stderr and "Traceback" not in negative.stderr


@pytest.mark.parametrize("name", ["ch04/train_by_hand.py", "ch06/dropout_trainer.py",
                                  "ch07/own_layers.py"])
def test_numpy_and_jax_print_the_same_numbers(name, scripts, capsys):
    if not available_backends()["jax"][0]:
        pytest.skip("jax is not installed")
    on_numpy, on_jax = (numbers(run(scripts, name, capsys, b)) for b in ("numpy", "jax"))
    assert len(on_numpy) == len(on_jax) >= 5
    np.testing.assert_allclose(on_jax, on_numpy, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["ch06/dropout_trainer.py", "ch06/optimizers.py",
                                  "ch07/own_layers.py"])
def test_served_modules_print_what_plain_book_style_numpy_modules_print(name, scripts, capsys):
    """The same script run the book's way, with our plain-NumPy modules of bench/book_style: the
    served nets draw the same weights, masks and batches from np.random and compute the same.
    (Not ch05/labels.py: the book's loss mis-reads an (N, 1) label column, xpnet's does not.)"""
    served = numbers(run(scripts, name, capsys))
    plain = numbers(run(scripts, name, capsys, book_root=BOOK_STYLE))
    assert len(served) == len(plain) >= 5
    np.testing.assert_allclose(served, plain, rtol=1e-9, atol=1e-9)


def test_a_book_nets_numerical_gradient_includes_its_weight_decay(backend):
    """λ goes into the shared programs as an argument, the numerical gradient's too."""
    from xpnet.book.nets import MultiLayerNet
    from xpnet.book.session import session

    with session(backend):
        np.random.seed(0)
        net = MultiLayerNet(20, [10, 10], 3, weight_decay_lambda=0.3)
        x, t = np.random.rand(8, 20), np.random.randint(0, 3, 8)
        backprop, numerical = net.gradient(x, t), net.numerical_gradient(x, t)
    assert list(numerical) == list(backprop)
    for key in backprop:
        np.testing.assert_allclose(numerical[key], backprop[key], atol=1e-6, rtol=0)
    assert np.abs(0.3 * net.params["W1"]).max() > 0.01  # the λW term is far above that tolerance
