"""The column path of the structured numerical gradient: Affine and BatchNormalization layers in
nets whose samples are coupled by a BatchNormalization (training mode: batch statistics).

Each perturbation moves one output column j of its layer, for the whole batch at once, by ±h·v
with v a vector over the samples: W[i, j] of an Affine, v = x[:, i] (the batch's input i); its
bias b[j], v = 1; BatchNorm's gamma[j], v = its normalised column j; beta[j], v = 1. Then:

- elementwise activations, Dropout (its fixed mask) and BatchNorm (statistics per feature, so a
  whole new column j from the moved one) keep the change in column j: (N,) values per perturbation;
- the next Affine turns it into a rank-1 change dz ⊗ W[j, :] of its (N, D) output;
- when those are the scores, each sample's loss reuses the unperturbed row's exponentials;
  otherwise the rest of the net (BatchNorm included) runs on the (N, D) copy of the batch,
  stacked with the other perturbations of the chunk.

Nothing before the layer is recomputed. An Affine's inputs that are zero in every sample of the
batch change nothing (their gradient is 0) and equal input columns are computed once: the
distinct non-zero columns are found on the host (`distinct_columns`).
"""
import numpy as np

from xpnet.backends import device_of
from xpnet.nn import batchnorm_block
from xpnet.nn.layers import Affine, BatchNormalization, Dropout
from xpnet.nn.perturbed_losses import (apply_stacked, label_entries, rank1_losses, score_losses,
                                       shifted_exps)
from xpnet.nn.sample_gradient import TRAINING, bucket, next_affine


def block_after(layers, l):
    """The length of the BatchNorm → ReLU → Affine block right after the Affine that follows
    layer `l` (`batchnorm_block`), 0 if there is none."""
    m = next_affine(layers, l)
    return 0 if m is None else batchnorm_block.block_length(layers, m + 1)


def block_fits(layers, l, outputs, chunk_bytes):
    """Whether layer `l` takes the BatchNorm block's shortcut: there is one (`block_after`) and
    each array it makes once per call fits in `chunk_bytes` (`batchnorm_block.fixed_bytes`);
    otherwise the rest of the net runs on the copies, in chunks."""
    return block_after(layers, l) > 0 and batchnorm_block.fixed_bytes(
        layers, next_affine(layers, l) + 1, outputs) <= chunk_bytes


def unit_bytes(layers, l, outputs, itemsize, block):
    """Bytes of the largest intermediate of one perturbation (both signs): the batch's rows
    after the next Affine (with the `block` shortcut, after the block's Affine), or the scores."""
    m = next_affine(layers, l)
    start = l if m is None else m + block
    widest = max(o.shape[-1] for o in outputs[start:])
    rows = max(outputs[l].shape[0], outputs[m].shape[1]) if block else outputs[l].shape[0]
    return 2 * rows * widest * itemsize


def distinct_columns(x2, pad):
    """(vectors, inverse) of an Affine layer with input x2 (N, D) on the host: the distinct input
    columns that are not all zero, then a column of ones (the bias), as rows (K + 1, N); and for
    each input the row holding its column, or K (the bias's row, read as zeros) for an input
    that is zero in every sample. With `pad`, K is rounded up to a few sizes per octave (rows of
    zeros), so a compiled program serves many batches."""
    n, d = x2.shape
    columns = np.ascontiguousarray(x2.T)
    nonzero = np.any(columns != 0, axis=1)
    distinct, inverse = np.unique(columns[nonzero], axis=0, return_inverse=True)
    k = bucket(len(distinct)) if pad else len(distinct)
    vectors = np.zeros((k + 1, n), dtype=x2.dtype)
    vectors[:len(distinct)] = distinct
    vectors[k] = 1
    rows = np.full(d, k)
    rows[nonzero] = np.reshape(inverse, -1)
    return vectors, rows


def build(backend, layers, l, chunk_bytes, block):
    """The gradient program of layer `l`:
    Affine: (params, outputs, caches, t, vectors, inverse, h) -> (dW, db, unsafe) (from
    `distinct_columns`); BatchNormalization: (params, outputs, caches, t, h) -> (dgamma, dbeta,
    unsafe). With `block`, the BatchNorm block after the next Affine takes its shortcut, and
    `unsafe` counts the perturbations it could not vouch for (then build it again without)."""
    xp = backend.xp
    block = block and block_after(layers, l)
    differences = _unit_differences(backend, layers, l, block)

    def run(params, outputs, caches, t, vectors, h, grid):
        """Σ over the batch of ℓ⁺ − ℓ⁻ for every unit: grid, unit u moves column u % J by
        vectors[u // J]; otherwise by vectors[u] (then one vector per unit)."""
        n, d_out = outputs[l].shape
        units = vectors.shape[0] * d_out if grid else vectors.shape[0]
        itemsize = xp.finfo(vectors.dtype).bits // 8
        size = min(max(1, chunk_bytes // unit_bytes(layers, l, outputs, itemsize, block)), units)
        chunks = -(-units // size)
        shared = block and batchnorm_block.prepare(xp, params, layers, next_affine(layers, l) + 1,
                                                   outputs, caches)

        def chunk(carry, c):
            u = (c * size + xp.arange(size, device=device_of(vectors))) % units  # padding wraps
            a = u // d_out if grid else u
            return carry, differences(params, outputs, caches, t, xp.take(vectors, a, axis=0),
                                      u % d_out, h, shared)

        _, (sums, unsafe) = backend.scan(chunk, None, chunks)
        return xp.reshape(sums, (-1,))[:units] / (2 * h * n), xp.sum(unsafe)

    def affine(params, outputs, caches, t, vectors, inverse, h):
        d_out = outputs[l].shape[1]
        total, unsafe = run(params, outputs, caches, t, vectors, h, True)
        total = xp.reshape(total, (-1, d_out))
        bias = total[-1, ...]
        rows = xp.concat([total[:-1, ...], xp.zeros_like(bias)[None, ...]], axis=0)
        return xp.take(rows, inverse, axis=0), bias, unsafe

    def batchnorm(params, outputs, caches, t, h):
        normalised = xp.permute_dims(caches[l], (1, 0))  # (J, N)
        vectors = xp.concat([normalised, xp.ones_like(normalised)], axis=0)
        total, unsafe = run(params, outputs, caches, t, vectors, h, False)
        d_out = normalised.shape[0]
        return total[:d_out, ...], total[d_out:, ...], unsafe

    return affine if isinstance(layers[l], Affine) else batchnorm


def _unit_differences(backend, layers, l, block):
    """differences(params, outputs, caches, t, v, j, h, shared) -> ((U,), unsafe (U,)): for each
    unit u, Σ_n (ℓ⁺ − ℓ⁻) when column j[u] of layer l's output moves by ±h·v[u] (v: (U, N));
    `shared`: the BatchNorm block's `prepare` (with `block`, its length)."""
    xp = backend.xp
    m = next_affine(layers, l)
    chain = range(l + 1, len(layers) if m is None else m)
    suffix = range(len(layers) if m is None else m + 1, len(layers))
    fused = backend.compiles

    def differences(params, outputs, caches, t, v, j, h, shared):
        def columns(a):  # (N, J) -> the units' columns (U, N)
            return xp.take(xp.permute_dims(a, (1, 0)), j, axis=0)

        z = columns(outputs[l])[None, ...] + xp.reshape(xp.stack([h, -h]), (2, 1, 1)) * v[None, ...]
        for k in chain:
            layer = layers[k]
            if isinstance(layer, Dropout):
                z = z * columns(caches[k])[None, ...]
            elif isinstance(layer, BatchNormalization):  # the column's own batch statistics
                centred = z - xp.mean(z, axis=-1, keepdims=True)
                std = xp.sqrt(xp.mean(centred ** 2, axis=-1, keepdims=True) + layer.EPS)
                gamma, beta = (xp.take(params[name], j)[:, None] for name in (layer.gamma, layer.beta))
                z = gamma * (centred / std) + beta
            else:
                z = layer.forward(params, z)[0]
        dz = z - columns(outputs[(len(layers) if m is None else m) - 1])[None, ...]  # (±, U, N)
        scores = outputs[-1]
        w = (xp.eye(scores.shape[1], dtype=scores.dtype, device=device_of(scores)) if m is None
             else params[layers[m].weight])
        w_rows = xp.take(w, j, axis=0)                                         # (U, D)
        one_hot = t.ndim != 1
        unsafe = xp.zeros(j.shape, dtype=dz.dtype, device=device_of(dz))
        if not suffix:
            e = shifted_exps(xp, scores)
            if one_hot:
                labels = xp.permute_dims(xp.astype(t, e.dtype), (1, 0))[None, ...]  # (1, C, N)
            else:
                labels = (label_entries(xp, e, t), xp.take(w_rows, t, axis=1))  # (N,), (U, N)
            losses = rank1_losses(xp, xp.permute_dims(e, (1, 0))[None, ...], w_rows[:, :, None],
                                  dz, labels, fused)
        else:
            if block:  # rows after the block's Affine
                rows, unsafe = batchnorm_block.apply(xp, shared, dz, w_rows)
                if len(suffix) == block:
                    labels = xp.astype(t, rows.dtype) if one_hot else t
                    return batchnorm_block.losses(xp, shared, rows, labels, one_hot), unsafe
                moved = batchnorm_block.stacked(xp, rows, 2)
            else:
                moved = outputs[m][None, None, ...] + dz[..., None] * w_rows[None, :, None, :]
            for k in suffix[block:]:
                mask = caches[k] if isinstance(layers[k], Dropout) else None
                moved = apply_stacked(layers[k], params, moved, 3, mask, TRAINING)
            losses = score_losses(xp, moved, xp.astype(t, moved.dtype) if one_hot else t, one_hot)
        return xp.sum(losses[0, ...] - losses[1, ...], axis=-1), unsafe

    return differences
