"""What a perturbation does downstream of the layer it enters: the rest of the net run on stacked
perturbed copies, and the book's loss of rows whose scores moved.

Shared by the paths of the structured numerical gradient (`sample_gradient`, `column_gradient`,
`batched_gradient`). Everything here is the net's own training-mode computation, applied to
perturbed values; what differs from the book's loop is only how much is recomputed and how many
perturbations go through one array operation.
"""
from xpnet.backends import backend_of, device_of, namespace_of
from xpnet.nn.conv import Convolution, Pooling
from xpnet.nn.functions import CROSS_ENTROPY_DELTA
from xpnet.nn.layers import Affine, BatchNormalization, Dropout

#: Layers whose output for a sample depends on that sample alone, whatever the input's shape:
#: K stacked copies of a batch go through them as one batch of K·N.
PER_SAMPLE = (Convolution, Pooling)


def elementwise(layer):
    """An elementwise layer that needs no random key (one that does would draw its randomness
    for the shape it is given, not the batch's)."""
    return layer.elementwise and not layer.random


def column_wise(layer):
    """True for a layer that keeps a change of one feature column in that column (for every
    sample): elementwise activations, Dropout (its mask is fixed), BatchNormalization (statistics
    per feature)."""
    return elementwise(layer) or isinstance(layer, (Dropout, BatchNormalization))


def row_wise(layer):
    """True for a layer that maps each sample's row (..., D) on its own: Affine, Dropout and
    elementwise activations."""
    return elementwise(layer) or isinstance(layer, (Affine, Dropout))


def apply_stacked(layer, params, x, axes, mask, ctx):
    """`layer` in training mode on stacked copies of its input, x of shape (*stack, N, *features),
    `axes` = len(stack) + 1 (the features start there).

    Affine acts on the flattened features; Dropout multiplies by `mask`, its mask from the
    unperturbed pass (broadcast against x; None for other layers); BatchNormalization normalises
    each copy with its own batch statistics (over axis `axes` - 1); per-sample layers
    (convolution, pooling) see the copies as one bigger batch; elementwise layers see x as it is.
    Any other layer runs once per copy (`backend.vmap`) in `ctx`, its training-mode context.
    """
    xp = namespace_of(x)
    outer = tuple(x.shape[:axes])
    if isinstance(layer, Affine):
        W = params[layer.weight]
        rows = xp.reshape(x, (-1, W.shape[0])) @ W + params[layer.bias]
        return xp.reshape(rows, outer + (W.shape[1],))
    if isinstance(layer, Dropout):
        return x * mask
    if isinstance(layer, BatchNormalization):
        rows = xp.reshape(x, outer + (-1,))
        centred = rows - xp.mean(rows, axis=-2, keepdims=True)
        std = xp.sqrt(xp.mean(centred ** 2, axis=-2, keepdims=True) + layer.EPS)
        return xp.reshape(params[layer.gamma] * (centred / std) + params[layer.beta], x.shape)
    if elementwise(layer):
        return layer.forward(params, x)[0]
    if isinstance(layer, PER_SAMPLE):
        y = layer.forward(params, xp.reshape(x, (-1,) + tuple(x.shape[axes:])))[0]
        return xp.reshape(y, outer + tuple(y.shape[1:]))
    copies = xp.reshape(x, (-1,) + tuple(x.shape[axes - 1:]))
    y = backend_of(x).vmap(lambda copy: layer.forward(params, copy, ctx)[0])(copies)
    return xp.reshape(y, outer[:-1] + tuple(y.shape[1:]))


def rank1_losses(xp, e_rows, w, moved, labels, fused):
    """The book's loss -log(softmax(s)_t + 1e-7) (one-hot t: -Σ t·log(softmax(s) + 1e-7)) of
    scores s = S + moved·w that moved along a row w, for every entry of `moved` (any shape).

    `e_rows` = exp(S - max S) and `w` broadcast against moved[..., None, :], classes on axis -2
    (the compiler then vectorizes along the last axis): softmax is shift-invariant, so the
    unperturbed row's shift and exponentials serve every perturbed row (|moved·w| is about
    h·|x|·|W|). `labels`: (e_t, w_t), the labels' entries of e_rows and w broadcast like
    `moved`; or one-hot rows t laid out like e_rows.

    `fused` (compiled backends): one expression over (..., classes, ...) that the compiler
    fuses; otherwise a loop over the classes, whose arrays stay the size of `moved`.
    """
    classes = w.shape[-2]
    if fused:
        exps = e_rows * xp.exp(moved[..., None, :] * w)
        total = xp.sum(exps, axis=-2)
    else:
        total = e_rows[..., 0, :] * xp.exp(moved * w[..., 0, :])
        for c in range(1, classes):
            total += e_rows[..., c, :] * xp.exp(moved * w[..., c, :])
    if isinstance(labels, tuple):
        e_t, w_t = labels
        return -xp.log(e_t * xp.exp(moved * w_t) / total + CROSS_ENTROPY_DELTA)
    if fused:
        return -xp.sum(labels * xp.log(exps / total[..., None, :] + CROSS_ENTROPY_DELTA), axis=-2)
    loss = 0.0
    for c in range(classes):
        p = e_rows[..., c, :] * xp.exp(moved * w[..., c, :]) / total
        loss = loss - labels[..., c, :] * xp.log(p + CROSS_ENTROPY_DELTA)
    return loss


def score_losses(xp, scores, t, one_hot):
    """The book's per-sample loss of whole score rows (..., C), softmax with the row's max
    subtracted first; t: labels broadcast like scores[..., 0], or (`one_hot`) float rows
    broadcast like scores."""
    e = xp.exp(scores - xp.max(scores, axis=-1, keepdims=True))
    y = e / xp.sum(e, axis=-1, keepdims=True)
    if one_hot:
        return -xp.sum(t * xp.log(y + CROSS_ENTROPY_DELTA), axis=-1)
    index = backend_of(scores).index_dtype  # labels of any integer dtype against every class
    classes = xp.arange(scores.shape[-1], dtype=index, device=device_of(scores))
    picked = xp.sum(y * xp.astype(xp.astype(t, index)[..., None] == classes, y.dtype), axis=-1)
    return -xp.log(picked + CROSS_ENTROPY_DELTA)


def label_entries(xp, e, t):
    """e[n, t_n] for each row n of e (N, C) and integer labels t (N,)."""
    return xp.take(xp.reshape(e, (-1,)), label_rows(xp, t, e.shape[1], device_of(e)))


def label_rows(xp, t, classes, device):
    """n·classes + t_n, the flat index of each label t (N,) in rows of `classes` entries, in the
    backend's index dtype (labels of a small dtype, uint8 say, would wrap around)."""
    index = backend_of(t).index_dtype
    return xp.arange(t.shape[0], dtype=index, device=device) * classes + xp.astype(t, index)


def shifted_exps(xp, scores):
    """exp(S - max S) per row: the unperturbed scores' exponentials `rank1_losses` reuses."""
    return xp.exp(scores - xp.max(scores, axis=-1, keepdims=True))
