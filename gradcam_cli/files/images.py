"""Decode, orient, convert and resize images; nothing else.

Every image leaves here as 8-bit RGB in its original orientation and size, whatever it was
stored as (grayscale, RGBA, palette, 16-bit, CMYK...); masks leave as (H, W) bool by a stated
rule (read_mask). Every file passes one gate first (`_decoded`): its pixel count, read from its
header, is checked against one limit (set_max_pixels, `--max-pixels`) before any decoder runs.
Pillow decodes; OpenCV is the fallback only for files Pillow cannot identify whose header was
read here whole and within the limit (a float TIFF, Radiance HDR): never for a file Pillow
refused for its size or its structure.
"""

import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gradcam_cli.errors import ImageError
from gradcam_cli.files.headers import read_header

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


def _opencv_array(path):
    """The file decoded by OpenCV as stored (any depth and channels), or None."""
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        return None
    try:
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        return None


def _rgb_from_opencv(array):
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


# Pillow's own limit, 1024 * 1024 * 1024 // 4 // 3 pixels: the --max-pixels default.
DEFAULT_MAX_PIXELS = 89_478_485


def set_max_pixels(limit):
    """Set the one limit on the pixels of any image file read (width x height of the frame
    decoded): `limit`, a whole number of at least 1, or None for no limit. It is Pillow's own
    `Image.MAX_IMAGE_PIXELS`, so that Pillow's check inside `Image.open` agrees with the gate's."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ValueError(f"the pixel limit must be a whole number of at least 1 or None. Received: {limit!r}")
    Image.MAX_IMAGE_PIXELS = None if limit is None else int(limit)


def max_pixels():
    """The limit in force (set_max_pixels; Pillow's Image.MAX_IMAGE_PIXELS): None for none."""
    return Image.MAX_IMAGE_PIXELS


def _check_size(width, height, limit):
    if limit is not None and width * height > limit:
        raise ImageError(f"image too large: {width}x{height} is {width * height:,} pixels, over the limit of "
                         f"{limit:,} (--max-pixels)")


def _decoded(path, from_pillow, from_opencv):
    """The gate every image file passes (see load_rgb): from_pillow(the opened Pillow image) or,
    for a file Pillow cannot identify whose header was read whole and within the limit,
    from_opencv(OpenCV's array as stored); None from either: cannot decode."""
    limit = max_pixels()
    try:
        header = read_header(path)
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except IsADirectoryError:
        raise ImageError("is a folder") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except OSError as error:
        raise ImageError(f"cannot read: {error.strerror or error}") from None
    if header is not None and header.pixels is not None:
        _check_size(header.width, header.height, limit)  # before any decoder: a corrupt file too
    try:
        with warnings.catch_warnings():
            # Pillow warns between its limit and twice that, and refuses beyond; the gate refuses
            # at the limit (below), before anything is decoded.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # lazy: the header alone
                _check_size(*image.size, limit)
                image.seek(0)  # GIF, WebP, TIFF: the first frame
                _check_size(*image.size, limit)
                return from_pillow(image)
    except Image.DecompressionBombError:
        raise ImageError(f"image too large: over the limit of {limit:,} pixels (--max-pixels)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as error:
        failure = error
    # OpenCV takes only what Pillow could not identify, measured whole and within the limit
    # here: never a file Pillow refused for its size or while decoding, nor a broken header.
    if isinstance(failure, UnidentifiedImageError) and header is not None and header.pixels is not None \
            and header.problem is None:
        array = _opencv_array(path)
        decoded = None if array is None else from_opencv(array)
        if decoded is not None:
            return decoded
    if header is not None and header.problem is not None:
        raise ImageError(f"cannot decode: a broken {header.format} file ({header.problem})")
    reason = "not an image file" if isinstance(failure, UnidentifiedImageError) else str(failure)
    raise ImageError(f"cannot decode: {reason}")


def load_rgb(path):
    """Read an image file as an (H, W, 3) uint8 RGB array, EXIF orientation applied.

    The one gate of every image file: the pixel count is read from the file's header (here, and
    by Pillow's lazy `Image.open`) and checked against max_pixels() before any decoder runs.
    Pillow decodes; OpenCV only files Pillow cannot identify whose header was read here (a
    float TIFF, Radiance HDR), whole and within the limit. Raises ImageError with a one-line
    reason for anything that is not a usable image, including images over the limit.
    """
    def from_pillow(image):
        return _to_rgb(ImageOps.exif_transpose(image))

    rgb = _decoded(path, from_pillow, _rgb_from_opencv)
    if rgb.size == 0 or min(rgb.shape[:2]) < 1:
        raise ImageError("empty image")
    return rgb


def read_mask(path):
    """A mask file as an (H, W) bool array, EXIF orientation applied, through load_rgb's gate.

    The rule: where the file has an alpha channel that is not opaque everywhere (RGBA, LA, a
    palette or grey or colour image with a transparent entry), alpha decides: a pixel is inside
    when its alpha is above 0 (not fully transparent). Otherwise values are labels, never
    scaled: a grey mask (1-, 8-, 16- or 32-bit) is inside where it is non-zero (a 16-bit label 1
    counts), a colour mask where any channel is non-zero. An alpha channel that is opaque
    everywhere says nothing, and the values decide. ImageError as load_rgb's."""
    def from_pillow(image):
        image = ImageOps.exif_transpose(image)
        if image.mode in ("P", "PA", "L", "RGB", "1") and ("transparency" in image.info or image.mode == "PA"):
            image = image.convert("RGBA")
        if image.mode in ("RGBA", "LA", "RGBa", "La"):
            alpha = np.asarray(image.getchannel("A"))
            if (alpha < 255).any():
                return alpha > 0
            image = image.convert("RGB" if image.mode.startswith("RGB") else "L")
        if image.mode == "P":
            image = image.convert("RGB")
        elif image.mode not in ("1", "L", "RGB", "I", "F") and not image.mode.startswith("I;16"):
            image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV: by their colour
        return _label_mask(np.asarray(image))

    def from_opencv(array):
        opaque = np.iinfo(array.dtype).max if array.dtype.kind in "ui" else 1.0
        if array.ndim == 3 and array.shape[2] in (2, 4) and (array[:, :, -1] < opaque).any():
            return array[:, :, -1] > 0
        if array.ndim == 3 and array.shape[2] in (2, 4):
            array = array[:, :, :-1]
        return _label_mask(array)

    mask = _decoded(path, from_pillow, from_opencv)
    if mask.size == 0:
        raise ImageError("empty image")
    return mask


def _label_mask(values):
    values = np.asarray(values)
    return (values != 0).any(axis=2) if values.ndim == 3 else values != 0


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


def read_input(item, index):
    """One input of the API as (H, W, 3) uint8 RGB: a path read by load_rgb (ImageError with the
    reason alone), or an array checked as decode_input checks it."""
    if isinstance(item, np.ndarray):
        return decode_input(item, index, None)[0]
    return load_rgb(item)


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
