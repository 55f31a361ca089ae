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


# Gradient images: 0.1 of the image's range per standard deviation, so +-5 standard deviations
# span black to white (the convention of Keras's and pytorch-grad-cam's deprocess_image).
GRADIENT_SPREAD = 0.1


def gradient_image(gradient, spread=GRADIENT_SPREAD):
    """An (H, W[, C]) gradient as a float image in [0, 1] for display: centred at 0.5, with
    `spread` per standard deviation, clipped. Unlike deprocess_image, the centre is zero, not the
    mean, and the deviation is measured from zero: mid-grey means "no gradient", brighter
    positive, darker negative. A gradient that is zero everywhere gives a flat mid-grey image."""
    gradient = np.nan_to_num(np.asarray(gradient, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    deviation = float(np.sqrt(np.mean(np.square(gradient)))) if gradient.size else 0.0
    if deviation <= 0.0:
        return np.full(gradient.shape, 0.5, dtype=np.float32)
    return np.clip(0.5 + spread * gradient / deviation, 0.0, 1.0).astype(np.float32)


def gray(gradient):
    """An (H, W, C) gradient as one channel: the mean over colours (signs kept)."""
    return np.asarray(gradient, dtype=np.float32).mean(axis=-1)


def to_uint8(image01):
    return np.clip(np.rint(np.asarray(image01, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def _fit(rgb, max_side):
    height, width = rgb.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale == 1.0:
        return rgb
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def panel(cells, captions, max_side=384, gap=4):
    """Images side by side, each scaled to the same size (longer side at most `max_side`) with
    its caption (one or more lines) drawn beneath in a scalable font. cells: uint8 RGB arrays of
    one shape; returns one uint8 RGB image."""
    from PIL import Image, ImageDraw, ImageFont

    if not cells or len(cells) != len(captions):
        raise ValueError(f"need one caption per cell. Received: {len(cells)} cells, {len(captions)} captions")
    fitted = [_fit(cell, max_side) for cell in cells]
    height, width = fitted[0].shape[:2]
    font_size = max(11, min(22, width // 16))
    font = ImageFont.load_default(size=font_size)
    lines = max(caption.count("\n") + 1 for caption in captions)
    strip = lines * (font_size + 4) + 6
    canvas = Image.new("RGB", (len(cells) * width + (len(cells) - 1) * gap, height + strip), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (cell, caption) in enumerate(zip(fitted, captions)):
        x = k * (width + gap)
        canvas.paste(Image.fromarray(cell), (x, 0))
        for row, text in enumerate(caption.split("\n")):
            while len(text) > 1 and draw.textlength(text, font=font) > width - 6:
                text = text[:-2] + "\u2026"  # shorten to fit the cell
            draw.text((x + 3, height + 3 + row * (font_size + 4)), text, fill="black", font=font)
    return np.asarray(canvas)
