"""Eigen-Grad-CAM (pytorch-grad-cam's EigenGradCAM, jacobgil/pytorch-grad-cam,
pytorch_grad_cam/eigen_grad_cam.py; no paper of its own): Eigen-CAM (Muhammad and Yeasin 2020,
arXiv:2008.00299) applied to the gradient-weighted activations.

With g = dS / dA (S the class score before the softmax), the map is the first principal
component of the element-wise products g o A (h, w, K) of an image, read as hw samples of K
channels: the centred samples projected onto their first principal axis, before the final
ReLU. Unlike Eigen-CAM it depends on the class, through g.

Our choices (pca.first_principal_component has the details): the products are centred over the
positions before the SVD; the sign makes the map correlate positively with the channel sum
sum_k g o A (the HiResCAM map, hirescam.py).

How pytorch-grad-cam differs: docs/methods.md#eigen-grad-cam.
"""

import numpy as np

from gradcam_cli.explain.methods.method import GRADIENT_NEEDS, PYTORCH_GRAD_CAM, Method
from gradcam_cli.explain.methods.pca import first_principal_component


def eigengradcam_map(activations, gradients):
    """The first principal component of each image's g o A: (B, h, w, K) x (B, h, w, K) ->
    (B, h, w) float32, before the final ReLU."""
    products = np.asarray(activations, dtype=np.float64) * np.asarray(gradients, dtype=np.float64)
    return first_principal_component(products)


def spatial_map(result, context):
    return eigengradcam_map(result.activations, result.gradients)


METHOD = Method(
    "eigengradcam",
    "Eigen-Grad-CAM: the first principal component of gradients times activations",
    PYTORCH_GRAD_CAM + ", EigenGradCAM",
    GRADIENT_NEEDS,
    spatial_map=spatial_map,
    principal=True,
    volumes=True,
)
