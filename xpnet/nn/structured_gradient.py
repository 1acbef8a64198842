"""The book's numerical gradient of a layered net, computed in bulk and only where things change.

Each gradient entry is still (L(θ + h·eᵢ) − L(θ − h·eᵢ)) / 2h with h = 1e-4 and L the
batch-averaged training-mode loss, every perturbed loss evaluated by the net's own layers; only
the work is restructured. The net runs forward once; nothing before a perturbed layer is
recomputed, and each layer's parameters take the path that fits what follows them
(`gradient_plan`):

- "sample" (`sample_gradient`): an Affine layer with nothing after it that mixes samples. W[i, j]
  moves column j by ±h·x[n, i], and each sample's loss moves on its own: the units are (sample,
  value) pairs, every (input, sample) pair when the input is dense, only the distinct non-zero
  ones when that pays (MNIST digits), chosen per layer from the data;
- "column" (`column_gradient`): Affine and BatchNorm layers (on rows) of nets with BatchNorm
  (training mode mixes the samples): a perturbation moves one column for the whole batch,
  BatchNorm and elementwise layers without parameters keep it there, the next Affine makes it
  a rank-1 change, and the rest of the net runs on stacked copies of the batch;
- "batched" (`batched_gradient`): any other layer (convolutions, BatchNorm on images): stacked
  perturbed copies of its output go through the rest of the net, many per array operation.

The perturbations go through in chunks of about `chunk_bytes` (their largest intermediate); on
JAX the chunks are a `scan` inside one compiled program per layer, reused by later calls. Weight
decay's ½λw² changes with w alone and is differenced element by element. Each parameter moves
by h in its own dtype. These paths run on every backend. A net whose loss is not
SoftmaxWithLoss, or whose parameters are not each read by one layer, takes the book's loop on
NumPy, torch, CuPy and array-api-strict, and on JAX one vmapped program over all its parameters.
"""
import math
import numbers
import weakref

import numpy as np

from xpnet.backends import backend_of, device_of, dtype_name, namespace_of
from xpnet.nn import batched_gradient, column_gradient, sample_gradient
from xpnet.nn.central_differences import H, numerical_gradient, vmapped_gradient
from xpnet.nn.conv import Convolution, Pooling
from xpnet.nn.layers import Affine, BatchNormalization, Context, Dropout, SoftmaxWithLoss
from xpnet.nn.network import Sequential
from xpnet.nn.perturbed_losses import column_wise, elementwise, row_wise

#: Default memory budget of one chunk of perturbations (bytes of its largest intermediate).
DEFAULT_CHUNK_BYTES = 8 * 2**20  # fastest on a 2-core CPU (bench/); peak memory a few times this


def gradient_plan(model, params, x_ndim=2):
    """{layer index: (path, parameter names)} for every layer that reads parameters, path one
    of "sample", "column", "batched" (see above), the path the gradient takes for inputs of
    rank `x_ndim`; None when the loss is not SoftmaxWithLoss or a parameter is read by no layer
    or by several."""
    if not isinstance(model.loss_layer, SoftmaxWithLoss):
        return None
    owners = {}
    for k, layer in enumerate(model.layers):
        read = (v for v in vars(layer).values() if isinstance(v, str) and v in params)
        for name in dict.fromkeys(read):
            owners.setdefault(name, []).append(k)
    if set(owners) != set(params) or any(len(ks) > 1 for ks in owners.values()):
        return None
    owning = {k for (k,) in owners.values()}
    ranks = _input_ranks(model.layers, x_ndim)
    plan = {}
    for name, (k,) in owners.items():
        plan.setdefault(k, (_path(model.layers, k, owning, ranks), []))[1].append(name)
    return dict(sorted(plan.items()))


def _input_ranks(layers, x_ndim):
    """The rank of each layer's input, and then of the net's scores (None: not known)."""
    ranks = [x_ndim]
    for layer in layers:
        rank = ranks[-1]
        if isinstance(layer, Affine):
            rank = 2
        elif isinstance(layer, (Convolution, Pooling)):
            rank = 4
        elif not (elementwise(layer) or isinstance(layer, (Dropout, BatchNormalization))):
            rank = None
        ranks.append(rank)
    return ranks


def _path(layers, l, owning, ranks):
    """The path of the parameters of layer `l`; `owning`: the indices of the layers that read
    parameters, `ranks`: `_input_ranks`."""
    layer = layers[l]
    if not isinstance(layer, (Affine, BatchNormalization)) or ranks[l + 1] != 2:
        return "batched"  # (e.g. BatchNorm on images)
    m = sample_gradient.next_affine(layers, l)
    chain, suffix = layers[l + 1:m], layers[m + 1:] if m is not None else []
    if not all(column_wise(c) for c in chain) or \
            not all(row_wise(s) or isinstance(s, BatchNormalization) for s in suffix):
        return "batched"
    coupled = any(isinstance(c, BatchNormalization) for c in [layer] + chain + suffix)
    if coupled and any(elementwise(c) and k in owning for k, c in enumerate(chain, start=l + 1)):
        return "batched"  # a column of samples moves: a per-feature parameter would not follow
    return "column" if coupled else "sample"


def model_numerical_gradient(model, params, x, t, state=None, key=None, weight_decay=None,
                             chunk_bytes=DEFAULT_CHUNK_BYTES, h=H):
    """Central differences of `model.loss` in training mode (the book's `numerical_gradient`).

    On every backend, structured (above) when `gradient_plan` has a plan. Otherwise each
    entry goes through `numerical_gradient`: on JAX (compiles and vectorizes) one vmapped
    program over all the parameters laid end to end (when they share a dtype); on NumPy, CuPy,
    torch and array-api-strict the book's loop, array by array. `state` and `key` stay fixed, so
    every perturbed loss sees the same Dropout mask and starts from the same BatchNorm state;
    `weight_decay` overrides the model's λ; `h` is the step (the book's 1e-4).
    """
    plan = gradient_plan(model, params, x.ndim)
    if plan is not None:
        return _structured(model, params, x, t, plan, state, key, weight_decay, chunk_bytes, h)
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


def structured_numerical_gradient(model, params, x, t, *, state=None, key=None, weight_decay=None,
                                  chunk_bytes=DEFAULT_CHUNK_BYTES, h=H):
    """Central-difference gradients of `model.loss(params, x, t, True, state, key, weight_decay)`
    for every entry of `params`, layer by layer along `gradient_plan` (ValueError where it has
    none).

    Per call: one compiled forward pass, then one compiled program per layer. The sample and
    column paths of an Affine layer bring its input to the host (free on the CPU), where NumPy
    decides how to enumerate the perturbations; the index arrays that go back are padded on JAX
    to a few sizes per octave, so a new batch rarely compiles anything. Each parameter is moved
    by h in its own dtype, as the book's loop adds h to it.
    """
    plan = gradient_plan(model, params, x.ndim)
    if plan is None:
        raise ValueError(f"the structured numerical gradient needs SoftmaxWithLoss and parameters "
                         f"each read by one layer; got {model!r}")
    return _structured(model, params, x, t, plan, state, key, weight_decay, chunk_bytes, h)


def _structured(model, params, x, t, plan, state, key, weight_decay, chunk_bytes, h):
    """`structured_numerical_gradient` along `plan` (its `gradient_plan`)."""
    backend = backend_of(x)
    xp, layers = backend.xp, model.layers
    if t.ndim == 1 and t.dtype != backend.index_dtype:  # small label dtypes: indices of their own
        t = xp.astype(t, backend.index_dtype)
    inputs, outputs, caches = _program(backend, model, "forward")(params, x, state, key)
    lam = model.weight_decay if weight_decay is None else weight_decay
    scalars = _scalars(backend, model, params, h, lam)
    grads = {}
    for l, (path, names) in plan.items():
        layer = layers[l]
        step = scalars[dtype_name(params[names[0]].dtype)][0]
        if path == "sample":
            x2 = _host_rows(backend, inputs[l])
            itemsize = xp.finfo(outputs[l].dtype).bits // 8
            unit = sample_gradient.unit_bytes(layers, l, outputs, itemsize)
            mode, pairs = sample_gradient.choose(x2, max(1, chunk_bytes // unit), backend.compiles)
            data = (inputs[l],) if mode == "dense" else tuple(
                backend.asarray(a, inputs[l].dtype if a.dtype.kind == "f" else backend.index_dtype)
                for a in pairs)
            program = _program(backend, model, ("sample", l, mode, chunk_bytes))
            grads[layer.weight], grads[layer.bias] = program(params, outputs, caches, t, *data, step)
        elif path == "column":
            data = ()
            if isinstance(layer, Affine):
                vectors, rows = column_gradient.distinct_columns(_host_rows(backend, inputs[l]),
                                                                 backend.compiles)
                data = (backend.asarray(vectors, inputs[l].dtype),
                        backend.asarray(rows, backend.index_dtype))
            block = column_gradient.block_fits(layers, l, outputs, chunk_bytes)
            first, second, unsafe = _program(backend, model, ("column", l, chunk_bytes, block))(
                params, outputs, caches, t, *data, step)
            if block and float(backend.to_numpy(unsafe)) > 0:  # a ReLU might flip: the long way
                first, second, _ = _program(backend, model, ("column", l, chunk_bytes, False))(
                    params, outputs, caches, t, *data, step)
            pair = (layer.weight, layer.bias) if isinstance(layer, Affine) else \
                (layer.gamma, layer.beta)
            grads[pair[0]], grads[pair[1]] = first, second
        else:
            for name in names:
                step = scalars[dtype_name(params[name].dtype)][0]
                program = _program(backend, model, ("batched", l, name, chunk_bytes))
                grads[name] = program(params, inputs, outputs, caches, t, state, key, step)
    decayed = {name: scalars[dtype_name(params[name].dtype)] for name in model.decayed_weights()}
    for name, term in _program(backend, model, "decay")(params, decayed).items():
        grads[name] = grads[name] + term  # + 0.0 for λ = 0
    return {name: grads[name] for name in params}


def _scalars(backend, model, params, h, lam):
    """{dtype name: (h, λ)} for each dtype of `params`, on the device in that dtype (one
    transfer each): the step as the book adds it to a parameter, λ as the loss casts it. An
    array λ (a training step's) goes as it is."""
    scalars = {}
    for p in params.values():
        name = dtype_name(p.dtype)
        if name in scalars:
            continue
        if isinstance(lam, numbers.Real):  # one transfer for both, split by a compiled
            pair = backend.asarray(np.asarray([h, lam], dtype=name))  # program (on JAX an
            scalars[name] = _program(backend, model, "split")(pair)  # eager index is a transfer)
        else:
            scalars[name] = (backend.asarray(np.asarray(h, dtype=name)), lam)
    return scalars


def _host_rows(backend, x):
    """A layer's input on the host as rows (N, D)."""
    host = backend.to_numpy(x)
    return host.reshape(host.shape[0], -1)


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


#: Compiled programs per model, by backend and part: its forward pass, the weight-decay
#: differences, and each layer's gradient program (sample, column with or without the BatchNorm
#: block, batched).
_COMPILED = weakref.WeakKeyDictionary()


def _program(backend, model, part):
    """The jitted forward pass (`part` "forward"), weight-decay differences ("decay"), the
    split of (h, λ) into two scalars ("split") or a layer's gradient program of `model` on
    `backend` (("sample", l, mode, chunk_bytes), ("column", l, chunk_bytes, block), ("batched",
    l, name, chunk_bytes)), built once (on JAX each compiles once per shape bucket)."""
    cached = _COMPILED.setdefault(model, {})
    if (backend, part) not in cached:
        if part == "forward":
            program = _build_forward(backend, model)
        elif part == "decay":
            program = _build_decay(model.decayed_weights())
        elif part == "split":  # a function of its own: JAX counts compilations per function
            program = lambda pair: (pair[0], pair[1])  # noqa: E731
        elif part[0] == "sample":
            program = sample_gradient.build(backend, model.layers, part[1], part[2], part[3])
        elif part[0] == "column":
            program = column_gradient.build(backend, model.layers, *part[1:])
        else:
            program = batched_gradient.build(backend, model.layers, part[1], part[2], part[3])
        cached[backend, part] = backend.jit(program)
    return cached[backend, part]


def _build_forward(backend, model):
    """forward(params, x, state, key) -> (inputs, outputs, caches): what each layer received and
    produced in the training-mode pass (each random layer with its own key, as
    `Sequential.forward`), and of its cache what the paths need: Dropout's mask, BatchNorm's
    normalised input (None for other layers)."""
    layers = model.layers

    def forward(params, x, state, key):
        inputs, outputs, caches, out = [], [], [], x
        for k, layer in enumerate(layers):
            layer_key = backend.fold_in(key, k) if layer.random and key is not None else None
            inputs.append(out)
            out, cache, _ = layer.forward(params, out, Context(True, state, layer_key))
            outputs.append(out)
            caches.append(cache if isinstance(layer, Dropout) else
                          cache[0] if isinstance(layer, BatchNormalization) else None)
        return inputs, outputs, caches

    return forward


def _build_decay(names):
    """decay(params, scalars) -> {weight: central difference of ½λw² alone} for the weights
    `names`, scalars[weight] = (h, λ) (λ an argument: one program serves every value). It
    changes by itself when w moves."""

    def decay(params, scalars):
        terms = {}
        for name in names:
            w, (h, lam) = params[name], scalars[name]
            lam = namespace_of(w).asarray(lam, dtype=w.dtype, device=device_of(w))  # as the loss
            terms[name] = (0.5 * lam * (w + h) ** 2 - 0.5 * lam * (w - h) ** 2) / (2 * h)
        return terms

    return decay
