"""Attention rollout (Abnar and Zuidema 2020, "Quantifying Attention Flow in Transformers", Sec. 3):
each block's attention with the identity added for the residual connection, rows renormalised,
multiplied through the blocks, first block rightmost:

    F^l = fuse_h(A^l),   Â^l = (F^l + I) / rowsum(F^l + I),   R = Â^L ... Â^1

Open choices (head fusion, the discard ratio, the read-out): docs/methods.md#attention-rollout.
"""

import numpy as np

from gradcam_cli.explain.methods.attention_maps import (
    checked_blocks,
    read_map,
    token_grid,
)
from gradcam_cli.explain.methods.method import Method
from gradcam_cli.explain.methods.options import MethodOption

FUSION = MethodOption("head_fusion", str, "mean", "how the heads' attention is fused: their mean (the paper), max "
                      "or min", choices=("mean", "max", "min"))
DISCARD = MethodOption("discard_ratio", float, 0.0, "the fraction of each block's lowest fused attention set to 0 "
                       "before the identity is added (not in the paper: jacobgil/vit-explain's, which uses 0.9)",
                       minimum=0.0, maximum=0.99)


def fuse(attention, fusion=FUSION.default):
    """(B, H, N, N) -> (B, N, N): the heads' mean, max or min."""
    if fusion not in FUSION.choices:
        raise ValueError(f"fusion must be one of {', '.join(FUSION.choices)}. Received: {fusion!r}")
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


def rollout(attentions, prefix, fusion=FUSION.default, discard_ratio=DISCARD.default):
    """Attention rollout of the blocks' (B, H, N, N) probabilities, first block first: R (B, N, N)."""
    result = None
    for attention in attentions:
        fused = discard(fuse(attention, fusion), discard_ratio, prefix)
        augmented = fused + np.eye(fused.shape[-1])
        augmented = augmented / augmented.sum(axis=-1, keepdims=True)
        result = augmented if result is None else augmented @ result
    return result


def spatial_map(result, context):
    """The rollout map (B, h, w) of a BatchResult computed with "attention" in its needs."""
    grid = token_grid(result)
    used = checked_blocks(result, grid)
    fused = rollout([result.attentions[i] for i in used], grid.prefix, context.options["head_fusion"],
                    context.options["discard_ratio"])
    return read_map(fused, grid)


METHOD = Method(
    "rollout",
    "Attention rollout: each block's attention with the identity added for the residual, rows renormalised, "
    "multiplied through the blocks (a transformer's; gradient-free, class-agnostic)",
    "Abnar and Zuidema 2020, Quantifying Attention Flow in Transformers",
    ("attention",),
    spatial_map=spatial_map,
    options=(FUSION, DISCARD),
    volumes=False,
    no_volumes=("it reads an image transformer's attention over a 2-D patch grid; a model of volumes or clips "
                "(a video transformer's tubelets included) has none"),
)
