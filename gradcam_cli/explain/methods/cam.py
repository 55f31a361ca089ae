"""CAM (Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016).

How other implementations differ: docs/methods.md#cam.
"""

import numpy as np

from gradcam_cli.explain.methods.method import Method


def cam_weights(classifier_kernel, classes):
    """Channel weights w_k^c (Eq. 2, M_c = sum_k w_k^c f_k): the classifier kernel's column of each
    image's class. `classifier_kernel` (K, C) follows global average pooling, so no gradient is
    needed; with the logit as score, Grad-CAM's weights are these divided by H*W."""
    kernel = np.asarray(classifier_kernel, dtype=np.float32)
    return kernel[:, np.asarray(classes, dtype=np.int64)].T


def channel_weights(result, context):
    """The registry's rule: the classifier kernel's column of each image's class."""
    return cam_weights(context.classifier_kernel, result.classes)


METHOD = Method(
    "cam",
    "CAM: channel weights = the linear classifier's kernel column for the class",
    "Zhou et al. 2016, Learning Deep Features for Discriminative Localization",
    ("activations", "classifier"),
    channel_weights=channel_weights,
    volumes=True,
)
