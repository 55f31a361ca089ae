"""What the engine hands back for a batch, and the small pieces every compiled step shares.

`BatchResult` is what a method reads (Engine.run and the attention steps of explain/attention.py
both return one), `LayerGradients` what Engine.layer_gradients returns, `top_rank` the target
code of the rank-th most likely class, and `numpy_rows` how a step's tensor becomes float32 numpy
for the images that were asked for (a batch is padded to its compiled size).

This module imports neither the engine nor the attention steps: both import it, so the engine
may call the attention steps without a circle.
"""

from dataclasses import dataclass

import numpy as np
from keras import ops


def top_rank(rank):
    """The target code for the rank-th most likely class (rank 1 = the top class)."""
    return -int(rank)


def numpy_rows(tensor, count):
    """The first `count` rows of a step's tensor (the rest is padding) as float32 numpy."""
    return ops.convert_to_numpy(tensor)[:count].astype(np.float32)


@dataclass
class BatchResult:
    """What a method reads: the engine's results for a batch, the batch itself, and the engine
    (to score further inputs: `engine.scores`)."""

    activations: np.ndarray  # (B, h, w, K) float32; a volume's layer: (B, d1, d2, d3, K)
    gradients: np.ndarray  # the activations' shape, float32, or None when not asked for
    raw_outputs: np.ndarray  # (B, units) pre-activation model outputs
    classes: np.ndarray  # (B,) the class each image was explained for
    input_gradients: np.ndarray = None  # (B, H, W, C) with `backprop`: d objective / d input
    inputs: np.ndarray = None  # (B, H, W, C) the preprocessed batch; volumes: (B, D1, D2, D3, C)
    engine: object = None
    hessian_products: np.ndarray = None  # the activations' shape, with `hessian`: H A at the target layer
    compared: np.ndarray = None  # (B, n) the classes an objective compared with (Finer-CAM)
    attentions: list = None  # with "attention": each attention layer's probabilities (B, heads, N, N), in call order
    attention_gradients: list = None  # with "attention-gradients": d objective / d each of them


@dataclass
class LayerGradients:
    """`Engine.layer_gradients`' results for a batch of n images."""

    input_gradients: np.ndarray  # (n, H, W, C) d objective / d input
    layers: list  # [(path, (n, ...) d objective / d the layer's output)], in call order
    classes: np.ndarray  # (n,)
    raw_outputs: np.ndarray  # (n, units)
