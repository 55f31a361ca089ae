"""Seg-Eigen-CAM (Chung and Ying 2025, "Seg-Eigen-CAM: Eigen-Value-Based Visual Explanations for
Semantic Segmentation Models", Applied Sciences 15(13) 7562), for segment targets above all.

With g = dS / dA (S the target's score: for a segmenter, the sum of a class's logits over a
region, explain/targets.py), the map is

    X = |g| o A                          element-wise, (h, w, K): each position's own gradient
                                         weighting (Eq. 10), both signs of g counting
    M = X as hw samples of K channels, centred over the positions
    M = U S V^T,  map = M V[:, 0]        the first principal component (Eq. 11-12)
    flip the map when |min| > |max|      the paper's sign correction (Eq. 13): the salient side
                                         (the larger magnitude) is made positive

then the engine's final ReLU. Centring over the positions is pytorch-grad-cam's choice (its
get_2d_projection_with_sign_correction), as for Eigen-CAM here (pca.py); an image whose weighted
activations are constant over the positions gets a zero map. Computed in float64, per image.
"""

import numpy as np

from gradcam_cli.explain.methods.method import GRADIENT_NEEDS, Method
from gradcam_cli.explain.methods.pca import finite_features


def segeigencam_map(activations, gradients):
    """(B, h, w, K) activations and gradients -> (B, h, w) float32 Seg-Eigen-CAM maps, before the
    final ReLU."""
    weighted = finite_features(np.abs(np.asarray(gradients, np.float64)) * np.asarray(activations, np.float64))
    batch, positions, channels = weighted.shape[0], weighted.shape[1:-1], weighted.shape[-1]
    samples = weighted.reshape(batch, int(np.prod(positions)), channels)  # a volume's d1 d2 d3 positions too
    centred = samples - samples.mean(axis=1, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    projections = np.einsum("bnk,bk->bn", centred, vt[:, 0, :])
    flip = np.abs(projections.min(axis=1)) > np.abs(projections.max(axis=1))
    projections = np.where(flip[:, None], -projections, projections)
    return projections.reshape((batch,) + positions).astype(np.float32)


def spatial_map(result, context):
    return segeigencam_map(result.activations, result.gradients)


METHOD = Method(
    "segeigencam",
    "Seg-Eigen-CAM: the first principal component of |gradients| times activations, its larger side positive",
    "Chung and Ying 2025, Seg-Eigen-CAM: Eigen-Value-Based Visual Explanations for Semantic Segmentation Models",
    GRADIENT_NEEDS,
    spatial_map=spatial_map,
    principal=True,
    volumes=True,
)
