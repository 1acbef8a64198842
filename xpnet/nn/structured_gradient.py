"""The book's numerical gradient of a layered net, computed in bulk and only where things change.

Each gradient entry is still (L(θ + h·eᵢ) − L(θ − h·eᵢ)) / 2h with h = 1e-4 and L the
batch-averaged loss, but the work per perturbation is cut to what it really changes:

- the layers are run forward once; nothing before the perturbed layer is recomputed;
- an Affine layer is linear in W: W[i, j] ± h moves output column j by ±h·x[n, i], and only for
  the samples n whose input x[n, i] is not zero (most MNIST pixels are); the bias b[j] is the
  weight of an input that is always 1;
- so L(θ + h·eᵢ) − L(θ − h·eᵢ) is a sum over those samples of the change of their own loss, and
  each changed sample is one row pushed through the rest of the net: an elementwise activation
  keeps the change in column j, the next Affine turns it into a rank-1 update of a known row;
- that change depends only on the sample and the value x[n, i], so each distinct (sample, value)
  pair is computed once and credited to every input holding it (digits repeat pixel values);
- the (sample, input) pairs of a layer, times every output column and both signs, go through
  as one array operation, in chunks that bound the memory used, and are summed per weight with
  a scatter-add.

Works for a `Sequential` of Affine layers and elementwise activations ending in SoftmaxWithLoss,
with or without weight decay, on every backend; on JAX the chunk function is compiled once per
layer and net. Other nets (BatchNorm, Dropout) take the book's loop on NumPy, torch, CuPy and
array-api-strict, and on JAX one vmapped program over all their parameters, compiled once per net.
"""
import math
import weakref

import numpy as np

from xpnet.backends import backend_of, device_of
from xpnet.nn.functions import CROSS_ENTROPY_DELTA
from xpnet.nn.central_differences import H, numerical_gradient, vmapped_gradient
from xpnet.nn.layers import Affine, SoftmaxWithLoss
from xpnet.nn.network import Sequential

#: Default memory budget of one chunk of perturbations (bytes of its largest intermediate).
DEFAULT_CHUNK_BYTES = 8 * 2**20  # fastest on a 2-core CPU (bench/); peak memory a few times this


def supports_structured_gradient(model):
    """True when `model` is Affine layers and elementwise activations followed by SoftmaxWithLoss."""
    return isinstance(model.loss_layer, SoftmaxWithLoss) and all(
        isinstance(layer, Affine) or layer.elementwise for layer in model.layers)


def model_numerical_gradient(model, params, x, t, state=None, key=None, weight_decay=None,
                             chunk_bytes=DEFAULT_CHUNK_BYTES, h=H):
    """Central differences of `model.loss` in training mode (the book's `numerical_gradient`).

    Structured (below) when the net is Affine layers and elementwise activations; otherwise
    (BatchNorm, Dropout) each array goes through `numerical_gradient`: vmapped on JAX, the book's
    loop on NumPy/CuPy. `state` and `key` stay fixed, so every perturbed loss sees the same
    Dropout mask and starts from the same BatchNorm state; `weight_decay` overrides the model's λ;
    `h` is the step (the book's 1e-4).
    """
    if supports_structured_gradient(model):
        return structured_numerical_gradient(model, params, x, t, h, chunk_bytes, weight_decay)
    backend = backend_of(x)
    xp = backend.xp
    if backend.compiles and backend.vectorizes and len({p.dtype for p in params.values()}) == 1:
        return _vectorized_numerical_gradient(backend, model, params, x, t, state, key, weight_decay, h)
    grads = {}
    for name, value in params.items():
        def loss_of(array, name=name):
            return model.loss({**params, name: array}, x, t, True, state, key, weight_decay)
        grads[name] = numerical_gradient(loss_of, xp.asarray(value, copy=True), h)
    return grads


def structured_numerical_gradient(model, params, x, t, h=H, chunk_bytes=DEFAULT_CHUNK_BYTES,
                                  weight_decay=None):
    """Central-difference gradients of `model.loss(params, x, t)` for every entry of `params`.

    Per call: one compiled forward pass, then per Affine layer its input comes to the host
    once, where NumPy finds the distinct (sample, value) pairs (their number depends on the
    data), four index arrays go back, and one compiled program computes the layer's gradients.
    On JAX the sizes are padded to a few buckets, so a new batch rarely compiles anything.
    """
    if not supports_structured_gradient(model):
        raise ValueError(f"structured numerical gradient needs Affine layers, elementwise "
                         f"activations and SoftmaxWithLoss; got {model!r}")
    backend = backend_of(x)
    xp, layers = backend.xp, model.layers
    inputs, outputs = _program(backend, model, "forward")(params, x)
    step = xp.asarray(h, dtype=x.dtype, device=device_of(x))
    grads = {}
    for l, layer in enumerate(layers):
        if not isinstance(layer, Affine):
            continue
        d_out = params[layer.weight].shape[1]
        widest = max(params[lay.weight].shape[1] for lay in layers[l:] if isinstance(lay, Affine))
        chunk = max(1, chunk_bytes // (d_out * 2 * widest * (xp.finfo(x.dtype).bits // 8)))
        pairs = _distinct_perturbations(backend.to_numpy(inputs[l]), chunk, backend.compiles)
        samples, values, features, entry_pair = (
            backend.asarray(a, x.dtype if a.dtype.kind == "f" else backend.index_dtype) for a in pairs)
        grads[layer.weight], grads[layer.bias] = _program(backend, model, l)(
            params, outputs, t, samples, values, features, entry_pair, step)
    if isinstance(weight_decay, (int, float)):  # an array, so the program serves any value
        weight_decay = backend.asarray(weight_decay, x.dtype)  # (None: the model's λ, built in)
    for name, term in _program(backend, model, "decay")(params, weight_decay, step).items():
        grads[name] = grads[name] + term  # + 0.0 for λ = 0
    return {name: grads[name] for name in params}


#: Perturbed copies of the params one call of the vectorized (JAX) program evaluates at once.
VECTORIZED_CHUNK = 256
#: The vectorized programs per model, by backend and parameter layout (compiled once each).
_VECTORIZED = weakref.WeakKeyDictionary()


def _vectorized_numerical_gradient(backend, model, params, x, t, state, key, weight_decay, h=H):
    """`model_numerical_gradient` where `vmap` vectorizes (JAX): the params laid end to end in one
    vector, `VECTORIZED_CHUNK` single-entry perturbations of it evaluated at once by one compiled
    program, which serves every parameter array, every chunk and later calls (training steps).
    Each entry is the book's (L(θ + h·eᵢ) − L(θ − h·eᵢ)) / 2h, with the same fixed state and key."""
    xp = backend.xp
    names = list(params)
    shapes = [tuple(params[name].shape) for name in names]
    sizes = [math.prod(shape) for shape in shapes]
    flat = xp.concat([xp.reshape(params[name], (-1,)) for name in names])
    lam = model.weight_decay if weight_decay is None else weight_decay
    static_decay = isinstance(lam, (int, float))
    decay_kind = ("fixed", lam) if static_decay else ("array",)  # λ baked in, or an argument
    layout = (backend, tuple(names), tuple(shapes), h, decay_kind)

    def unflatten(flat):
        parts, start = {}, 0
        for name, shape, size in zip(names, shapes, sizes):
            parts[name] = xp.reshape(flat[start:start + size], shape)
            start += size
        return parts

    programs = _VECTORIZED.setdefault(model, {})
    if layout not in programs:
        # the program holds the layers, not `model` (which keys the weak cache)
        loss = Sequential(model.layers, model.loss_layer).loss

        def loss_of(flat, x, t, state, key, decay):
            return loss(unflatten(flat), x, t, True, state, key, lam if static_decay else decay)

        programs[layout] = vmapped_gradient(loss_of, flat, h, backend, VECTORIZED_CHUNK, n_args=5)
    return unflatten(programs[layout](flat, x, t, state, key, None if static_decay else lam))


def _distinct_perturbations(x2, chunk, pad):
    """Host bookkeeping for one Affine layer with input `x2` (N, D), a NumPy array.

    The entries whose perturbation changes anything are the non-zero (sample, input) ones, plus
    a bias column of ones. A weight moves a sample's loss by an amount that depends only on the
    sample and the input's value, so entries are sorted by (sample, value) and only one per run
    of equal pairs is computed (MNIST digits repeat values: about 65 distinct among 150 non-zero
    pixels).

    Returns (samples, values, features, pair): the sample and value of each distinct pair, padded
    with value-0 pairs (they change nothing) to whole chunks and shaped (chunks, chunk); the
    input feature of every entry (D + 1, a row dropped later, for padding) and its pair's index.
    With `pad`, the numbers of chunks and entries are rounded up to a few sizes per octave, so
    a compiled program serves many batches.
    """
    n, d = x2.shape
    with_bias = np.concatenate([x2, np.ones((n, 1), dtype=x2.dtype)], axis=1)
    samples, features = np.nonzero(with_bias)
    values = with_bias[samples, features]
    order = np.lexsort((values, samples))
    samples, features, values = samples[order], features[order], values[order]
    first = np.ones(len(samples), dtype=bool)
    first[1:] = (samples[1:] != samples[:-1]) | (values[1:] != values[:-1])
    pair = np.cumsum(first) - 1
    samples, values = samples[first], values[first]
    chunks = -(-len(samples) // chunk)
    chunks, entries = (_bucket(chunks), _bucket(len(features))) if pad else (chunks, len(features))
    padded = np.zeros(chunks * chunk, dtype=samples.dtype)
    padded[:len(samples)] = samples
    padded_values = np.zeros(chunks * chunk, dtype=values.dtype)
    padded_values[:len(values)] = values
    features = np.concatenate([features, np.full(entries - len(features), d + 1)])
    pair = np.concatenate([pair, np.zeros(entries - len(pair), dtype=pair.dtype)])
    return padded.reshape(chunks, chunk), padded_values.reshape(chunks, chunk), features, pair


def _bucket(n):
    """The smallest of 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, … (four sizes per octave) >= n."""
    if n <= 8:
        return max(n, 1)
    step = 2 ** (n.bit_length() - 3)  # a quarter of the octave n lies in
    return -(-n // step) * step


#: Compiled programs per model: its forward pass and each Affine layer's gradient, by backend.
_COMPILED = weakref.WeakKeyDictionary()


def _program(backend, model, part):
    """The jitted forward pass (`part` "forward"), weight-decay differences ("decay") or Affine
    layer `part`'s gradient program of `model` on `backend`, built once (on JAX each compiles
    once per shape bucket)."""
    cached = _COMPILED.setdefault(model, {})
    if (backend, part) not in cached:
        build = {"forward": _build_forward, "decay": _build_decay}.get(part, _build_layer_gradient)
        cached[backend, part] = backend.jit(build(backend, model, part))
    return cached[backend, part]


def _build_forward(backend, model, part):
    """(inputs, outputs): what each layer received (Affine: flattened to (N, D)) and produced."""
    xp, layers = backend.xp, model.layers

    def forward(params, x):
        inputs, out = [], x
        for layer in layers:
            inputs.append(xp.reshape(out, (out.shape[0], -1)) if isinstance(layer, Affine) else out)
            out = layer.forward(params, out)[0]
        return inputs, inputs[1:] + [out]

    return forward


def _build_decay(backend, model, part):
    """decay(params, weight_decay, h) -> {weight: central difference of ½λw² alone}: it changes
    by itself when w moves (`weight_decay` None: the model's λ)."""
    model = Sequential(model.layers, model.loss_layer, model.weight_decay)  # not the cache's key

    def decay(params, weight_decay, h):
        terms = {}
        for name in model.decayed_weights():
            w, lam = params[name], model.decay(params[name], weight_decay)
            terms[name] = (0.5 * lam * (w + h) ** 2 - 0.5 * lam * (w - h) ** 2) / (2 * h)
        return terms

    return decay


def _build_layer_gradient(backend, model, l):
    """gradient(params, outputs, t, samples, values, features, pair, h) -> (dW, db) of Affine
    layer `l`: the loss differences of every distinct pair, chunk by chunk (`backend.scan`),
    credited to each entry's weight by a scatter-add."""
    xp, layers = backend.xp, model.layers
    differences = _build_loss_differences(backend, layers, l)

    def gradient(params, outputs, t, samples, values, features, pair, h):
        d_in, d_out = params[layers[l].weight].shape

        def chunk(carry, c):
            return carry, differences(params, outputs, t, samples[c, ...], values[c, ...], h)

        _, rows = backend.scan(chunk, None, samples.shape[0])
        per_entry = xp.take(xp.reshape(rows, (-1, d_out)), pair, axis=0)
        zeros = xp.zeros((d_in + 2, d_out), dtype=rows.dtype, device=device_of(rows))
        total = backend.scatter_add(zeros, features, per_entry) / (2 * h * outputs[0].shape[0])
        return total[:d_in, ...], total[d_in, ...]

    return gradient


def _build_loss_differences(backend, layers, l):
    xp = backend.xp
    layer = layers[l]
    m = next((k for k in range(l + 1, len(layers)) if isinstance(layers[k], Affine)), None)

    def differences(params, outputs, t, samples, values, h):
        d_out = params[layer.weight].shape[1]
        device = device_of(values)
        base = xp.take(outputs[l], samples, axis=0)                    # (P, d_out)
        signs = xp.asarray([1, -1], dtype=base.dtype, device=device)
        moved = h * values[:, None, None] * signs                      # (P, 1, ±)
        if m is None:  # the last Affine: only score j of the sample's row moves
            rows = base
            eye = xp.eye(d_out, dtype=base.dtype, device=device)
            delta = moved[..., None] * eye[None, :, None, :]            # (P, d_out, ±, d_out)
        else:
            z = base[:, :, None] + moved                                # (P, d_out, ±)
            for between in layers[l + 1:m]:                              # elementwise
                z = between.forward(params, z)[0]
            dz = z - xp.take(outputs[m - 1], samples, axis=0)[:, :, None]  # change of input j of layer m
            rows = xp.take(outputs[m], samples, axis=0)                 # (P, D)
            delta = dz[..., None] * params[layers[m].weight][None, :, None, :]  # rank-1 update
        if m is None or m == len(layers) - 1:
            # rows + delta are the scores: softmax is shift-invariant, so shift by the unperturbed
            # row's max and reuse its exponentials (|delta| is at most about h·|x|·|W|).
            e_rows = xp.exp(rows - xp.max(rows, axis=-1, keepdims=True))
            exps = e_rows[:, None, None, :] * xp.exp(delta)
        else:
            scores = rows[:, None, None, :] + delta
            for rest in layers[m + 1:]:
                scores = _apply(rest, params, scores)
            exps = xp.exp(scores - xp.max(scores, axis=-1, keepdims=True))
        losses = _losses_from_exps(xp, exps, xp.take(t, samples, axis=0))  # (P, d_out, ±)
        return losses[..., 0] - losses[..., 1]

    return differences


def _apply(layer, params, rows):
    """A layer on rows stacked in any leading shape (..., D): Affine acts on the last axis."""
    if isinstance(layer, Affine):
        return rows @ params[layer.weight] + params[layer.bias]
    return layer.forward(params, rows)[0]


def _losses_from_exps(xp, exps, t):
    """The book's -Σ t·log(softmax + 1e-7) per row, from exp(scores - shift) of shape (P, ..., C);
    t holds one label (P,) or one-hot row (P, C) per leading index."""
    total = xp.sum(exps, axis=-1)
    extra = (1,) * (exps.ndim - 2)
    if t.ndim == 1:  # the label's column of every row, gathered from the flattened array
        classes, rows = exps.shape[-1], math.prod(total.shape)
        per_sample = rows // t.shape[0]
        labels = xp.reshape(xp.broadcast_to(xp.reshape(t, (-1, 1)), (t.shape[0], per_sample)), (-1,))
        columns = xp.arange(rows, dtype=labels.dtype, device=device_of(t)) * classes + labels
        e_t = xp.reshape(xp.take(xp.reshape(exps, (-1,)), columns), total.shape)
        return -xp.log(e_t / total + CROSS_ENTROPY_DELTA)
    t = xp.reshape(t, t.shape[:1] + extra + t.shape[1:])
    return -xp.sum(t * xp.log(exps / total[..., None] + CROSS_ENTROPY_DELTA), axis=-1)
