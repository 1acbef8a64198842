"""The per-sample path of the structured numerical gradient: an Affine layer after which nothing
mixes the samples of the batch (no BatchNormalization).

W[i, j] ± h moves column j of the layer's output by ±h·x[n, i] in each sample n and nothing else,
so L(θ + h·e) − L(θ − h·e) is the sum over the samples of the change of each one's own loss, and
that change depends only on the sample and the value x[n, i] (the bias b[j] is the weight of an
input that is always 1). A *unit* is one (sample, value) pair; for each, every output column j
and both signs go through the rest of the net:

- elementwise activations and Dropout (its fixed mask) keep the change in column j;
- the next Affine turns it into a rank-1 change dz·W[j, :] of the sample's row: when that row is
  the scores, the loss reuses the unperturbed row's exponentials (`rank1_losses`), otherwise the
  remaining per-sample layers run on the moved rows.

The units are enumerated in one of two ways, chosen per layer from its input (`choose`):

- "dense": every (input, sample) pair, in blocks of inputs taken straight from the layer's input
  (no bookkeeping, nothing sent to the device); a block's differences are summed over the samples;
- "sparse": only the pairs with x[n, i] ≠ 0, and each distinct (sample, value) pair once (a
  batch of MNIST digits: about 19 % of the pixels are non-zero, holding about 65 distinct values
  per digit), found on the host and credited to every input holding it by a scatter-add (in
  pieces of about `chunk_bytes`).
  It pays when it has SPARSE_COST times fewer units than dense (measured on NumPy and JAX).
"""
import numpy as np

from xpnet.backends import device_of
from xpnet.nn.layers import Affine, Context, Dropout
from xpnet.nn.perturbed_losses import (apply_stacked, label_entries, rank1_losses, score_losses,
                                       shifted_exps)

#: A sparse unit costs about this many dense ones (its gathers, the scatter-add, padding).
SPARSE_COST = 1.5
#: The context of the layers after the Affine (row-wise: they read neither state nor key).
TRAINING = Context(True)


def next_affine(layers, l):
    """The index of the first Affine layer after layer `l`, or None."""
    return next((k for k in range(l + 1, len(layers)) if isinstance(layers[k], Affine)), None)


def unit_bytes(layers, l, outputs, itemsize):
    """Bytes of the largest intermediate one unit needs, all output columns and both signs: the
    rows after the next Affine (or the scores), per output column of layer `l`."""
    m = next_affine(layers, l)
    widest = max(o.shape[-1] for o in outputs[(l if m is None else m):])
    return 2 * outputs[l].shape[1] * widest * itemsize


def choose(x2, chunk, pad):
    """("dense", None) or ("sparse", `distinct_perturbations(x2, chunk, pad)`) for a layer whose
    input is x2 (N, D) on the host: sparse when its distinct pairs are few enough to pay."""
    n, d = x2.shape
    dense_units = n * (d + 1)
    if SPARSE_COST * (np.count_nonzero(x2) + n) >= dense_units:
        return "dense", None
    pairs = distinct_perturbations(x2, chunk, pad)
    if SPARSE_COST * np.count_nonzero(pairs[1]) >= dense_units:
        return "dense", None
    return "sparse", pairs


def distinct_perturbations(x2, chunk, pad):
    """Host bookkeeping of the sparse mode for an Affine layer with input `x2` (N, D), NumPy.

    The entries whose perturbation changes anything are the non-zero (sample, input) ones, plus
    a bias column of ones. Entries are sorted by (sample, value) and only one per run of equal
    pairs is computed.

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
    chunks, entries = (bucket(chunks), bucket(len(features))) if pad else (chunks, len(features))
    padded = np.zeros(chunks * chunk, dtype=samples.dtype)
    padded[:len(samples)] = samples
    padded_values = np.zeros(chunks * chunk, dtype=values.dtype)
    padded_values[:len(values)] = values
    features = np.concatenate([features, np.full(entries - len(features), d + 1)])
    pair = np.concatenate([pair, np.zeros(entries - len(pair), dtype=pair.dtype)])
    return padded.reshape(chunks, chunk), padded_values.reshape(chunks, chunk), features, pair


def bucket(n):
    """The smallest of 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, … (four sizes per octave) >= n."""
    if n <= 8:
        return max(n, 1)
    step = 2 ** (n.bit_length() - 3)  # a quarter of the octave n lies in
    return -(-n // step) * step


def build(backend, layers, l, mode, chunk_bytes):
    """The gradient program of Affine layer `l` in `mode`:
    dense: (params, outputs, caches, t, x_in, h) -> (dW, db);
    sparse: (params, outputs, caches, t, samples, values, features, pair, h) -> (dW, db)."""
    xp = backend.xp
    differences = _unit_differences(backend, layers, l)

    def dense(params, outputs, caches, t, x_in, h):
        n = x_in.shape[0]
        x2 = xp.reshape(x_in, (n, -1))
        d, d_out = x2.shape[1], outputs[l].shape[1]
        itemsize = xp.finfo(x2.dtype).bits // 8
        block = max(1, chunk_bytes // (n * unit_bytes(layers, l, outputs, itemsize)))
        chunks = -(-(d + 1) // block)
        columns = [xp.permute_dims(x2, (1, 0)), xp.ones((1, n), dtype=x2.dtype, device=device_of(x2))]
        if chunks * block > d + 1:  # zero inputs change nothing; their rows are dropped
            columns.append(xp.zeros((chunks * block - d - 1, n), dtype=x2.dtype, device=device_of(x2)))
        blocks = xp.reshape(xp.concat(columns, axis=0), (chunks, block, n))

        def chunk(carry, c):
            rows = differences(params, outputs, caches, t, lambda a: a[None, ...], blocks[c, ...], h)
            return carry, xp.sum(rows, axis=1)  # over the samples

        _, sums = backend.scan(chunk, None, chunks)
        total = xp.reshape(sums, (-1, d_out))[:d + 1, ...] / (2 * h * n)
        return total[:d, ...], total[d, ...]

    def sparse(params, outputs, caches, t, samples, values, features, pair, h):
        n, d_out = outputs[l].shape
        d_in = params[layers[l].weight].shape[0]

        def chunk(carry, c):
            picked = samples[c, ...]
            return carry, differences(params, outputs, caches, t,
                                      lambda a: xp.take(a, picked, axis=0), values[c, ...], h)

        _, rows = backend.scan(chunk, None, samples.shape[0])
        rows = xp.reshape(rows, (-1, d_out))
        # each entry's row, credited to its input: in pieces of about chunk_bytes
        entries, device = features.shape[0], device_of(rows)
        piece = min(max(1, chunk_bytes // (d_out * (xp.finfo(rows.dtype).bits // 8))), entries)
        pieces = -(-entries // piece)
        if pieces * piece > entries:  # padding entries go to the dropped row d_in + 1
            extra = pieces * piece - entries
            features = xp.concat([features, xp.full((extra,), d_in + 1, dtype=features.dtype,
                                                    device=device)])
            pair = xp.concat([pair, xp.zeros((extra,), dtype=pair.dtype, device=device)])
        features, pair = xp.reshape(features, (pieces, piece)), xp.reshape(pair, (pieces, piece))

        def credit(total, c):
            per_entry = xp.take(rows, pair[c, ...], axis=0)
            return backend.scatter_add(total, features[c, ...], per_entry), None

        zeros = xp.zeros((d_in + 2, d_out), dtype=rows.dtype, device=device)
        total, _ = backend.scan(credit, zeros, pieces)
        total = total / (2 * h * n)
        return total[:d_in, ...], total[d_in, ...]

    return dense if mode == "dense" else sparse


def _unit_differences(backend, layers, l):
    """differences(params, outputs, caches, t, rows, values, h) -> ℓ⁺ − ℓ⁻ of shape
    values.shape + (output columns,): units of any shape, `values` their input values, `rows(a)`
    a per-sample array's rows for them (taken, or broadcast along new leading axes)."""
    xp = backend.xp
    m = next_affine(layers, l)
    chain = range(l + 1, len(layers) if m is None else m)
    suffix = range(len(layers) if m is None else m + 1, len(layers))
    fused = backend.compiles

    def differences(params, outputs, caches, t, rows, values, h):
        signs = xp.reshape(xp.stack([h, -h]), (2,) + (1,) * (values.ndim + 1))
        z = rows(outputs[l])[None, ...] + signs * values[None, ..., None]  # (±, *units, J)
        for k in chain:
            z = z * rows(caches[k])[None, ...] if isinstance(layers[k], Dropout) \
                else layers[k].forward(params, z)[0]
        dz = z - rows(outputs[(len(layers) if m is None else m) - 1])[None, ...]
        scores = outputs[-1]
        w = (xp.eye(scores.shape[1], dtype=scores.dtype, device=device_of(scores)) if m is None
             else params[layers[m].weight])                               # row j: how dz moves
        one_hot = t.ndim != 1
        if not suffix:  # the rows w moves are the scores
            e = shifted_exps(xp, scores)
            w_classes = xp.permute_dims(w, (1, 0))                        # (C, J)
            if one_hot:
                labels = rows(xp.astype(t, e.dtype))[..., None]
            else:
                w_t = xp.take(w_classes, t, axis=0)                        # W[j, t_n]: (N, J)
                labels = (rows(label_entries(xp, e, t))[..., None], rows(w_t))
            losses = rank1_losses(xp, rows(e)[..., None], w_classes, dz, labels, fused)
        else:
            moved = rows(outputs[m])[..., None, :] + dz[..., None] * w    # (±, *units, J, D)
            for k in suffix:
                mask = rows(caches[k])[..., None, :] if isinstance(layers[k], Dropout) else None
                moved = apply_stacked(layers[k], params, moved, moved.ndim - 1, mask, TRAINING)
            labels = rows(xp.astype(t, moved.dtype))[..., None, :] if one_hot else rows(t)[..., None]
            losses = score_losses(xp, moved, labels, one_hot)
        return losses[0, ...] - losses[1, ...]

    return differences
