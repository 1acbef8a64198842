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
- "column" (`column_gradient`): Affine and BatchNorm layers of nets with BatchNorm (training
  mode mixes the samples): a perturbation moves one column for the whole batch, BatchNorm and
  elementwise layers keep it there, the next Affine makes it a rank-1 change, and the rest of
  the net runs on stacked copies of the batch;
- "batched" (`batched_gradient`): any other layer (convolutions): stacked perturbed copies of
  its output go through the rest of the net, many per array operation.

The perturbations go through in chunks of about `chunk_bytes` (their largest intermediate); on
JAX the chunks are a `scan` inside one compiled program per layer, reused by later calls. Weight
decay's ½λw² changes with w alone and is differenced element by element. A net whose loss is
not SoftmaxWithLoss, or whose parameters are not each read by one layer, takes the book's loop
on NumPy, torch, CuPy and array-api-strict, and on JAX one vmapped program over all its
parameters.
"""
import math
import weakref

from xpnet.backends import backend_of, device_of
from xpnet.nn import batched_gradient, column_gradient, sample_gradient
from xpnet.nn.central_differences import H, numerical_gradient, vmapped_gradient
from xpnet.nn.layers import Affine, BatchNormalization, Context, Dropout, SoftmaxWithLoss
from xpnet.nn.network import Sequential
from xpnet.nn.perturbed_losses import column_wise, elementwise, row_wise

#: Default memory budget of one chunk of perturbations (bytes of its largest intermediate).
DEFAULT_CHUNK_BYTES = 8 * 2**20  # fastest on a 2-core CPU (bench/); peak memory a few times this


def supports_structured_gradient(model):
    """True when every parameter of `model` takes a layer-aware path of its own ("sample" or
    "column"): Affine and BatchNormalization layers, Dropout and elementwise activations,
    followed by SoftmaxWithLoss. (The layers of other nets take the batched path.)"""
    return isinstance(model.loss_layer, SoftmaxWithLoss) and all(
        isinstance(layer, (Affine, BatchNormalization, Dropout)) or elementwise(layer)
        for layer in model.layers)


def gradient_plan(model, params):
    """{layer index: (path, parameter names)} for every layer that reads parameters, path one
    of "sample", "column", "batched" (see above); None when the loss is not SoftmaxWithLoss or a
    parameter is read by no layer or by several."""
    if not isinstance(model.loss_layer, SoftmaxWithLoss):
        return None
    owners = {}
    for k, layer in enumerate(model.layers):
        read = (v for v in vars(layer).values() if isinstance(v, str) and v in params)
        for name in dict.fromkeys(read):
            owners.setdefault(name, []).append(k)
    if set(owners) != set(params) or any(len(ks) > 1 for ks in owners.values()):
        return None
    plan = {}
    for name, (k,) in owners.items():
        plan.setdefault(k, (_path(model.layers, k), []))[1].append(name)
    return dict(sorted(plan.items()))


def _path(layers, l):
    layer = layers[l]
    if not isinstance(layer, (Affine, BatchNormalization)):
        return "batched"
    m = sample_gradient.next_affine(layers, l)
    chain, suffix = layers[l + 1:m], layers[m + 1:] if m is not None else []
    if not all(column_wise(c) for c in chain) or \
            not all(row_wise(s) or isinstance(s, BatchNormalization) for s in suffix):
        return "batched"
    coupled = any(isinstance(c, BatchNormalization) for c in chain + suffix)
    return "sample" if isinstance(layer, Affine) and not coupled else "column"


def model_numerical_gradient(model, params, x, t, state=None, key=None, weight_decay=None,
                             chunk_bytes=DEFAULT_CHUNK_BYTES, h=H):
    """Central differences of `model.loss` in training mode (the book's `numerical_gradient`).

    Structured (above) when `gradient_plan` has a plan; otherwise each array goes through
    `numerical_gradient`: vmapped on JAX, the book's loop on NumPy/CuPy. `state` and `key` stay
    fixed, so every perturbed loss sees the same Dropout mask and starts from the same BatchNorm
    state; `weight_decay` overrides the model's λ; `h` is the step (the book's 1e-4).
    """
    if gradient_plan(model, params) is not None:
        return structured_numerical_gradient(model, params, x, t, h, chunk_bytes, weight_decay,
                                             state, key)
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
                                  weight_decay=None, state=None, key=None):
    """Central-difference gradients of `model.loss(params, x, t, True, state, key)` for every
    entry of `params`, layer by layer along `gradient_plan`.

    Per call: one compiled forward pass, then one compiled program per layer. The sample and
    column paths of an Affine layer bring its input to the host (free on the CPU), where NumPy
    decides how to enumerate the perturbations; the index arrays that go back are padded on JAX
    to a few sizes per octave, so a new batch rarely compiles anything.
    """
    plan = gradient_plan(model, params)
    if plan is None:
        raise ValueError(f"the structured numerical gradient needs SoftmaxWithLoss and parameters "
                         f"each read by one layer; got {model!r}")
    backend = backend_of(x)
    xp, layers = backend.xp, model.layers
    inputs, outputs, caches = _program(backend, model, "forward")(params, x, state, key)
    step = xp.asarray(h, dtype=x.dtype, device=device_of(x))
    itemsize = xp.finfo(x.dtype).bits // 8
    grads = {}
    for l, (path, names) in plan.items():
        layer = layers[l]
        if path != "batched" and outputs[l].ndim != 2:  # e.g. BatchNorm on images
            path = "batched"
        if path == "sample":
            x2 = _host_rows(backend, inputs[l])
            chunk = max(1, chunk_bytes // sample_gradient.unit_bytes(layers, l, outputs, itemsize))
            mode, pairs = sample_gradient.choose(x2, chunk, backend.compiles)
            data = (inputs[l],) if mode == "dense" else tuple(
                backend.asarray(a, x.dtype if a.dtype.kind == "f" else backend.index_dtype)
                for a in pairs)
            program = _program(backend, model, ("sample", l, mode, chunk_bytes))
            grads[layer.weight], grads[layer.bias] = program(params, outputs, caches, t, *data, step)
        elif path == "column":
            data = ()
            if isinstance(layer, Affine):
                vectors, rows = column_gradient.distinct_columns(_host_rows(backend, inputs[l]),
                                                                 backend.compiles)
                data = (backend.asarray(vectors, x.dtype), backend.asarray(rows, backend.index_dtype))
            block = column_gradient.block_after(layers, l) > 0
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
                program = _program(backend, model, ("batched", l, name, chunk_bytes))
                grads[name] = program(params, inputs, outputs, caches, t, state, key, step)
    if isinstance(weight_decay, (int, float)):  # an array, so the program serves any value
        weight_decay = backend.asarray(weight_decay, x.dtype)  # (None: the model's λ, built in)
    for name, term in _program(backend, model, "decay")(params, weight_decay, step).items():
        grads[name] = grads[name] + term  # + 0.0 for λ = 0
    return {name: grads[name] for name in params}


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


#: Compiled programs per model: its forward pass and each Affine layer's gradient, by backend.
_COMPILED = weakref.WeakKeyDictionary()


def _program(backend, model, part):
    """The jitted forward pass (`part` "forward"), weight-decay differences ("decay") or a
    layer's gradient program of `model` on `backend` (("sample", l, mode, chunk_bytes),
    ("column", l, chunk_bytes, block), ("batched", l, name, chunk_bytes)), built once (on JAX each
    compiles once per shape bucket)."""
    cached = _COMPILED.setdefault(model, {})
    if (backend, part) not in cached:
        if part == "forward":
            program = _build_forward(backend, model)
        elif part == "decay":
            program = _build_decay(model)
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


def _build_decay(model):
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
