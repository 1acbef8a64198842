"""Initial weights, made on the host with NumPy so that one seed gives the same params on every backend."""
import numpy as np


def host_rng(seed):
    """The NumPy generator all host-side randomness comes from (None: fresh entropy)."""
    return np.random.default_rng(seed)


def affine_params(rng, sizes, weight_init_std):
    """Host arrays W1, b1, W2, b2, … for Affine layers between consecutive `sizes` (float64).

    Weights are `weight_init_std` × standard normal, biases zero, as in the book's TwoLayerNet.
    """
    params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"W{i}"] = weight_init_std * rng.standard_normal((n_in, n_out))
        params[f"b{i}"] = np.zeros(n_out)
    return params
