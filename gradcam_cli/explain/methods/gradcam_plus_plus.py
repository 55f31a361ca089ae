"""Grad-CAM++ (Chattopadhyay et al., "Grad-CAM++: Generalized Gradient-based Visual Explanations
for Deep Convolutional Networks", WACV 2018; arXiv:1710.11063).

Grad-CAM++ weights each channel by a weighted sum of its positive gradients,
w_k = sum_ij alpha^k_ij relu(dY / dA^k_ij), where the pixel weights alpha come from the second
and third derivatives of Y. With the exponential score Y = exp(S) (S the class logit) those
higher derivatives are powers of the first derivative g = dS/dA times exp(S), and the exp(S)
cancels from the alphas: the closed form of the paper's Eq. 19 (below). The exp(S) left in
dY/dA = exp(S) g is one positive number per image, so it is dropped: it scales a map, and the
drawn map is normalised by its maximum.

Our choices, each named (each option's value per library: docs/methods.md#grad-cam-gradcam):

- `gradcampp_alphas`: 'paper' (the default), Eq. 19 with no eps, alpha 0 where its denominator
  is 0; 'paper-eps', pytorch-grad-cam's (grad_cam_plusplus.py): 1e-6 added to the denominator,
  then alpha 0 where g == 0 (an absolute eps: where g^2 is near 1e-6, as in deep layers, it
  shrinks the alphas, and the weights depend on the gradients' scale); 'normalised',
  tf-keras-vis's (gradcam_plus_plus.py, after the authors' code): each channel's alphas divided
  by their sum over the positions, the sum taken as 1 where it is 0. tf-keras-vis also keeps
  exp(S) in the weights (w_k = exp(S) sum_ij relu(g) alpha-hat); we leave that factor out with
  every rule: a positive constant per image that the drawn map's normalisation removes, and inf
  in float32 for S > 88.7.

How pytorch-grad-cam, tf-keras-vis and the authors' code differ: docs/methods.md#grad-cam-gradcam.
"""

import numpy as np

from gradcam_cli.explain.methods.method import GRADIENT_NEEDS, Method, spatial_axes
from gradcam_cli.explain.methods.options import LibraryChoice, MethodOption

# How the pixel weights are computed: the paper's closed form, pytorch-grad-cam's (eps 1e-6) or
# tf-keras-vis's (normalised to sum 1 per channel).
ALPHAS = MethodOption("gradcampp_alphas", str, "paper", "paper: the pixel weights of the paper's Eq. 19, "
                      "g^2 / (2 g^2 + sum A g^3), no eps; paper-eps: the same with 1e-6 added to the denominator "
                      "(pytorch-grad-cam; shrinks the alphas where g^2 is near 1e-6); normalised: each channel's "
                      "alphas divided by their sum over the positions (tf-keras-vis, the authors' code)",
                      choices=("paper", "paper-eps", "normalised"))
# pytorch-grad-cam's eps in the alphas' denominator (grad_cam_plusplus.py).
PGC_EPS = 1e-6


def channel_weights(result, context):
    """Grad-CAM++'s channel weights of an batch.BatchResult, (B, K) float32; the context's option
    gradcampp_alphas chooses the alphas' rule."""
    return gradcam_plus_plus_weights(result.activations, result.gradients, rule=context.options["gradcampp_alphas"])


def gradcam_plus_plus_alphas(activations, gradients, rule=ALPHAS.default):
    """The pixel weights of Eq. 19, alpha^k_ij = g^2 / (2 g^2 + sum_ab A^k_ab g^3), where g =
    dS / dA^k_ij; (B, h, w, K) x (B, h, w, K) -> (B, h, w, K) float64.

    The sum over positions a, b is per sample and per channel. Where the denominator is exactly
    0 (every position whose gradient is 0, and the rare g = -2 / sum_ab A^k_ab) alpha is 0: no
    eps is added, so nothing depends on the gradients' scale. Computed in float64: g^3 of small
    float32 gradients underflows float32. `rule` 'paper-eps' adds PGC_EPS to the denominator
    (pytorch-grad-cam); 'normalised' divides each channel's alphas by their sum (tf-keras-vis).
    """
    if rule not in ALPHAS.choices:
        raise ValueError(f"gradcampp_alphas must be one of {', '.join(ALPHAS.choices)}. "
                         f"Received: gradcampp_alphas={rule!r}")
    activations = np.asarray(activations, dtype=np.float64)
    gradients = np.asarray(gradients, dtype=np.float64)
    squared = gradients * gradients
    space = spatial_axes(gradients)  # every spatial axis: (1, 2), or a volume's (1, 2, 3)
    denominator = 2.0 * squared + activations.sum(axis=space, keepdims=True) * squared * gradients
    if rule == "paper-eps":  # pytorch-grad-cam: aij = g^2 / (... + eps), then 0 where g == 0
        denominator = denominator + PGC_EPS
        alphas = np.divide(squared, denominator, out=np.zeros_like(squared), where=denominator != 0)
        return np.where(gradients != 0, alphas, 0.0)
    alphas = np.divide(squared, denominator, out=np.zeros_like(squared), where=denominator != 0)
    if rule == "normalised":  # tf-keras-vis: alphas / sum_ij alphas, a zero sum taken as 1
        totals = alphas.sum(axis=space, keepdims=True)
        alphas = alphas / np.where(totals == 0, 1.0, totals)
    return alphas


def gradcam_plus_plus_weights(activations, gradients, rule=ALPHAS.default):
    """Channel weights w_k = sum_ij alpha^k_ij relu(dS / dA^k_ij), shape (B, K) float32, with the
    alphas of gradcam_plus_plus_alphas (`rule`); pooled per sample, never across the batch."""
    gradients = np.asarray(gradients, dtype=np.float64)
    alphas = gradcam_plus_plus_alphas(activations, gradients, rule)
    return (alphas * np.maximum(gradients, 0.0)).sum(axis=spatial_axes(gradients)).astype(np.float32)


METHOD = Method(
    "gradcam++",
    "Grad-CAM++: channel weights = positive gradients summed with closed-form pixel weights (alphas)",
    "Chattopadhyay et al. 2018, Grad-CAM++: Generalized Gradient-based Visual Explanations for Deep "
    "Convolutional Networks",
    GRADIENT_NEEDS,
    channel_weights=channel_weights,
    options=(ALPHAS,),
    choices=(LibraryChoice("gradcampp_alphas", "how the pixel weights (alphas) are computed",
                           "the paper's closed form (Eq. 19), no eps, not normalised",
                           {"pytorch-grad-cam": ("paper-eps", "the closed form with 1e-6 added to its denominator, 0 "
                                                 "where g = 0"),
                            "tf-keras-vis": ("normalised", "the closed form, each channel's alphas divided by their "
                                             "sum over the positions; it also multiplies the weights by exp(S), left "
                                             "out here: a positive factor per image that the drawn map's "
                                             "normalisation removes (inf in float32 for S > 88.7)")}),),
    volumes=True,
)
