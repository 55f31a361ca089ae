"""Colormaps and overlays. Maps arrive as float32 in [0, 1]; images as uint8 RGB.

The colormap is applied last, to the float map at the image's full resolution, and the blend is
done in floating point: casting to uint8 before blending darkens images (Score-CAM#19).
"""

import cv2
import numpy as np

COLORMAPS = tuple(
    sorted(name[len("COLORMAP_") :].lower() for name in dir(cv2) if name.startswith("COLORMAP_"))
)


def colorize(map01, colormap="jet"):
    """An (H, W) map in [0, 1] as an (H, W, 3) uint8 RGB heatmap."""
    try:
        code = getattr(cv2, "COLORMAP_" + colormap.upper())
    except AttributeError:
        raise ValueError(f"unknown colormap. Received: colormap={colormap!r}") from None
    levels = np.clip(np.rint(map01 * 255.0), 0, 255).astype(np.uint8)
    bgr = cv2.applyColorMap(levels, code)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # OpenCV's colormaps come out BGR


def overlay(rgb, heat_rgb, alpha=0.4):
    """Blend: (1 - alpha) * image + alpha * heatmap, computed in float, rounded once."""
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * heat_rgb.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
