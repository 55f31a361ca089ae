"""HiResCAM (Draelos and Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of
convolutional neural networks", arXiv:2011.08891, 2020).

Grad-CAM averages each channel's gradients over the positions before weighting the activations;
HiResCAM keeps them where they are: the map is the channel sum of the element-wise product of
the gradients and the activations,

    map_ij = sum_k (dS / dA^k_ij) A^k_ij

S the class score before the softmax, with the final ReLU (explain/compute.py) after. With a head of global
average pooling and one dense layer, dS/dA^k_ij = W_kc / (h w) everywhere, and HiResCAM is CAM
divided by h w (the paper's proof that it generalises CAM).

pytorch-grad-cam computes the same: docs/methods.md#hirescam.
"""

import numpy as np

from gradcam_cli.explain.methods.method import GRADIENT_NEEDS, Method


def hirescam_contributions(activations, gradients):
    """Each channel's part of the map, g^k_ij A^k_ij: (B, h, w, K) float32."""
    return np.asarray(activations, dtype=np.float32) * np.asarray(gradients, dtype=np.float32)


def contributions(result, context):
    return hirescam_contributions(result.activations, result.gradients)


METHOD = Method(
    "hirescam",
    "HiResCAM: gradients times activations, element by element, summed over channels (no pooling)",
    "Draelos and Carin 2020, Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional "
    "neural networks",
    GRADIENT_NEEDS,
    contributions=contributions,
    volumes=True,
)
