"""XGrad-CAM (Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation
of CNNs", BMVC 2020; arXiv:2008.02312).

The channel weights that best satisfy the paper's two axioms, sensitivity and conservation, are
the gradients averaged with the channel's own normalised activations as pixel weights:

    w_k = sum_ij (A^k_ij / sum_ab A^k_ab) dS / dA^k_ij,    map = sum_k w_k A^k

S the class score before the softmax, with the final ReLU (explain/compute.py) after the weighted sum. Where
Grad-CAM weights every position equally (1 / hw), XGrad-CAM weights each by its share of the
channel's activation.

Our choices, each named:

- eps: the denominator is sum_ab A^k_ab + 1e-7, added whatever the sum's sign. A channel whose
  activations sum to exactly -1e-7 would divide by zero: its weight is 0 there. A channel that is
  zero everywhere (common after a ReLU) has a zero numerator and weight 0.
- The paper assumes non-negative activations (after a ReLU). On a layer with signed
  activations a channel whose sum is near zero gets a large weight of either sign; nothing
  guards against it.
- Computed in float64, pooled per sample over the positions only.

pytorch-grad-cam's choices: docs/methods.md#xgrad-cam.
"""

import numpy as np

from gradcam_cli.explain.methods.method import GRADIENT_NEEDS, Method, spatial_axes

EPS = 1e-7


def xgradcam_weights(activations, gradients):
    """Channel weights w_k = sum_ij A^k_ij g^k_ij / (sum_ij A^k_ij + 1e-7): (B, h, w, K) x
    (B, h, w, K) -> (B, K) float32."""
    activations = np.asarray(activations, dtype=np.float64)
    gradients = np.asarray(gradients, dtype=np.float64)
    space = spatial_axes(activations)  # every spatial axis (a volume's three)
    numerator = (activations * gradients).sum(axis=space)
    denominator = activations.sum(axis=space) + EPS
    weights = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)
    return weights.astype(np.float32)


def channel_weights(result, context):
    return xgradcam_weights(result.activations, result.gradients)


METHOD = Method(
    "xgradcam",
    "XGrad-CAM: channel weights = gradients averaged with the channel's normalised activations as pixel weights",
    "Fu et al. 2020, Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs",
    GRADIENT_NEEDS,
    channel_weights=channel_weights,
    volumes=True,
)
