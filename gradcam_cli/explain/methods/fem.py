"""FEM, the Feature Explanation Method (Fuad et al., "Features Understanding in 3D CNNs for
Actions Recognition in Video", IPTA 2020; hal-02963298): gradient-free and class-agnostic, the
channels' unusually strong responses, each weighted by its channel's mean.

For an image's activations A (h, w, K), per channel k, over the positions:

    mu_k = mean_ij A^k_ij,  sigma_k = std_ij A^k_ij        (population std, ddof 0)
    M^k_ij = 1 if A^k_ij > mu_k + k_sigma sigma_k else 0    the k-sigma rule, k_sigma = 2
    map = sum_k mu_k M^k                                    before the final ReLU (explain/compute.py)

Our choices, each named:

- The rule is the paper's: a strict >, the population std, k_sigma = 2.
- `fem_weights`: 'channel-mean' (the default, the paper's and the reference code's), the binary
  maps weighted by the channel means, sum_k mu_k M^k; or 'fraction-above', pytorch-grad-cam's
  (fem.py): the activations weighted by the fraction of positions above the threshold,
  sum_k mean_ij(M^k) A^k (docs/methods.md#fem).
- The map is not divided by its maximum here: every map is normalised when drawn. A constant
  channel (sigma 0) has no position above its mean and adds nothing. Computed in float64.

How the reference code, xplique and pytorch-grad-cam differ: docs/methods.md#fem.
"""

import numpy as np

from gradcam_cli.explain.methods.method import Method, spatial_axes
from gradcam_cli.explain.methods.options import LibraryChoice, MethodOption

K_SIGMA = 2.0
# What weights a channel: its mean times its binary map (the paper), or the fraction of its
# positions above the threshold times its activations (pytorch-grad-cam).
WEIGHTS = MethodOption("fem_weights", str, "channel-mean", "channel-mean: each channel's binary map of responses "
                       "above mean + 2 std, weighted by the channel's mean (the paper); fraction-above: each "
                       "channel's activations, weighted by the fraction of its positions above that threshold "
                       "(pytorch-grad-cam)", choices=("channel-mean", "fraction-above"))


def contributions(result, context):
    """FEM's channel parts of the map of an batch.BatchResult, (B, h, w, K) float32; the
    context's option fem_weights chooses the weighting."""
    return fem_contributions(result.activations, weights=context.options["fem_weights"])


def fem_contributions(activations, k=K_SIGMA, weights=WEIGHTS.default):
    """Each channel's part of the map: mu_k [A^k > mu_k + k sigma_k] ('channel-mean'), or
    mean_ij[A^k > mu_k + k sigma_k] A^k ('fraction-above'): (B, h, w, K) float32."""
    if weights not in WEIGHTS.choices:
        raise ValueError(f"fem_weights must be one of {', '.join(WEIGHTS.choices)}. Received: fem_weights={weights!r}")
    activations = np.asarray(activations, dtype=np.float64)
    space = spatial_axes(activations)  # over every position: a volume's three axes
    means = activations.mean(axis=space, keepdims=True)
    deviations = activations.std(axis=space, keepdims=True)
    above = activations > means + k * deviations
    if weights == "fraction-above":
        return (above.mean(axis=space, keepdims=True) * activations).astype(np.float32)
    return (above * means).astype(np.float32)


METHOD = Method(
    "fem",
    "FEM: each channel's responses above mean + 2 std, weighted by the channel's mean (gradient-free)",
    "Fuad et al. 2020, Features Understanding in 3D CNNs for Actions Recognition in Video",
    ("activations",),
    contributions=contributions,
    options=(WEIGHTS,),
    choices=(LibraryChoice("fem_weights", "what is weighted, and by what",
                           "the binary maps, by the channel means (the paper, the reference code)",
                           {"pytorch-grad-cam": ("fraction-above", "the activations, by the fraction of positions "
                                                 "above the threshold"),
                            "tf-keras-vis": (None, "not offered")}),),
    volumes=True,
)
