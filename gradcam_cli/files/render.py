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


def outside_box(picture, rgb, box):
    """`picture` inside the box (x0, y0, x1, y1) and the original image `rgb` outside it."""
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = box
    if (x0, y0, x1, y1) == (0, 0, width, height):
        return picture
    result = rgb.copy()
    result[y0:y1, x0:x1] = picture[y0:y1, x0:x1]
    return result


def map_overlay(rgb, colored, box, alpha):
    """The coloured map blended onto the image inside the model's view `box`; outside it (what a
    centre crop cut away, where there is no map) the image is left as it is."""
    return outside_box(overlay(rgb, colored, alpha), rgb, box)


def gradient_picture(gradient, box, image_shape):
    """A gradient (H, W[, C]) drawn centred at mid-grey, resized onto the image: uint8, RGB for
    a colour gradient (a 1-channel model's gradient drawn in grey), 2-D for a 2-D one."""
    from gradcam_cli.explain.maps import resize_into_box

    picture = to_uint8(resize_into_box(gradient_image(gradient), box, image_shape, fill=0.5))
    if picture.ndim == 3 and picture.shape[2] == 1:
        picture = np.repeat(picture, 3, axis=2)
    return picture


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


def _fit_into(rgb, width, height):
    """`rgb` scaled to fit a width x height box (aspect kept), centred on white."""
    scale = min(width / rgb.shape[1], height / rgb.shape[0])
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, size, interpolation=interpolation)
    box = np.full((height, width, 3), 255, dtype=np.uint8)
    x, y = (width - size[0]) // 2, (height - size[1]) // 2
    box[y : y + size[1], x : x + size[0]] = resized
    return box


COLORBAR_HEIGHT = 34


def grid(rows, captions, max_side=320, gap=4, colormap=None):
    """A figure of cells in rows and columns, each with its caption (one or more lines) beneath in
    a scalable font. rows: lists of uint8 RGB cells of any size, or None for a cell that does not
    apply (drawn as a grey box saying so); every cell is scaled into one box, the first cell's
    shape with its longer side `max_side`. captions: strings, same shape as rows. colormap: draw
    a colour bar at the bottom (0 to each map's maximum). Returns a uint8 RGB image of
    len(columns) * (box width + gap) - gap by len(rows) * (box height + caption + gap) - gap
    (+ the bar) pixels."""
    from PIL import Image, ImageDraw, ImageFont

    if not rows or any(len(row) != len(rows[0]) for row in rows) or [len(r) for r in rows] != [len(c) for c in captions]:
        raise ValueError("rows and captions must be equally long lists of equally long lists")
    first = rows[0][0]
    scale = max_side / max(first.shape[:2])
    width, height = max(1, round(first.shape[1] * scale)), max(1, round(first.shape[0] * scale))
    font_size = max(11, min(20, width // 14))
    font = ImageFont.load_default(size=font_size)
    lines = max(caption.count("\n") + 1 for row in captions for caption in row)
    strip = lines * (font_size + 4) + 6
    columns = len(rows[0])
    bar = COLORBAR_HEIGHT if colormap else 0
    canvas = Image.new("RGB", (columns * (width + gap) - gap, len(rows) * (height + strip + gap) - gap + bar), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (row, row_captions) in enumerate(zip(rows, captions)):
        y = r * (height + strip + gap)
        for k, (cell, caption) in enumerate(zip(row, row_captions)):
            x = k * (width + gap)
            if cell is None:
                draw.rectangle((x, y, x + width - 1, y + height - 1), fill=(225, 225, 225))
                draw.text((x + width // 2, y + height // 2), "not applicable", fill=(90, 90, 90), font=font,
                          anchor="mm")
            else:
                canvas.paste(Image.fromarray(_fit_into(cell, width, height)), (x, y))
            for line, text in enumerate(caption.split("\n")):
                while len(text) > 1 and draw.textlength(text, font=font) > width - 6:
                    text = text[:-2] + "\u2026"  # shorten to fit the cell
                draw.text((x + 3, y + height + 3 + line * (font_size + 4)), text, fill="black", font=font)
    if colormap:
        _colorbar(draw, canvas, colormap, font, canvas.height - bar)
    return np.asarray(canvas)


def _colorbar(draw, canvas, colormap, font, top):
    from PIL import Image

    length = max(64, min(canvas.width - 240, 512))
    ramp = colorize(np.tile(np.linspace(0.0, 1.0, length, dtype=np.float32), (12, 1)), colormap)
    canvas.paste(Image.fromarray(ramp), (30, top + 4))
    draw.text((4, top + 3), "0", fill="black", font=font)
    draw.text((36 + length, top + 3), "each map's maximum", fill="black", font=font)


# -- colours of named things -----------------------------------------------------------------------
# (Charts are drawn with matplotlib: files/charts.py.) These are the concepts' colours (files/concepts.py):
# matplotlib's tab10, RGB, one per concept in order, repeating past ten.
LINE_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
SWATCH = (24, 12)  # a legend's colour swatches, width x height in pixels


def line_colours(count):
    return [LINE_COLOURS[k % len(LINE_COLOURS)] for k in range(count)]

