"""FEM, the Feature Explanation Method (Fuad et al., "Features Understanding in 3D CNNs for
Actions Recognition in Video", IPTA 2020; hal-02963298): gradient-free and class-agnostic, the
channels' unusually strong responses, each weighted by its channel's mean.

For an image's activations A (h, w, K), per channel k, over the positions:

    mu_k = mean_ij A^k_ij,  sigma_k = std_ij A^k_ij        (population std, ddof 0)
    M^k_ij = 1 if A^k_ij > mu_k + k_sigma sigma_k else 0    the k-sigma rule, k_sigma = 2
    map = sum_k mu_k M^k                                    before the pipeline's ReLU

Our choices, each named:

- The rule is the paper's: a strict >, the population std, the channel means as weights of the
  binary maps; k_sigma = 2.
- The map is not divided by its maximum here: the pipeline normalises every map. A constant
  channel (sigma 0) has no position above its mean and adds nothing. Computed in float64.

How the reference code, xplique and pytorch-grad-cam differ: docs/methods.md#fem.
"""

import numpy as np

K_SIGMA = 2.0



def fem_contributions(activations, k=K_SIGMA):
    """Each channel's part of the map, mu_k [A^k > mu_k + k sigma_k]: (B, h, w, K) float32."""
    activations = np.asarray(activations, dtype=np.float64)
    means = activations.mean(axis=(1, 2), keepdims=True)
    deviations = activations.std(axis=(1, 2), keepdims=True)
    return ((activations > means + k * deviations) * means).astype(np.float32)
