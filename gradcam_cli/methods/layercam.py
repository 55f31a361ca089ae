"""LayerCAM (Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for
Localization", IEEE TIP 2021).

Each position of each channel gets its own weight, the positive part of its gradient
(Eq. 5: w^k_ij = relu(dS / dA^k_ij)), and the map is the channel sum of the weighted
activations (Eq. 6: sum_k w^k_ij A^k_ij); the pipeline applies the final ReLU. S is the class
score before the softmax.

tf-keras-vis's Layercam (keisen/tf-keras-vis, tf_keras_vis/layercam.py: Gradcam with
`gradient_modifier=relu` and its own `_calculate_cam`, sum(A * relu(g), axis=-1)) and
pytorch-grad-cam's LayerCAM (pytorch_grad_cam/layer_cam.py: relu(grads) * activations summed over
channels) compute the same; both differentiate the score they are given (the logit when the
output activation is made linear).
"""

import numpy as np


def layercam_map(activations, gradients):
    """sum_k relu(dS / dA^k_ij) A^k_ij for each sample: (B, h, w, K) x (B, h, w, K) -> (B, h, w)
    float32, before the final ReLU."""
    activations = np.asarray(activations, dtype=np.float32)
    gradients = np.asarray(gradients, dtype=np.float32)
    return np.einsum("bhwk,bhwk->bhw", activations, np.maximum(gradients, 0.0))


def layercam_contributions(activations, gradients):
    """Each channel's part of the map, relu(dS / dA^k_ij) A^k_ij: (B, h, w, K) float32 (their
    channel sum is layercam_map; eigen smoothing takes their first principal component)."""
    activations = np.asarray(activations, dtype=np.float32)
    return activations * np.maximum(np.asarray(gradients, dtype=np.float32), 0.0)
