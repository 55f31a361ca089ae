"""LeGrad (Bousselham et al. 2024, "LeGrad: An Explainability Method for Vision Transformers via
Feature Formation Sensitivity"), as torchcam 0.5 defines it (its `LeGrad`).

For each block l of a transformer with attention probabilities A^l (B, heads, N, N):

    s^l = head(z^l)_c                  z^l the block's output tokens, head the model's own
    E^l = mean over heads and queries of ReLU(d s^l / d A^l)        (B, N): one value per key token
    map = mean over blocks of E^l, the prefix keys dropped, reshaped to the grid

The gradient of each block's score is taken with respect to that block's attention alone (one
backward pass per block, all in one compiled step: explain/attention.py's `block_attention_batch`);
attention values are not multiplied in.

Our choices, each named:
- The head applied to block l's tokens is the model's own: its final normalization, then what the
  model does after it (its class token or its pooling, its classifier), run on z^l in place of the
  last block's output. torchcam's default projection for torchvision's ViT pools the mean of all
  tokens before the final norm, whatever the model's own pooling; the authors' code pools the mean
  too (for CLIP). With a class-token head, a block's score depends on its attention through the
  class token's query alone, so E^l is that row's gradient over N.
- Every block is used (the paper aggregates all layers; torchcam takes the blocks it is given, its
  example the last four; the authors' code the last two): `--legrad-blocks K` keeps the last K,
  at most the blocks there are (a larger K is refused: it would average them all while the record
  said K).
- No normalisation in the method (torchcam min-max normalises the mean; the files here are
  normalised).
"""

import numpy as np

from gradcam_cli.explain.methods.attention_maps import checked_blocks, token_grid
from gradcam_cli.explain.methods.method import Method
from gradcam_cli.explain.methods.options import MethodOption

BLOCKS = MethodOption("legrad_blocks", int, None, "average the last K blocks only (not given: every block; "
                      "torchcam's example takes 4, the authors' code 2)", minimum=1, metavar="K")


def applies(loaded, target_path, options):
    """The registry's `applies`: more blocks than the model has over the layer's tokens are refused
    (explain/attention.py's check_legrad)."""
    from gradcam_cli.explain.attention import check_legrad

    check_legrad(loaded, target_path, options)


def spatial_map(result, context):
    """LeGrad's map (B, h, w) of a BatchResult computed with "block-attention-gradients" in its needs."""
    grid = token_grid(result)
    used = checked_blocks(result, grid)
    blocks = context.options["legrad_blocks"]
    if blocks:
        used = used[-int(blocks):]
    relevance = [np.maximum(np.asarray(result.attention_gradients[i], np.float64), 0).mean(axis=(1, 2))
                 for i in used]
    mean = np.mean(relevance, axis=0)  # (B, N): one value per key
    return mean[:, grid.prefix : grid.tokens].reshape(-1, grid.height, grid.width).astype(np.float32)


METHOD = Method(
    "legrad",
    "LeGrad: each block's attention's sensitivity to that block's own score (the head on its tokens), "
    "positive part averaged over heads and queries, then over blocks (a transformer's)",
    "Bousselham et al. 2024, LeGrad: An Explainability Method for Vision Transformers via Feature Formation "
    "Sensitivity",
    ("attention", "block-attention-gradients"),
    spatial_map=spatial_map,
    options=(BLOCKS,),
    applies=applies,
    volumes=False,
    no_volumes=("it reads an image transformer's attention over a 2-D patch grid, block by block; a model of "
                "volumes or clips (a video transformer's tubelets included) has none"),
)
