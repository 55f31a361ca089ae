"""Maps from a vision transformer's attention: attention rollout and generic attention
explainability. Both read the attention probabilities A^l (B, heads, N, N) of every attention
layer, first block first, captured inside the compiled step (explain/attention.py); the second
also reads the gradients of the class score with respect to them.

Attention rollout (Abnar and Zuidema 2020, "Quantifying Attention Flow in Transformers", Sec. 3):
the residual connection is accounted for by adding the identity, rows are renormalised, and the
blocks' matrices are multiplied, first block rightmost:

    F^l = fuse_h(A^l)                       heads fused: mean (the paper), max or min
    Â^l = (F^l + I) / rowsum(F^l + I)       = 0.5 A + 0.5 I for the mean (rows of A sum to 1)
    R = Â^L ... Â^1

Our choices, each named:
- The discard ratio (not in the paper; jacobgil/vit-explain's): before the identity is added,
  the lowest `discard_ratio` fraction of each image's fused matrix entries is set to 0, never an
  entry of a prefix token's row and column with itself ([0, 0] in vit-explain). Rows are then
  renormalised per row (vit-explain's `a / a.sum(dim=-1)` without keepdim divides by the wrong
  rows when its rows do not sum to 1: not reproduced).
- Heads fused by max or min, as vit-explain offers.

Generic attention explainability (Chefer, Gur and Wolf 2021, "Generic Attention-model
Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers", Eq. 5-6 for
self-attention):

    Ā^l = E_h[(∇A^l ⊙ A^l)^+]               ∇A^l = d y_c / d A^l, y_c the class score before the softmax
    R = I;  R <- R + Ā^l R                   for l = 1..L, no renormalisation

Reading the map (both methods): with prefix tokens (a class token first), the class token's row
of R without the prefix columns, R[0, prefix:], the authors' read-out. Without prefix tokens (a
model that pools its tokens), the mean of R's rows: the pooled output is the mean of the tokens,
so its row is the mean of theirs (the papers leave this open). The patch columns are reshaped to
the target layer's grid, row by row. The maps are not normalised here (the files are).
"""

import numpy as np

FUSIONS = ("mean", "max", "min")
DEFAULT_FUSION = "mean"
DEFAULT_DISCARD = 0.0


def _grid(result):
    grid = result.engine.grid
    if grid is None:
        raise ValueError("attention maps are read on a transformer's token grid: choose a token layer as the target "
                         "(`gradcam layers` shows each token layer's grid)")
    return grid


def _checked(result, grid):
    attentions = result.attentions or []
    usable = [a for a in attentions if a.shape[-1] == a.shape[-2] == grid.tokens]
    if not usable:
        counts = sorted({a.shape[-1] for a in attentions})
        found = f"its attention layers attend over {', '.join(map(str, counts))} tokens" if counts else \
            "the model has no keras.layers.MultiHeadAttention layer"
        raise ValueError(f"attention maps need self-attention over the target layer's {grid.tokens} tokens; {found}")
    return [i for i, a in enumerate(attentions) if a.shape[-1] == a.shape[-2] == grid.tokens]


def fuse(attention, fusion=DEFAULT_FUSION):
    """(B, H, N, N) -> (B, N, N): the heads' mean, max or min."""
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}. Received: {fusion!r}")
    return getattr(np, fusion)(np.asarray(attention, dtype=np.float64), axis=1)


def discard(fused, ratio, prefix):
    """`fused` (B, N, N) with the lowest `ratio` of each image's entries set to 0, the prefix
    tokens' diagonal entries kept."""
    if not ratio:
        return fused
    batch, count, _ = fused.shape
    flat = fused.reshape(batch, -1).copy()
    protected = np.zeros(count * count, bool)
    protected[[i * count + i for i in range(prefix)]] = True
    dropped = int(ratio * (count * count - prefix))
    ranked = np.where(protected, np.inf, flat)
    lowest = np.argsort(ranked, axis=1, kind="stable")[:, :dropped]
    np.put_along_axis(flat, lowest, 0.0, axis=1)
    return flat.reshape(fused.shape)


def rollout(attentions, prefix, fusion=DEFAULT_FUSION, discard_ratio=DEFAULT_DISCARD):
    """Attention rollout of the blocks' (B, H, N, N) probabilities, first block first: R (B, N, N)."""
    result = None
    for attention in attentions:
        fused = discard(fuse(attention, fusion), discard_ratio, prefix)
        augmented = fused + np.eye(fused.shape[-1])
        augmented = augmented / augmented.sum(axis=-1, keepdims=True)
        result = augmented if result is None else augmented @ result
    return result


def relevance(attentions, gradients):
    """Chefer et al.'s relevance R (B, N, N) of the blocks' probabilities and their gradients."""
    count = attentions[0].shape[-1]
    relevance_map = np.broadcast_to(np.eye(count), (attentions[0].shape[0], count, count)).copy()
    for attention, gradient in zip(attentions, gradients):
        averaged = np.maximum(np.asarray(gradient, np.float64) * np.asarray(attention, np.float64), 0).mean(axis=1)
        relevance_map = relevance_map + averaged @ relevance_map
    return relevance_map


def read_map(relevance_map, grid):
    """The patch tokens' relevance (B, h, w): the class token's row without the prefix columns,
    or the mean of the rows without prefix tokens."""
    rows = relevance_map[:, 0] if grid.prefix else relevance_map.mean(axis=1)
    return rows[:, grid.prefix :].reshape(-1, grid.height, grid.width).astype(np.float32)


def rollout_map(result, context):
    grid = _grid(result)
    used = _checked(result, grid)
    fused = rollout([result.attentions[i] for i in used], grid.prefix,
                    context.options.get("head_fusion", DEFAULT_FUSION),
                    context.options.get("discard_ratio", DEFAULT_DISCARD))
    return read_map(fused, grid)


def generic_attention_map(result, context):
    grid = _grid(result)
    used = _checked(result, grid)
    return read_map(relevance([result.attentions[i] for i in used], [result.attention_gradients[i] for i in used]),
                    grid)
