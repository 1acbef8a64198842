"""Activation and loss functions, plain NumPy."""
import numpy as np


def identity_function(x):
    """Return x unchanged."""
    return x


def step_function(x):
    """1 where x > 0, else 0 (int array)."""
    return np.array(x > 0, dtype=int)


def sigmoid(x):
    """The logistic function."""
    return 1 / (1 + np.exp(-x))


def sigmoid_grad(x):
    """Derivative of sigmoid at x."""
    s = sigmoid(x)
    return (1.0 - s) * s


def relu(x):
    """max(0, x) elementwise."""
    return np.maximum(0, x)


def relu_grad(x):
    """1 where x > 0, else 0 (float array)."""
    grad = np.zeros_like(x)
    grad[x > 0] = 1
    return grad


def softmax(x):
    """Softmax along the last axis (one vector or a batch of rows), max-shifted for stability."""
    x = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(x)
    return e / np.sum(e, axis=-1, keepdims=True)


def mean_squared_error(y, t):
    """Half the sum of squared differences."""
    return 0.5 * np.sum((y - t) ** 2)


def cross_entropy_error(y, t):
    """Mean cross-entropy of probabilities y against labels or one-hot rows t."""
    if y.ndim == 1:
        t = t.reshape(1, t.size)
        y = y.reshape(1, y.size)
    if t.size == y.size:
        t = t.argmax(axis=1)
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


def softmax_loss(X, t):
    """Cross-entropy of softmax(X) against t."""
    return cross_entropy_error(softmax(X), t)
