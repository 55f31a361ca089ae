"""CAM (Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016).

How other implementations differ: docs/methods.md#cam.
"""

import numpy as np


def cam_weights(classifier_kernel, classes):
    """Channel weights w_k^c (Eq. 2, M_c = sum_k w_k^c f_k): the classifier kernel's column of each
    image's class. `classifier_kernel` (K, C) follows global average pooling, so no gradient is
    needed; with the logit as score, Grad-CAM's weights are these divided by H*W."""
    kernel = np.asarray(classifier_kernel, dtype=np.float32)
    return kernel[:, np.asarray(classes, dtype=np.int64)].T
