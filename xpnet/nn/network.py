"""A stack of layers as pure functions of `params`: the functional core the book's nets wrap."""
from xpnet.backends import backend_of, device_of, namespace_of
from xpnet.nn.layers import Context, Layer


class Sequential:
    """Layers applied in order, then a loss layer. Holds no arrays: every call takes `params`.

    Every layer follows the `Layer` contract (`xpnet.nn.layers`); the loss layer is a `LossLayer`.
    `loss_and_grad(params, x, t)` is backprop: one forward pass keeping each layer's cache, one
    backward pass collecting `grads` keyed like `params`. It is pure, so `jax.jit` compiles it.

    The chapter-6 extras are explicit arguments too: `train` (the book's train_flg), `state`
    (BatchNorm's running statistics, from `init_state`; training returns the updated state) and
    `key` (randomness for Dropout; each random layer gets its own key folded in from it).
    Weight decay: the book's L2 penalty ½λΣW² over the weights of every layer that has one (not
    the biases) is always part of the loss, and λW of the gradients, λ = 0 included (it adds
    exactly 0). λ is `weight_decay`, or the `weight_decay` argument of the methods (an array
    works), so one compiled function serves every value, 0 too.
    """

    def __init__(self, layers, loss_layer, weight_decay=0.0):
        self.layers = list(layers)
        for layer in self.layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"{layer!r} does not follow the Layer contract of xpnet.nn.layers "
                                "(derive it from BaseLayer)")
        self.loss_layer = loss_layer
        self.weight_decay = weight_decay

    @property
    def random(self):
        """True when a training-mode pass needs a `key` (the net has Dropout)."""
        return any(layer.random for layer in self.layers)

    def init_state(self, params):
        """The initial non-trained state of the layers that keep one (empty for most nets)."""
        state = {}
        for layer in self.layers:
            state.update(layer.init_state(params))
        return state

    def decayed_weights(self):
        """Names of the params the weight decay applies to: every layer's `weight`."""
        return [layer.weight for layer in self.layers if layer.weight is not None]

    def decay(self, like, weight_decay=None):
        """λ (the model's, or `weight_decay`) as an array in the dtype of `like`: a float64 λ
        must not promote float32 params."""
        lam = self.weight_decay if weight_decay is None else weight_decay
        return namespace_of(like).asarray(lam, dtype=like.dtype, device=device_of(like))

    def decay_loss(self, params, weight_decay=None):
        """½λΣW² over `decayed_weights` (exactly 0.0 for λ = 0 and finite weights)."""
        return sum(0.5 * self.decay(params[name], weight_decay)
                   * namespace_of(params[name]).sum(params[name] ** 2)
                   for name in self.decayed_weights())

    def forward(self, params, x, train=False, state=None, key=None):
        """(scores, caches, new_state): every layer's output feeds the next."""
        caches, new_state = [], dict(state or {})
        for k, layer in enumerate(self.layers):
            layer_key = backend_of(x).fold_in(key, k) if layer.random and key is not None else None
            x, cache, updates = layer.forward(params, x, Context(train, state, layer_key))
            new_state.update(updates)
            caches.append(cache)
        return x, caches, new_state

    def predict(self, params, x, train=False, state=None, key=None):
        return self.forward(params, x, train, state, key)[0]

    def loss(self, params, x, t, train=False, state=None, key=None, weight_decay=None):
        loss, _ = self.loss_layer.forward(params, self.predict(params, x, train, state, key), t)
        return loss + self.decay_loss(params, weight_decay)

    def loss_grad_state(self, params, x, t, state=None, key=None, weight_decay=None):
        """Backprop in training mode: (loss, grads, new_state)."""
        scores, caches, new_state = self.forward(params, x, True, state, key)
        loss, loss_cache = self.loss_layer.forward(params, scores, t)
        dout, grads = self.loss_layer.backward(params, loss_cache)
        for k in reversed(range(len(self.layers))):  # the input of layer 0 needs no gradient
            dout, layer_grads = self.layers[k].backward(params, caches[k], dout, need_dx=k > 0)
            grads.update(layer_grads)
        for name in self.decayed_weights():
            grads[name] = grads[name] + self.decay(params[name], weight_decay) * params[name]
        return loss + self.decay_loss(params, weight_decay), grads, new_state

    def loss_and_grad(self, params, x, t, state=None, key=None, weight_decay=None):
        """Backprop in training mode: (loss, grads); see `loss_grad_state` for the new state."""
        loss, grads, _ = self.loss_grad_state(params, x, t, state, key, weight_decay)
        return loss, grads

    def correct_count(self, params, x, t, state=None):
        """How many samples the net classifies right (t: labels or one-hot rows); an array scalar."""
        xp = namespace_of(x)
        predicted = xp.argmax(self.predict(params, x, False, state), axis=1)
        labels = xp.argmax(t, axis=1) if t.ndim == 2 else t
        return xp.sum(xp.astype(predicted == labels, xp.int32))

    def __repr__(self):
        return f"Sequential({self.layers!r}, {self.loss_layer!r}, weight_decay={self.weight_decay!r})"
