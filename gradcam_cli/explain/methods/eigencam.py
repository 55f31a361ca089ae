"""Eigen-CAM (Muhammad and Yeasin, "Eigen-CAM: Class Activation Map using Principal Components",
IJCNN 2020; arXiv:2008.00299): gradient-free and class-agnostic, the first principal component
of the target layer's activations.

The activations A (h, w, K) of an image, read as hw samples of K channels (the matrix O), are
decomposed O = U S V^T, and the map is the projection onto the first right singular vector,
O v_1 (the paper's L_Eigen-CAM = O V_1), before the final ReLU (explain/compute.py). No gradient, no class score:
every class of an image gets the same map (the engine computes no gradient for it).

Our choices (pca.first_principal_component has the details):

- O is centred over the positions before the SVD; the paper does not centre.
- Sign: the map correlates positively with the mean activation (the channel mean
  (1/K) sum_k A_k); an uncorrelated map (|cos| < 1e-6) has its largest-magnitude entry positive.

How pytorch-grad-cam differs: docs/methods.md#eigen-cam.
"""

from gradcam_cli.explain.methods.method import Method
from gradcam_cli.explain.methods.pca import first_principal_component


def eigencam_map(activations):
    """The first principal component of each image's activations: (B, h, w, K) -> (B, h, w)
    float32, before the final ReLU."""
    return first_principal_component(activations)


def spatial_map(result, context):
    return eigencam_map(result.activations)


METHOD = Method(
    "eigencam",
    "Eigen-CAM: the first principal component of the activations (gradient-free, class-agnostic)",
    "Muhammad and Yeasin 2020, Eigen-CAM: Class Activation Map using Principal Components",
    ("activations",),
    spatial_map=spatial_map,
    principal=True,
    volumes=True,
)
