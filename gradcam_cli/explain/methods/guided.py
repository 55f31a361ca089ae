"""Guided Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017, Sec. 3.1): guided backpropagation's input gradient
multiplied point-wise by the Grad-CAM map upsampled to the input's resolution, so the
fine-grained gradient keeps only the region that speaks for the class."""

import numpy as np

from gradcam_cli.explain import maps


def guided_gradcam(input_gradient, small_map):
    """(H, W, C) input gradient x the (h, w) Grad-CAM map, bilinearly upsampled to (H, W) and
    scaled to [0, 1] by its maximum. Zero wherever the map is zero; zero if the map is empty."""
    input_gradient = np.asarray(input_gradient, dtype=np.float32)
    height, width = input_gradient.shape[:2]
    upsampled = maps.upsample(np.asarray(small_map, dtype=np.float32), (0, 0, width, height), (height, width))
    normalised, _ = maps.normalise(np.maximum(upsampled, 0.0))
    return input_gradient * normalised[..., None]

