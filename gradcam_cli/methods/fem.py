"""FEM, the Feature Explanation Method (Fuad et al., "Features Understanding in 3D CNNs for
Actions Recognition in Video", IPTA 2020; hal-02963298): gradient-free and class-agnostic, the
channels' unusually strong responses, each weighted by its channel's mean.

For an image's activations A (h, w, K), per channel k, over the positions:

    mu_k = mean_ij A^k_ij,  sigma_k = std_ij A^k_ij        (population std, ddof 0)
    M^k_ij = 1 if A^k_ij > mu_k + k_sigma sigma_k else 0    the k-sigma rule, k_sigma = 2
    map = sum_k mu_k M^k                                    before the pipeline's ReLU

Our choices, each named:

- The rule is the paper's, as the FEM reference code that circulates with it computes it
  (compute_binary_maps: a strict >, numpy's std; aggregate_binary_maps: the channel means as
  weights of the BINARY maps) and as
  xplique documents it (deel-ai/xplique, attributions/fem.py: phi = sum_k mu_k M_k; its
  documentation writes >=). k_sigma = 2, the default of both and of pytorch-grad-cam.
- pytorch-grad-cam's FEM (pytorch_grad_cam/fem.py) computes something else: it weights the
  ACTIVATIONS by each mask's mean, sum_k mean_ij(M^k) A^k (the fraction of positions above the
  threshold times the channel). We follow the paper; both keep the same positions per channel.
- The reference code divides the map by its maximum; the pipeline normalises every map the same
  way, so that is left to it. A constant channel (sigma 0) has no position above its mean and
  adds nothing. Computed in float64.
"""

import numpy as np

K_SIGMA = 2.0


def fem_map(activations, k=K_SIGMA):
    """sum_k mu_k [A^k > mu_k + k sigma_k] for each sample: (B, h, w, K) -> (B, h, w) float32."""
    activations = np.asarray(activations, dtype=np.float64)
    means = activations.mean(axis=(1, 2), keepdims=True)
    deviations = activations.std(axis=(1, 2), keepdims=True)
    masks = activations > means + k * deviations
    return (masks * means).sum(axis=3).astype(np.float32)


def fem_contributions(activations, k=K_SIGMA):
    """Each channel's part of the map, mu_k [A^k > mu_k + k sigma_k]: (B, h, w, K) float32."""
    activations = np.asarray(activations, dtype=np.float64)
    means = activations.mean(axis=(1, 2), keepdims=True)
    deviations = activations.std(axis=(1, 2), keepdims=True)
    return ((activations > means + k * deviations) * means).astype(np.float32)
