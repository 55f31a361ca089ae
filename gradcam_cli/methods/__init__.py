"""The methods: each a small function of arrays; the registry feeds the engine and the CLI.

A channel-weight method takes (activations, gradients) of shape (B, h, w, K) and returns
weights (B, K); the engine forms the map ReLU(sum_k w_k A_k) and does everything else.
"""

from dataclasses import dataclass
from typing import Callable

from gradcam_cli.methods.gradcam import gradcam_weights


@dataclass(frozen=True)
class Method:
    name: str
    channel_weights: Callable
    summary: str


METHODS = {
    "gradcam": Method(
        "gradcam", gradcam_weights, "Grad-CAM: channel weights = spatially pooled gradients"
    ),
}

POOLING = ("mean", "max")
