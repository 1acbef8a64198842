"""The book's `common.optimizer`: SGD, Momentum, Nesterov, AdaGrad, RMSprop and Adam, whose
`update(params, grads)` changes `params` in place, as the book's `params[key] -= ...` does.

xpnet's optimizers compute the new values (their formulas and defaults are the book's). Each is
written into the array the dict holds, so a layer holding that array sees it; a plain float (the
book's optimizer demo updates {"x": -7.0, "y": 2.0}) is replaced in the dict.
"""
import numpy as np

from xpnet.nn import optimizers


class _InPlace:
    """The book's `update` over an xpnet optimizer's (which returns new arrays)."""

    def update(self, params, grads):
        arrays = {key: value if isinstance(value, np.ndarray) else np.asarray(value, np.float64)
                  for key, value in params.items()}
        super().update(arrays, {key: np.asarray(grads[key]) for key in params})
        for key, new in arrays.items():
            if isinstance(params[key], np.ndarray) and params[key].flags.writeable:
                params[key][...] = new
            else:
                params[key] = new.item() if new.ndim == 0 else new


class SGD(_InPlace, optimizers.SGD):
    """W ← W − lr·∂L/∂W."""


class Momentum(_InPlace, optimizers.Momentum):
    """v ← momentum·v − lr·∂L/∂W; W ← W + v."""


class Nesterov(_InPlace, optimizers.Nesterov):
    """Nesterov's accelerated gradient, in the book's form."""


class AdaGrad(_InPlace, optimizers.AdaGrad):
    """h ← h + (∂L/∂W)²; W ← W − lr·∂L/∂W / (√h + 1e-7)."""


class RMSprop(_InPlace, optimizers.RMSprop):
    """AdaGrad with h decaying by decay_rate each step."""


class Adam(_InPlace, optimizers.Adam):
    """Adam with the book's bias correction folded into the learning rate."""


#: The book's Trainer finds an optimizer by its lower-case name (and spells RMSprop "rmsprpo").
BY_NAME = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
           "rmsprop": RMSprop, "rmsprpo": RMSprop, "adam": Adam}
