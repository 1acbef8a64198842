"""A stack of layers as pure functions of `params`: the functional core the book's nets wrap."""
from xpnet.backends import namespace_of


class Sequential:
    """Layers applied in order, then a loss layer. Holds no arrays: every call takes `params`.

    `loss_and_grad(params, x, t)` is backprop: one forward pass keeping each layer's cache, one
    backward pass collecting `grads` keyed like `params`. It is pure, so `jax.jit` compiles it.
    `weight_decay` (λ) adds the book's L2 penalty ½λΣW² over the weights of every layer that
    has one (not the biases) to the loss, and λW to their gradients.
    """

    def __init__(self, layers, loss_layer, weight_decay=0.0):
        self.layers = list(layers)
        self.loss_layer = loss_layer
        self.weight_decay = weight_decay

    @property
    def decayed_weights(self):
        """Names of the params the weight decay applies to (empty when λ is 0)."""
        if not self.weight_decay:
            return []
        return [layer.weight for layer in self.layers if getattr(layer, "weight", None)]

    def decay_loss(self, params):
        """½λΣW² over `decayed_weights` (0 without weight decay)."""
        return sum(0.5 * self._decay(params[name]) * (params[name] ** 2).sum()
                   for name in self.decayed_weights)

    def _decay(self, like):
        """λ in the dtype of `like`: a float64 λ must not promote float32 params."""
        return namespace_of(like).asarray(self.weight_decay, dtype=like.dtype)

    def predict(self, params, x):
        for layer in self.layers:
            x, _ = layer.forward(params, x)
        return x

    def loss(self, params, x, t):
        loss, _ = self.loss_layer.forward(params, self.predict(params, x), t)
        return loss + self.decay_loss(params)

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
        for name in self.decayed_weights:
            grads[name] = grads[name] + self._decay(params[name]) * params[name]
        return loss + self.decay_loss(params), grads

    def correct_count(self, params, x, t):
        """How many samples the net classifies right (t: labels or one-hot rows); an array scalar."""
        xp = namespace_of(x)
        predicted = xp.argmax(self.predict(params, x), axis=1)
        labels = xp.argmax(t, axis=1) if t.ndim == 2 else t
        return xp.sum(predicted == labels)

    def __repr__(self):
        decay = f", weight_decay={self.weight_decay!r}" if self.weight_decay else ""
        return f"Sequential({self.layers!r}, {self.loss_layer!r}{decay})"
