"""The chapter-7/8 experiments (`conv-filters`, `misclassified`) at a tiny size on NumPy: the files
they write, and that what they report is what the same net, trained again here, does."""
import inspect
import json
import struct

import numpy as np
import pytest

from xpnet.cli import main
from xpnet.data import load_dataset
from xpnet.experiments import EXPERIMENTS
from xpnet.experiments.convnets import neighbour_correlation
from xpnet.nn.convnets import DeepConvNet, SimpleConvNet
from xpnet.nn.optimizers import Adam
from xpnet.nn.training import fit

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def images():
    """mnist-5k as (N, 1, 28, 28) images: ((x, t), (x_test, t_test))."""
    return load_dataset("mnist-5k").arrays(normalize=True, flatten=False)


def png_size(path):
    """(width, height) of a PNG file, from its IHDR chunk."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000  # a real picture
    return struct.unpack(">II", data[16:24])


def train_again(net, train, test, eval_samples):
    """`net` trained as the experiments train theirs: 1 epoch of Adam lr 0.001, batches of 100,
    seed 0; returns fit's last EpochResult."""
    return fit(net, Adam(lr=0.001), train, test, epochs=1, batch_size=100, seed=0, progress=False,
               eval_samples=eval_samples).epochs[-1]


def test_both_are_registered_with_the_common_options_and_their_own():
    for name in ("conv-filters", "misclassified"):
        params = list(inspect.signature(EXPERIMENTS[name]).parameters)
        assert params[:6] == ["backend", "dataset", "out_dir", "quick", "seed", "progress"]
        assert {"epochs", "train_size"} <= set(params[6:])
    assert "max_shown" in inspect.signature(EXPERIMENTS["misclassified"]).parameters


def test_conv_filters_quick_run_from_the_cli(tmp_path, capsys, images):
    assert main(["experiment", "conv-filters", "--quick", "--backend", "numpy", "--dataset",
                 "mnist-5k", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "conv-filters.json") in out and "correlation of neighbouring" in out
    numbers = json.loads((tmp_path / "conv-filters.json").read_text())
    width, height = png_size(tmp_path / "conv-filters.png")
    assert width > 5 * height  # two rows of 30 filters
    assert numbers["experiment"] == "conv-filters" and numbers["backend"] == "numpy"
    assert numbers["quick"] is True and numbers["epochs"] == 1 and numbers["train_size"] == 1000

    before, after = np.array(numbers["filters_before"]), np.array(numbers["filters_after"])
    assert before.shape == after.shape == (30, 1, 5, 5) == tuple(numbers["filter_shape"])
    # before: the net's initial filters; after: those of the same net trained here the same way
    (x, t), test = images
    net = SimpleConvNet(backend="numpy", seed=0)
    np.testing.assert_allclose(before, net.params["W1"], atol=1e-6)  # the JSON keeps 6 decimals
    last = train_again(net, (x[:1000], t[:1000]), test, eval_samples=1000)
    np.testing.assert_allclose(after, net.params["W1"], atol=1e-6)
    assert np.abs(after - before).max() > 0.005  # 10 Adam steps of lr 0.001 moved them
    assert numbers["relative_change"] > 0.3
    assert numbers["test_accuracy"] == pytest.approx(last.test_acc)  # the whole 1,000 test images
    assert numbers["epoch_results"][-1]["test_acc"] == pytest.approx(last.test_acc, abs=1e-6)
    corr = numbers["neighbour_correlation"]
    assert abs(corr["before"]) < 0.1 and corr["after"] > corr["before"] + 0.05


def test_neighbour_correlation_tells_smooth_filters_from_random_ones():
    ramp = np.add.outer(np.arange(5.0), np.arange(5.0))  # a smooth diagonal edge
    noise = np.random.default_rng(0).standard_normal((200, 1, 5, 5))
    assert neighbour_correlation(ramp[None, None]) > 0.5
    assert abs(neighbour_correlation(noise)) < 0.05


def test_misclassified_lists_exactly_the_test_images_the_trained_net_gets_wrong(tmp_path, images):
    size, cap = 200, 12
    result = EXPERIMENTS["misclassified"](backend="numpy", dataset="mnist-5k", out_dir=tmp_path,
                                          epochs=1, train_size=size, test_size=size,
                                          max_shown=cap, progress=False)
    numbers = json.loads(result.json.read_text())
    png_size(result.png)
    assert numbers["experiment"] == "misclassified" and numbers["summary"] == result.summary
    assert numbers["train_size"] == numbers["test_size"] == size and numbers["epochs"] == 1

    # the same DeepConvNet trained here the same way, and its predictions (Dropout off)
    (x, t), (x_test, t_test) = images
    x_test, t_test = x_test[:size], t_test[:size]
    net = DeepConvNet(backend="numpy", seed=0)
    last = train_again(net, (x[:size], t[:size]), (x_test, t_test), eval_samples=size)
    predicted = np.argmax(net.predict(x_test), axis=1)
    wrong = np.flatnonzero(predicted != t_test)
    assert len(wrong) > cap  # one epoch on 200 images: many wrong, so the cap matters

    listed = numbers["misclassified"]
    assert [m["index"] for m in listed] == wrong.tolist()
    for m in listed:
        assert m["predicted"] != m["true"]
        assert m["true"] == t_test[m["index"]] and m["predicted"] == predicted[m["index"]]
    assert numbers["misclassified_count"] == len(wrong)
    assert numbers["test_accuracy"] == pytest.approx(1 - len(wrong) / size)
    assert numbers["test_accuracy"] == pytest.approx(last.test_acc)  # fit's own count agrees
    assert numbers["shown"] == min(len(wrong), cap) == cap
    assert sum(c["count"] for c in numbers["confusions"]) == len(wrong)
