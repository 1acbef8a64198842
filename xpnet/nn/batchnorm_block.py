"""The block BatchNorm → ReLU → (Dropout) → Affine on a batch with a rank-1 change, as matrix
products: the column path's (`column_gradient`) shortcut through MultiLayerNetExtend's blocks.

A perturbation upstream reaches the block as X + dz ⊗ w: the unperturbed batch X (N, D) plus dz
(one value per sample) times a row w of the Affine before. With C = X − mean(X) and
c = dz − mean(dz), BatchNorm in training mode gives, column by column, exactly

    centred' = C + c ⊗ w,   var'_k = var_k + 2·w_k·(cᵀC)_k / N + w_k²·mean(c²),
    y' = centred' · s + β,  s = γ / sqrt(var' + eps),

so its statistics cost one product cᵀC per perturbation instead of passes over (N, D). Where y'
keeps the sign y has, ReLU is the unperturbed mask M (times Dropout's fixed mask), and the next
Affine's output is two matrix products of fixed (N, D) matrices with per-perturbation (D, D')
ones:

    relu(y') @ W' + b' = (C·M) @ (s ⊙ W') + c ⊙ (M @ ((w·s) ⊙ W')) + (β·M) @ W' + b'.

No (N, D) array is made per perturbation. Entries of y close enough to 0 to change sign are the
exception: the RISKY entries with the smallest margin are recomputed exactly (their ReLU applied)
and corrected for; every other entry is checked against a bound of its change, |ΔY| ≤
max|C_k|·|s_k − s⁰_k| + max|c|·|w_k·s_k|, with room for rounding (ROUNDING times the dtype's
epsilon); entries that Dropout zeroes are neither, their sign changes nothing. A perturbation
that could flip an unchecked entry is counted as `unsafe`, and the caller recomputes the layer
without the block (never seen on MNIST batches, but possible). The arrays made once per call
are N·D'·D (`fixed_bytes`): the caller takes the block only where they fit its chunk budget.
"""
from xpnet.backends import device_of, namespace_of
from xpnet.nn.functions import CROSS_ENTROPY_DELTA
from xpnet.nn.layers import Affine, BatchNormalization, Dropout, Relu
from xpnet.nn.perturbed_losses import label_rows

#: Entries of the block's ReLU input recomputed exactly for every perturbation (smallest margin).
RISKY = 16
#: Room for rounding in the check, in units of the dtype's epsilon (an entry within rounding
#: of 0 changes the output by no more than rounding whichever side it falls).
ROUNDING = 64


def block_length(layers, start):
    """The number of layers of a BatchNorm → Relu → Dropout* → Affine block at layers[start:],
    or 0 when there is none."""
    k = start + 2
    if k >= len(layers) or not isinstance(layers[start], BatchNormalization) or \
            not isinstance(layers[start + 1], Relu):
        return 0
    while k < len(layers) and isinstance(layers[k], Dropout):
        k += 1
    return k - start + 1 if k < len(layers) and isinstance(layers[k], Affine) else 0


def fixed_bytes(layers, start, outputs):
    """Bytes of the largest array `prepare` makes for the block at layers[start:] (N·D'·D, the
    fixed halves of the products; N·D'·RISKY, the corrections' spread)."""
    end = start + block_length(layers, start) - 1
    n, d = outputs[start].shape
    itemsize = namespace_of(outputs[start]).finfo(outputs[start].dtype).bits // 8
    return n * outputs[end].shape[1] * max(d, RISKY) * itemsize


def prepare(xp, params, layers, start, outputs, caches):
    """What the block's perturbations share, from the unperturbed pass (computed once per call)."""
    bn, relu, end = layers[start], layers[start + 1], start + block_length(layers, start) - 1
    x, y = outputs[start - 1], outputs[start]                           # BatchNorm's input, output
    n, d = x.shape
    centred = x - xp.mean(x, axis=0, keepdims=True)
    var = xp.mean(centred ** 2, axis=0)
    gamma, beta = params[bn.gamma], params[bn.beta]
    scale0 = gamma / xp.sqrt(var + bn.EPS)
    relu_mask = xp.astype(y > 0, y.dtype)
    keep = xp.ones_like(y)
    for k in range(start + 2, end):  # Dropout's fixed masks
        keep = keep * caches[k]
    mask = relu_mask * keep
    weight, bias = params[layers[end].weight], params[layers[end].bias]
    # entries Dropout zeroes change nothing whatever their sign: neither risky nor checked
    kept = keep != 0
    risk = xp.abs(y) / (xp.abs(scale0) * (xp.abs(centred) + xp.sqrt(var + bn.EPS)))
    risk = xp.where(kept, risk, xp.full_like(risk, xp.inf))
    order = xp.argsort(xp.reshape(risk, (-1,)))
    risky = order[:min(RISKY, n * d)]                                    # flat indices
    rows, cols = risky // d, risky % d
    checked = xp.logical_and(kept, xp.reshape(xp.argsort(order), (n, d)) >= RISKY)  # by rank
    big = xp.max(xp.abs(y)) + 1.0
    margin = xp.min(xp.abs(y) + big * xp.astype(xp.logical_not(checked), y.dtype), axis=0)  # (D,)
    finfo = xp.finfo(y.dtype)
    reach = xp.max(xp.abs(x), axis=0) * xp.abs(scale0) + xp.abs(beta)   # the size of y's terms

    def flat(a):
        return xp.take(xp.reshape(a, (-1,)), risky)

    return {
        "centred": centred, "var": var, "gamma": gamma, "beta": beta, "scale0": scale0,
        "masked_weight": _outer(xp, centred * mask, weight), "mask_weight": _outer(xp, mask, weight),
        "weight": weight,
        "base": (beta * mask) @ weight + bias, "relu": relu,
        "spread": _spread(xp, rows, xp.take(weight, cols, axis=0), n),
        "shift": xp.max(outputs[end], axis=-1),
        "cols": cols, "risky_centred": flat(centred), "risky_mask": flat(relu_mask),
        "risky_keep": flat(keep),
        "risky_rows": rows,
        "margin": margin, "centred_max": xp.max(xp.abs(centred), axis=0),
        # room for rounding, in units of the dtype's epsilon
        "slack": ROUNDING * finfo.eps * reach + finfo.smallest_normal,
        "grow": 1.0 + ROUNDING * finfo.eps,
        "eps": bn.EPS,
    }


def _outer(xp, matrix, weight):
    """(N·D', D): entry [(n, c), k] = matrix[n, k]·weight[k, c], so that (N, D) @ (factor ⊙ W')
    is this times the factor (D,): the fixed half of the block's products, made once."""
    n, d = matrix.shape
    per = matrix[:, None, :] * xp.permute_dims(weight, (1, 0))[None, :, :]          # (N, D', D)
    return xp.reshape(per, (-1, d))


def _spread(xp, rows, weight_rows, n):
    """(N·D', R): a correction r of sample rows[r] times its weight row, summed into the rows."""
    samples = xp.arange(n, device=device_of(rows))
    onehot = xp.astype(rows[None, :] == samples[:, None], weight_rows.dtype)
    per = onehot[:, :, None] * weight_rows[None, :, :]                               # (N, R, D')
    return xp.reshape(xp.permute_dims(per, (0, 2, 1)), (-1, weight_rows.shape[0]))


def apply(xp, p, dz, w):
    """The block's output rows for moves dz (±, U, N) along rows w (U, D) of its input, laid out
    (N, D', ±·U) (so the products need no transposes); and per perturbation (U,) the number of
    unchecked entries whose sign might change."""
    two, units, n = dz.shape
    d, d_next = p["weight"].shape
    c = dz - xp.mean(dz, axis=-1, keepdims=True)
    cross = xp.reshape(xp.reshape(c, (-1, n)) @ p["centred"], (two, units, d))      # cᵀC
    var = p["var"] + 2.0 * w * cross / n + w * w * xp.mean(c * c, axis=-1)[..., None]
    scale = p["gamma"] / xp.sqrt(var + p["eps"])                                    # (±, U, D)

    def through(spread, factor):  # Σ_k spread[(n, c), k]·factor[k] for every perturbation
        return xp.reshape(spread @ xp.reshape(xp.permute_dims(factor, (2, 0, 1)), (d, -1)),
                          (n, d_next, -1))

    moves = xp.reshape(xp.permute_dims(c, (2, 0, 1)), (n, 1, -1))                 # (N, 1, ±U)
    rows = through(p["masked_weight"], scale) + moves * through(p["mask_weight"], w * scale) \
        + p["base"][..., None]
    # the risky entries, exactly: y' and its ReLU, minus what the mask M assumed
    cols = p["cols"]
    exact = (p["risky_centred"] + xp.take(c, p["risky_rows"], axis=-1) * xp.take(w, cols, axis=-1)) \
        * xp.take(scale, cols, axis=-1) + xp.take(p["beta"], cols)                    # (±, U, R)
    correction = (p["relu"].forward({}, exact)[0] - p["risky_mask"] * exact) * p["risky_keep"]
    flat = xp.reshape(xp.permute_dims(correction, (2, 0, 1)), (correction.shape[-1], -1))
    rows = rows + xp.reshape(p["spread"] @ flat, (n, d_next, -1))
    bound = p["centred_max"] * xp.abs(scale - p["scale0"]) \
        + xp.max(xp.abs(c), axis=-1)[..., None] * xp.abs(w * scale)
    unsafe = xp.sum(xp.astype(bound * p["grow"] + p["slack"] >= p["margin"], dz.dtype), axis=(0, 2))
    return rows, unsafe


def stacked(xp, rows, two):
    """Rows (N, D', ±·U) of `apply` as (±, U, N, D'), the layout of the column path."""
    n, d_next, _ = rows.shape
    return xp.permute_dims(xp.reshape(rows, (n, d_next, two, -1)), (2, 3, 0, 1))


def losses(xp, p, rows, t, one_hot):
    """Σ over the batch of ℓ⁺ − ℓ⁻ per perturbation (U,) when the rows (N, C, ±·U) of `apply`
    are the scores: the book's loss with the softmax shifted by the unperturbed row's maximum
    (shift-invariant; the perturbed rows differ from it by about h)."""
    n, classes, _ = rows.shape
    e = xp.exp(rows - p["shift"][:, None, None])
    total = xp.sum(e, axis=1)                                                       # (N, ±U)
    if one_hot:
        loss = -xp.sum(t[..., None] * xp.log(e / total[:, None, :] + CROSS_ENTROPY_DELTA), axis=1)
    else:
        picked = xp.take(xp.reshape(e, (n * classes, -1)), label_rows(xp, t, classes, device_of(e)),
                         axis=0)
        loss = -xp.log(picked / total + CROSS_ENTROPY_DELTA)
    loss = xp.reshape(loss, (n, 2, -1))
    return xp.sum(loss[:, 0, :] - loss[:, 1, :], axis=0)
