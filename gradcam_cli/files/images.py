"""Decode, orient, convert and resize images; nothing else.

Every image leaves here as 8-bit RGB in its original orientation and size, whatever it was
stored as (grayscale, RGBA, palette, 16-bit, CMYK...). Pillow decodes first; OpenCV is the
fallback for files Pillow cannot handle (16-bit colour TIFFs, for example).
"""

import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gradcam_cli.errors import ImageError

# A white background for transparent pixels: what a viewer shows, and what a classifier trained
# on photographs expects more than the arbitrary colours hidden under alpha = 0.
_BACKGROUND = (255, 255, 255)


def _to_rgb(image):
    """Convert any Pillow mode to 8-bit RGB."""
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and values.max(initial=0) > 255):
            values = values / 257.0  # 0..65535 -> 0..255
        elif mode == "F":
            low, high = values.min(initial=0), values.max(initial=0)
            values = (values - low) / (high - low) * 255.0 if high > low else values * 0
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, _BACKGROUND + (255,))
        image = Image.alpha_composite(background, image)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _decode_with_opencv(path):
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        return None
    try:
        array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        return None
    if array is None:
        return None
    if array.dtype == np.uint16:
        array = (array.astype(np.float64) / 257.0).round().astype(np.uint8)
    elif array.dtype != np.uint8:
        return None
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.shape[2] == 4:
        bgr = array[:, :, :3].astype(np.float64)
        alpha = array[:, :, 3:4].astype(np.float64) / 255.0
        array = (bgr * alpha + 255.0 * (1 - alpha)).round().astype(np.uint8)
    return np.ascontiguousarray(array[:, :, 2::-1])  # BGR -> RGB


def load_rgb(path):
    """Read an image file as an (H, W, 3) uint8 RGB array, EXIF orientation applied.

    Raises ImageError with a one-line reason for anything that is not a usable image,
    including images over Pillow's decompression-bomb limit.
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns between MAX_IMAGE_PIXELS and twice that, and refuses beyond: treat the
            # warning as the refusal, so a suspect file fails cleanly instead of filling memory.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.seek(0)  # GIF, WebP, TIFF: the first frame
                image = ImageOps.exif_transpose(image)
                rgb = _to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"image too large (decompression-bomb limit): {error}") from None
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except IsADirectoryError:
        raise ImageError("is a folder") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        rgb = _decode_with_opencv(path)
        if rgb is None:
            reason = "not an image file" if isinstance(error, UnidentifiedImageError) else str(error)
            raise ImageError(f"cannot decode: {reason}") from None
    if rgb.size == 0 or min(rgb.shape[:2]) < 1:
        raise ImageError("empty image")
    return rgb


def model_view(rgb, size, crop=False):
    """What the model sees: the image resized to `size` = (height, width), float32 RGB 0..255.

    With `crop`, the shorter side is resized to size/0.875 first and the centre cut out (the
    usual ImageNet evaluation transform, Resize(256) + CenterCrop(224)). Returns the array and
    the box (x0, y0, x1, y1), in original pixels, that the model's view covers.
    """
    height, width = rgb.shape[:2]
    target_h, target_w = size
    if crop:
        scale = max(target_h, target_w) / 0.875 / min(height, width)
        box_w = min(width, target_w / scale)
        box_h = min(height, target_h / scale)
        x0 = (width - box_w) / 2
        y0 = (height - box_h) / 2
        box = (int(round(x0)), int(round(y0)), int(round(x0 + box_w)), int(round(y0 + box_h)))
        region = rgb[box[1] : box[3], box[0] : box[2]]
    else:
        box = (0, 0, width, height)
        region = rgb
    shrinking = region.shape[0] > target_h or region.shape[1] > target_w
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(region, (target_w, target_h), interpolation=interpolation)  # (w, h)!
    return resized.astype(np.float32), box


# Luma weights of ITU-R BT.601, as Pillow's "L" mode and OpenCV's RGB2GRAY use them. They sum
# to 1, so a grey image's luminance is its grey value.
LUMINANCE_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def luminance(views):
    """(..., 3) float RGB in 0..255 -> (..., 1) luminance in 0..255: what a model of
    single-channel images is given, before its preprocessing."""
    views = np.asarray(views, dtype=np.float32)
    return np.ascontiguousarray((views @ LUMINANCE_WEIGHTS)[..., None], dtype=np.float32)


def model_inputs(loaded, views):
    """RGB views (N, H, W, 3) in 0..255 as `loaded`'s model takes them: the luminance for a
    1-channel model, then the model's preprocessing. The one place images become inputs."""
    from gradcam_cli.models.preprocess import preprocess

    views = luminance(views) if loaded.channels == 1 else np.asarray(views, dtype=np.float32)
    return preprocess(views, loaded.preprocess)


def view_of(loaded, rgb, crop=False):
    """model_view for `loaded`: its own view (a keras-hub preset's image converter) if it has one."""
    if getattr(loaded, "view", None) is not None:
        return loaded.view(rgb)
    return model_view(rgb, loaded.input_size, crop=crop)


def prepare(loaded, rgbs, crop=False, workers=None):
    """Decoded images as `loaded`'s model sees them: (the preprocessed batch, the box of each
    image its view covers). `workers`: a thread pool to resize on (image by image)."""
    each = map if workers is None else workers.map
    views = list(each(lambda rgb: view_of(loaded, rgb, crop=crop), rgbs))
    return model_inputs(loaded, np.stack([view for view, _ in views])), [box for _, box in views]


def input_list(images):
    """The API's `images` as a list: one path or array, or several."""
    from pathlib import Path

    return list(images) if not isinstance(images, (str, Path, np.ndarray)) else [images]


def decode_input(item, index, names):
    """(rgb, source path or None, output name) of one input of the API: a path, or an (H, W, 3)
    or (H, W) uint8 array (named imageN.png, or names[index]). ImageError naming the file or the
    array's index."""
    from pathlib import Path

    if isinstance(item, np.ndarray):
        array = np.asarray(item)
        if array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8 or min(array.shape[:2]) < 1:
            raise ImageError(f"image {index}: expected an (H, W, 3) or (H, W) uint8 array. "
                             f"Received: shape {item.shape}, dtype {item.dtype}")
        name = names[index] if names is not None else f"image{index}.png"
        return array, None, name
    path = Path(item)
    try:
        rgb = load_rgb(path)
    except ImageError as error:
        raise ImageError(f"{path}: {error}") from None
    return rgb, str(path), names[index] if names is not None else path.name
