"""Grad-CAM++ (Chattopadhyay et al., "Grad-CAM++: Generalized Gradient-based Visual Explanations
for Deep Convolutional Networks", WACV 2018; arXiv:1710.11063).

Grad-CAM++ weights each channel by a weighted sum of its positive gradients,
w_k = sum_ij alpha^k_ij relu(dY / dA^k_ij), where the pixel weights alpha come from the second
and third derivatives of Y. With the exponential score Y = exp(S) (S the class logit) those
higher derivatives are powers of the first derivative g = dS/dA times exp(S), and the exp(S)
cancels from the alphas: the closed form of the paper's Eq. 19 (below). The exp(S) left in
dY/dA = exp(S) g is one positive number per image, so it is dropped: it scales a map, and the
pipeline normalises maps by their maximum.

How pytorch-grad-cam, tf-keras-vis and the authors' code differ: docs/methods.md#grad-cam-gradcam.
"""

import numpy as np


def gradcam_plus_plus_alphas(activations, gradients):
    """The pixel weights of Eq. 19, alpha^k_ij = g^2 / (2 g^2 + sum_ab A^k_ab g^3), where g =
    dS / dA^k_ij; (B, h, w, K) x (B, h, w, K) -> (B, h, w, K) float64.

    The sum over positions a, b is per sample and per channel. Where the denominator is exactly
    0 (every position whose gradient is 0, and the rare g = -2 / sum_ab A^k_ab) alpha is 0: no
    eps is added, so nothing depends on the gradients' scale. Computed in float64: g^3 of small
    float32 gradients underflows float32.
    """
    activations = np.asarray(activations, dtype=np.float64)
    gradients = np.asarray(gradients, dtype=np.float64)
    squared = gradients * gradients
    denominator = 2.0 * squared + activations.sum(axis=(1, 2), keepdims=True) * squared * gradients
    return np.divide(squared, denominator, out=np.zeros_like(squared), where=denominator != 0)


def gradcam_plus_plus_weights(activations, gradients):
    """Channel weights w_k = sum_ij alpha^k_ij relu(dS / dA^k_ij), shape (B, K) float32, with the
    alphas of gradcam_plus_plus_alphas; pooled per sample, never across the batch."""
    gradients = np.asarray(gradients, dtype=np.float64)
    alphas = gradcam_plus_plus_alphas(activations, gradients)
    return (alphas * np.maximum(gradients, 0.0)).sum(axis=(1, 2)).astype(np.float32)
