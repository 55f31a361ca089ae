"""Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017).

How other implementations differ: docs/methods.md#grad-cam.
"""

import numpy as np

from gradcam_cli.explain.methods.method import GRADIENT_NEEDS, Method, spatial_axes

PAPER = "Selvaraju et al. 2017, Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization"


def gradcam_weights(activations, gradients, pool="mean"):
    """Channel weights alpha_k^c = (1/Z) sum_ij dy^c / dA^k_ij (Eq. 1), shape (B, K).

    Pooled per sample over the spatial axes only, all of them (a volume's three). `pool="max"` is a variant (the strongest
    gradient of each channel instead of the mean).
    """
    gradients = np.asarray(gradients, dtype=np.float32)
    if pool == "mean":
        return gradients.mean(axis=spatial_axes(gradients))
    if pool == "max":
        return gradients.max(axis=spatial_axes(gradients))
    raise ValueError(f"pool must be 'mean' or 'max'. Received: pool={pool!r}")


def strongest_channel(channel_weights):
    """A variant: keep only each image's channel with the largest weight (weight 1),
    so the map is that channel's activation map. (B, K) -> (B, K) one-hot."""
    channel_weights = np.asarray(channel_weights, dtype=np.float32)
    one_hot = np.zeros_like(channel_weights)
    one_hot[np.arange(len(channel_weights)), channel_weights.argmax(axis=1)] = 1.0
    return one_hot


def channel_weights(result, context):
    """The registry's rule: the gradients pooled with the context's pooling (mean or max)."""
    return gradcam_weights(result.activations, result.gradients, pool=context.pool)


METHOD = Method(
    "gradcam",
    "Grad-CAM: channel weights = spatially pooled gradients of the class score",
    PAPER,
    GRADIENT_NEEDS,
    channel_weights=channel_weights,
    volumes=True,
)
