"""Data sets for xpnet: MNIST, a 5,000-digit offline MNIST subset, Fashion-MNIST and synthetic data.

``load_mnist`` mirrors the book "Deep Learning from Scratch"; ``load_dataset`` gives the raw arrays.
"""

from xpnet.data.datasets import DATASETS, Dataset, load_dataset, load_mnist, resolve_dataset
from xpnet.data.download import download
from xpnet.data.folders import default_data_dir
from xpnet.data.idx import read_idx, write_idx
from xpnet.data.splits import shuffle_dataset, validation_split
from xpnet.data.validation import check_classification_data, check_labels

__all__ = [
    "DATASETS",
    "Dataset",
    "default_data_dir",
    "download",
    "load_dataset",
    "load_mnist",
    "read_idx",
    "resolve_dataset",
    "shuffle_dataset",
    "validation_split",
    "write_idx",
]
