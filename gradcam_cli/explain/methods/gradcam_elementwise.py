"""Element-wise Grad-CAM (pytorch-grad-cam's GradCAMElementWise, jacobgil/pytorch-grad-cam,
pytorch_grad_cam/grad_cam_elementwise.py; no paper of its own): HiResCAM (Draelos and Carin 2020,
arXiv:2011.08891) with a ReLU on each product before the channel sum,

    map_ij = sum_k relu((dS / dA^k_ij) A^k_ij)

S the class score before the softmax. Where HiResCAM lets a channel's negative evidence cancel
another's positive evidence at a position, this keeps only the positive contributions; the map
is therefore never negative (the final ReLU (explain/compute.py) changes nothing). LayerCAM (layercam.py) is the
neighbour that clips the gradient instead: relu(g) A, which differs where A < 0.

Other implementations: docs/methods.md#element-wise-grad-cam.
"""

import numpy as np

from gradcam_cli.explain.methods.method import GRADIENT_NEEDS, PYTORCH_GRAD_CAM, Method


def gradcam_elementwise_contributions(activations, gradients):
    """Each channel's part of the map, relu(g^k_ij A^k_ij): (B, h, w, K) float32."""
    return np.maximum(np.asarray(activations, dtype=np.float32) * np.asarray(gradients, dtype=np.float32), 0.0)


def contributions(result, context):
    return gradcam_elementwise_contributions(result.activations, result.gradients)


METHOD = Method(
    "gradcam-elementwise",
    "element-wise Grad-CAM: the positive part of gradients times activations, summed over channels",
    PYTORCH_GRAD_CAM + ", GradCAMElementWise",
    GRADIENT_NEEDS,
    contributions=contributions,
    volumes=True,
)
