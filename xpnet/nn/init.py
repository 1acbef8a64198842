"""Initial weights, made on the host with NumPy so that one seed gives the same params on every backend."""
import math

import numpy as np

from xpnet.errors import ConfigError

#: The book's named scales: std √(1/n) (Xavier, for sigmoid/tanh) and √(2/n) (He, for ReLU),
#: n being the number of inputs of the layer.
INIT_SCALES = {"xavier": 1.0, "sigmoid": 1.0, "he": 2.0, "relu": 2.0}


def host_rng(seed):
    """The NumPy generator all host-side randomness comes from (None: fresh entropy)."""
    return np.random.default_rng(seed)


def init_std(weight_init_std, fan_in):
    """The standard deviation of a layer's weights: a number as given, or a name from INIT_SCALES."""
    if isinstance(weight_init_std, str):
        try:
            return math.sqrt(INIT_SCALES[weight_init_std.lower()] / fan_in)
        except KeyError:
            raise ConfigError(f"unknown weight init {weight_init_std!r}; give a number (the std) or "
                             f"one of {', '.join(INIT_SCALES)}") from None
    try:
        std = float(weight_init_std)
    except (TypeError, ValueError):
        std = math.nan
    if not math.isfinite(std) or std < 0:
        raise ConfigError(f"weight_init_std must be a finite number >= 0, got {weight_init_std!r}")
    return std


def affine_params(rng, sizes, weight_init_std):
    """Host arrays W1, b1, W2, b2, … for Affine layers between consecutive `sizes` (float64).

    Weights are std × standard normal with std from `init_std` (per layer for a named scale),
    biases zero, as in the book's nets.
    """
    params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"W{i}"] = init_std(weight_init_std, n_in) * rng.standard_normal((n_in, n_out))
        params[f"b{i}"] = np.zeros(n_out)
    return params
