"""Random-CAM (pytorch-grad-cam's RandomCAM, jacobgil/pytorch-grad-cam,
pytorch_grad_cam/random_cam.py): channel weights drawn uniformly from [-1, 1], the baseline
against which evaluations (deletion, insertion, pointing game) measure a real method. No
gradient, no class score.

    w_k ~ U(-1, 1),   map = sum_k w_k A^k        (the final ReLU (explain/compute.py) after)

Our choice of seed: the weights depend on the number of channels K alone, drawn from
numpy's default generator seeded with (SEED, K), SEED = 0: every image, every class and every
run gets the same weights at a layer of K channels. So a batch equals its images one by one, a
nested model equals the flat one, and two runs give the same maps; the map is still random with
respect to what the model computes. We do not seed from the batch position (a batch would differ
from its images one by one) nor from a hash of the activations' bytes (a last-bit difference
between a batch of 3 and of 1 would give unrelated weights).

How pytorch-grad-cam differs: docs/methods.md#random-cam.
"""

import numpy as np

from gradcam_cli.explain.methods.method import PYTORCH_GRAD_CAM, Method

SEED = 0


def randomcam_weights(activations):
    """The same U(-1, 1) weights for every image at a layer of K channels: (B, h, w, K) ->
    (B, K) float32."""
    activations = np.asarray(activations)
    channels = activations.shape[-1]
    weights = np.random.default_rng((SEED, channels)).uniform(-1.0, 1.0, size=channels)
    return np.broadcast_to(weights.astype(np.float32), (activations.shape[0], channels)).copy()


def channel_weights(result, context):
    return randomcam_weights(result.activations)


METHOD = Method(
    "randomcam",
    "Random-CAM: channel weights uniform in [-1, 1], fixed per channel count (a baseline)",
    PYTORCH_GRAD_CAM + ", RandomCAM",
    ("activations",),
    channel_weights=channel_weights,
    volumes=True,
)
