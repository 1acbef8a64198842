"""The batched path of the structured numerical gradient, for any other layer that owns
parameters (the convolutions of the conv nets, layers xpnet does not know).

Each entry of the parameter is perturbed by ±h in its own copy of the layer's output, and many
such copies go through the rest of the net as one stacked array (*±, copies, N, ...*): nothing
before the layer is recomputed, and every layer after it runs once per chunk of copies instead
of once per entry (`apply_stacked`: Affine on the flattened features, convolutions and pooling on
the copies folded into one batch, BatchNorm per copy). Chunks bound the memory (`chunk_bytes`);
on JAX the chunks are a `scan` inside one compiled program per parameter.

The perturbed copies of the layer's output: a convolution is linear in its filters, so W[f, q]
± h adds ±h times the image columns of input q (im2col) to output channel f, and b[f] ± h adds
±h to it; any other layer is run on each perturbed copy of its parameters (`backend.vmap`).
"""
import math

from xpnet.backends import backend_of, device_of
from xpnet.nn.conv import Convolution, image_columns
from xpnet.nn.layers import Context, Dropout
from xpnet.nn.perturbed_losses import apply_stacked, score_losses


def copy_bytes(layers, l, name, params, outputs, itemsize):
    """Bytes of the largest array one perturbed copy (both signs) of param `name` needs from
    layer `l` on: an output of the rest of the net, the image columns (N, C·FH·FW, OH·OW) of a
    later convolution, or (a layer run once per copy of its parameter) the perturbed copy of
    the parameter itself."""
    sizes = [math.prod(o.shape) for o in outputs[l:]]
    if not isinstance(layers[l], Convolution):
        sizes.append(math.prod(params[name].shape))
    for k in range(l + 1, len(layers)):
        if isinstance(layers[k], Convolution):
            out = outputs[k].shape
            sizes.append(out[0] * math.prod(params[layers[k].weight].shape[1:]) * math.prod(out[2:]))
    return 2 * max(sizes) * itemsize


def build(backend, layers, l, name, chunk_bytes):
    """gradient(params, inputs, outputs, caches, t, state, key, h) -> central differences of
    param `name` of layer `l`, shaped like it."""
    xp = backend.xp
    layer = layers[l]

    def gradient(params, inputs, outputs, caches, t, state, key, h):
        p, x_in = params[name], inputs[l]
        n, size = x_in.shape[0], math.prod(p.shape)
        itemsize = xp.finfo(p.dtype).bits // 8
        count = min(max(1, chunk_bytes // copy_bytes(layers, l, name, params, outputs, itemsize)),
                    size)
        chunks = -(-size // count)
        signs = xp.stack([h, -h])
        perturbed = _perturbed_outputs(backend, layer, name, params, x_in, outputs[l], signs,
                                       _context(backend, layer, l, state, key))
        one_hot = t.ndim != 1
        labels = xp.astype(t, p.dtype) if one_hot else t

        def chunk(carry, c):
            entries = (c * count + xp.arange(count, device=device_of(p))) % size  # padding wraps
            y = perturbed(entries)                                        # (±, copies, N, ...)
            for k in range(l + 1, len(layers)):
                y = apply_stacked(layers[k], params, y, 3,
                                  caches[k] if isinstance(layers[k], Dropout) else None,
                                  _context(backend, layers[k], k, state, key))
            losses = score_losses(xp, y, labels, one_hot)               # (±, copies, N)
            return carry, xp.sum(losses[0, ...] - losses[1, ...], axis=-1)

        _, sums = backend.scan(chunk, None, chunks)
        return xp.reshape(xp.reshape(sums, (-1,))[:size] / (2 * h * n), p.shape)

    return gradient


def _context(backend, layer, k, state, key):
    """The training-mode context layer `k` had in the unperturbed pass (its own random key)."""
    return Context(True, state, backend.fold_in(key, k) if layer.random and key is not None else None)


def _perturbed_outputs(backend, layer, name, params, x_in, out, signs, ctx):
    """entries (copies,) -> layer l's output with entry e of param `name` moved by each of `signs`
    (±h), shaped (±, copies, *out.shape)."""
    xp = backend.xp
    if isinstance(layer, Convolution):  # its params: the filters and the bias
        fn, _, fh, fw = params[layer.weight].shape
        n = out.shape[0]
        base = xp.reshape(out, (1, 1, n, fn, -1))
        channels = xp.arange(fn, device=device_of(out))
        sign_axes = xp.reshape(signs, (2, 1, 1, 1, 1))
        if name == layer.weight:
            col = image_columns(x_in, fh, fw, layer.stride, layer.pad)      # (N, Q, OH·OW)
            per_filter = col.shape[1]

            def moved(entries):
                patch = xp.permute_dims(xp.take(col, entries % per_filter, axis=1), (1, 0, 2))
                onehot = xp.astype(entries[:, None] // per_filter == channels, out.dtype)
                delta = onehot[:, None, :, None] * patch[:, :, None, :]    # (copies, N, FN, OH·OW)
                return xp.reshape(base + sign_axes * delta[None, ...], (2, -1) + tuple(out.shape))
        else:
            def moved(entries):
                onehot = xp.astype(entries[:, None] == channels, out.dtype)[:, None, :, None]
                return xp.reshape(base + sign_axes * onehot[None, ...], (2, -1) + tuple(out.shape))
        return moved

    p = params[name]
    flat = xp.reshape(p, (-1,))
    positions = xp.arange(flat.shape[0], device=device_of(flat))

    def forward(copy):
        return layer.forward({**params, name: xp.reshape(copy, p.shape)}, x_in, ctx)[0]

    def moved(entries):
        onehot = xp.astype(entries[:, None] == positions, flat.dtype)         # (copies, size)
        copies = flat[None, None, :] + xp.reshape(signs, (2, 1, 1)) * onehot[None, ...]
        y = backend_of(flat).vmap(forward)(xp.reshape(copies, (-1, flat.shape[0])))
        return xp.reshape(y, (2, -1) + tuple(out.shape))

    return moved
