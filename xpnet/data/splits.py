"""The book's data helpers: shuffle a data set, and hold part of it out for validation."""
import numpy as np


def shuffle_dataset(x, t, seed=None):
    """x and t (host arrays) in one random order, the pairs kept together (the book's helper)."""
    x, t = np.asarray(x), np.asarray(t)
    if len(x) != len(t):
        raise ValueError(f"x has {len(x)} samples but t has {len(t)}")
    order = np.random.default_rng(seed).permutation(len(x))
    return x[order], t[order]


def validation_split(x, t, validation_rate=0.2, seed=None):
    """((x_train, t_train), (x_val, t_val)): shuffle, then hold out the first `validation_rate`
    of the samples, as the book's hyperparameter search does (never take them from the test set)."""
    if not 0 < validation_rate < 1:
        raise ValueError(f"validation_rate must be in (0, 1), got {validation_rate}")
    x, t = shuffle_dataset(x, t, seed)
    n_val = int(len(x) * validation_rate)
    if n_val == 0 or n_val == len(x):
        raise ValueError(f"validation_rate {validation_rate} of {len(x)} samples leaves an empty part")
    return (x[n_val:], t[n_val:]), (x[:n_val], t[:n_val])
