"""Generic attention explainability (Chefer, Gur and Wolf 2021, "Generic Attention-model
Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers", Eq. 5-6 for
self-attention), y_c the class score before the softmax:

    Ā^l = E_h[(∇A^l ⊙ A^l)^+],   ∇A^l = d y_c / d A^l;   R = I,  R <- R + Ā^l R  for l = 1..L

Open choices: docs/methods.md#generic-attention-explainability.
"""

import numpy as np

from gradcam_cli.explain.methods.attention_maps import (
    checked_blocks,
    read_map,
    token_grid,
)
from gradcam_cli.explain.methods.method import Method


def relevance(attentions, gradients):
    """Chefer et al.'s relevance R (B, N, N) of the blocks' probabilities and their gradients."""
    count = attentions[0].shape[-1]
    relevance_map = np.broadcast_to(np.eye(count), (attentions[0].shape[0], count, count)).copy()
    for attention, gradient in zip(attentions, gradients):
        averaged = np.maximum(np.asarray(gradient, np.float64) * np.asarray(attention, np.float64), 0).mean(axis=1)
        relevance_map = relevance_map + averaged @ relevance_map
    return relevance_map


def spatial_map(result, context):
    """The relevance map (B, h, w) of a BatchResult computed with "attention-gradients" in its needs."""
    grid = token_grid(result)
    used = checked_blocks(result, grid)
    return read_map(relevance([result.attentions[i] for i in used], [result.attention_gradients[i] for i in used]),
                    grid)


METHOD = Method(
    "generic-attention",
    "Generic attention explainability: each block's attention times its gradient, positive part averaged over "
    "heads, propagated through the blocks (a transformer's)",
    "Chefer, Gur and Wolf 2021, Generic Attention-model Explainability for Interpreting Bi-Modal and "
    "Encoder-Decoder Transformers",
    ("attention", "attention-gradients"),
    spatial_map=spatial_map,
    volumes=False,
    no_volumes=("it reads an image transformer's attention and its gradients over a 2-D patch grid; a model "
                "of volumes or clips (a video transformer's tubelets included) has none"),
)
