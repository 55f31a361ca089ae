"""What the attention methods share (rollout.py, generic_attention.py, legrad.py): the target
layer's token grid, the blocks whose self-attention covers its tokens, and reading a relevance
matrix R (B, N, N) as a map on that grid.

Reading: with prefix tokens (a class token first), the class token's row of R without the prefix
columns, R[0, prefix:], the authors' read-out; without (a model that pools its tokens), the mean of
R's rows, as its pooled output is the mean of the tokens. Open choices: docs/methods.md#attention-rollout.
"""

import numpy as np


def token_grid(result):
    """The target layer's token grid (engine.grid); ValueError for a layer that is not a token layer."""
    grid = result.engine.grid
    if grid is None:
        raise ValueError("attention maps are read on a transformer's token grid: choose a token layer as the target "
                         "(`gradcam layers` shows each token layer's grid)")
    return grid


def checked_blocks(result, grid):
    """The indices of the attention layers that attend over the grid's tokens, first block first;
    ValueError when there is none."""
    attentions = result.attentions or []
    usable = [a for a in attentions if a.shape[-1] == a.shape[-2] == grid.tokens]
    if not usable:
        counts = sorted({a.shape[-1] for a in attentions})
        found = f"its attention layers attend over {', '.join(map(str, counts))} tokens" if counts else \
            "the model has no keras.layers.MultiHeadAttention layer"
        raise ValueError(f"attention maps need self-attention over the target layer's {grid.tokens} tokens; {found}")
    return [i for i, a in enumerate(attentions) if a.shape[-1] == a.shape[-2] == grid.tokens]


def read_map(relevance_map, grid):
    """The patch tokens' relevance (B, h, w): the class token's row without the prefix columns,
    or the mean of the rows without prefix tokens."""
    rows = relevance_map[:, 0] if grid.prefix else relevance_map.mean(axis=1)
    return rows[:, grid.prefix :].reshape(-1, grid.height, grid.width).astype(np.float32)
