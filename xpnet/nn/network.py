"""A stack of layers as pure functions of `params`: the functional core the book's nets wrap."""
from xpnet.backends import namespace_of


class Sequential:
    """Layers applied in order, then a loss layer. Holds no arrays: every call takes `params`.

    `loss_and_grad(params, x, t)` is backprop: one forward pass keeping each layer's cache, one
    backward pass collecting `grads` keyed like `params`. It is pure, so `jax.jit` compiles it.
    """

    def __init__(self, layers, loss_layer):
        self.layers = list(layers)
        self.loss_layer = loss_layer

    def predict(self, params, x):
        for layer in self.layers:
            x, _ = layer.forward(params, x)
        return x

    def loss(self, params, x, t):
        loss, _ = self.loss_layer.forward(params, self.predict(params, x), t)
        return loss

    def loss_and_grad(self, params, x, t):
        caches = []
        for layer in self.layers:
            x, cache = layer.forward(params, x)
            caches.append(cache)
        loss, loss_cache = self.loss_layer.forward(params, x, t)
        dout, grads = self.loss_layer.backward(params, loss_cache)
        for layer, cache in zip(reversed(self.layers), reversed(caches)):
            dout, layer_grads = layer.backward(params, cache, dout)
            grads.update(layer_grads)
        return loss, grads

    def correct_count(self, params, x, t):
        """How many samples the net classifies right (t: labels or one-hot rows); an array scalar."""
        xp = namespace_of(x)
        predicted = xp.argmax(self.predict(params, x), axis=1)
        labels = xp.argmax(t, axis=1) if t.ndim == 2 else t
        return xp.sum(predicted == labels)

    def __repr__(self):
        return f"Sequential({self.layers!r}, {self.loss_layer!r})"
