"""LayerCAM (Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for
Localization", IEEE TIP 2021).

Each position of each channel gets its own weight, the positive part of its gradient
(Eq. 5: w^k_ij = relu(dS / dA^k_ij)), and the map is the channel sum of the weighted
activations (Eq. 6: sum_k w^k_ij A^k_ij); explain/compute.py applies the final ReLU. S is the class
score before the softmax.

pytorch-grad-cam and tf-keras-vis compute the same: docs/methods.md#layercam.
"""

import numpy as np

from gradcam_cli.explain.methods.method import GRADIENT_NEEDS, Method


def layercam_contributions(activations, gradients):
    """Each channel's part of the map, relu(dS / dA^k_ij) A^k_ij: (B, h, w, K) float32 (their
    channel sum is the map; eigen smoothing takes their first principal component)."""
    activations = np.asarray(activations, dtype=np.float32)
    return activations * np.maximum(np.asarray(gradients, dtype=np.float32), 0.0)


def contributions(result, context):
    return layercam_contributions(result.activations, result.gradients)


METHOD = Method(
    "layercam",
    "LayerCAM: each activation weighted by its own positive gradient, summed over channels",
    "Jiang et al. 2021, LayerCAM: Exploring Hierarchical Class Activation Maps for Localization",
    GRADIENT_NEEDS,
    contributions=contributions,
    volumes=True,
)
