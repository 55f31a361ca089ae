"""From channel weights to a map at the image's resolution: weighted sum, ReLU, upsampling,
normalisation and statistics. ReLU comes before upsampling: resizing
first smears a negative value into its positive neighbours."""

import cv2
import numpy as np


def weighted_sum(activations, channel_weights):
    """sum_k w_k A^k for each sample: (B, h, w, K) x (B, K) -> (B, h, w), float32; a volume's
    (B, d1, d2, d3, K) -> (B, d1, d2, d3)."""
    activations = np.asarray(activations, dtype=np.float32)
    channel_weights = np.asarray(channel_weights, dtype=np.float32)
    if activations.ndim == 4:  # the 2-D maps' own contraction, bit for bit
        return np.einsum("bhwk,bk->bhw", activations, channel_weights)
    return np.einsum("b...k,bk->b...", activations, channel_weights)


def spread(channel_weights, activations):
    """(B, K) channel weights shaped to multiply (B, ..., K) activations: (B, 1, ..., 1, K)."""
    channel_weights = np.asarray(channel_weights, dtype=np.float32)
    return channel_weights.reshape((len(channel_weights),) + (1,) * (np.ndim(activations) - 2) + (-1,))


def resize_volume(array, shape):
    """A (D1, D2, D3) or (D1, D2, D3, C) array resized trilinearly to `shape` (three sides),
    float32: torch's F.interpolate(mode="trilinear", align_corners=False), half-pixel centres.

    Trilinear interpolation is linear interpolation along each axis in turn (the weights are a
    product), so each axis is done alone: output index i reads the input at
    src = (i + 0.5) * n_in / n_out - 0.5, taken as 0 below 0 (the edge rule), from the samples
    floor(src) and floor(src) + 1 (the last one at the upper edge) weighted 1 - t and t,
    t = src - floor(src). No antialiasing when shrinking (torch's and cv2.INTER_LINEAR's rule):
    an axis kept at its length is left as it is, so a resize that keeps one axis is cv2's bilinear
    resize of each slice along it. Computed in float64."""
    array = np.asarray(array, dtype=np.float64)
    shape = tuple(int(side) for side in shape)
    if array.ndim not in (3, 4) or len(shape) != 3 or min(shape) < 1 or min(array.shape[:3]) < 1:
        raise ValueError(f"resize_volume takes a (D1, D2, D3) or (D1, D2, D3, C) array and three sides. "
                         f"Received: array of shape {array.shape}, shape={shape}")
    for axis, size in enumerate(shape):
        if array.shape[axis] != size:
            array = _linear_along(array, axis, size)
    return array.astype(np.float32)


def _linear_along(array, axis, size):
    """`array` resized to `size` along `axis` by linear interpolation with half-pixel centres."""
    length = array.shape[axis]
    source = np.maximum((np.arange(size, dtype=np.float64) + 0.5) * (length / size) - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(np.int64), length - 1)
    high = np.minimum(low + 1, length - 1)
    weight = (source - low).reshape((-1,) + (1,) * (array.ndim - axis - 1))
    return np.take(array, low, axis=axis) * (1.0 - weight) + np.take(array, high, axis=axis) * weight


def relu(maps):
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return np.maximum(maps, 0.0)


def upsample(small_map, box, image_shape):
    """Bilinear upsampling of an (h, w) map onto the `box` (x0, y0, x1, y1) of an image of
    `image_shape` (H, W); outside the box (the part a centre crop cut away) the map is 0."""
    return resize_into_box(small_map, box, image_shape)


def resize_into_box(array, box, image_shape, fill=0.0):
    """An (h, w) or (h, w, C) float array resized onto the `box` (x0, y0, x1, y1) of an
    (H, W) image, `fill` outside the box: bilinear when enlarging, pixel-area averaging when
    shrinking (no aliasing when a 224-pixel gradient image goes onto a smaller photo)."""
    height, width = image_shape[:2]
    x0, y0, x1, y1 = box
    array = np.asarray(array, dtype=np.float32)
    shrinking = (x1 - x0) < array.shape[1] and (y1 - y0) < array.shape[0]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    # cv2.resize takes (width, height): the classic mistake with non-square images.
    resized = cv2.resize(array, (x1 - x0, y1 - y0), interpolation=interpolation)
    if resized.ndim < array.ndim:  # cv2 drops a single channel axis
        resized = resized[..., None]
    if (x0, y0, x1, y1) == (0, 0, width, height):
        return resized
    full = np.full((height, width) + array.shape[2:], fill, dtype=np.float32)
    full[y0:y1, x0:x1] = resized
    return full


def full_map(small_map, box, image_shape, relu_after_resize=False):
    """The map at the image's resolution: (raw heat, normalised to [0, 1], empty flag).
    relu_after_resize: `small_map` is the weighted sum before its ReLU, applied after upsampling
    (a variant, for comparison: a negative value then bleeds into its neighbours).
    A volume's (d1, d2, d3) map goes onto the volume's `image_shape` (D1, D2, D3[, C]) whole
    (`box` None: a volume is never cropped), resized trilinearly (resize_volume)."""
    if np.ndim(small_map) == 3:
        heat = resize_volume(small_map, tuple(image_shape)[:3])
    else:
        heat = upsample(small_map, box, image_shape)
    if relu_after_resize:
        heat = relu(heat)
    normalised, empty = normalise(heat)
    return heat, normalised, empty


def saliency(input_gradient):
    """An (H, W) map from an (H, W, C) gradient: the largest magnitude over the colour channels
    (Simonyan et al. 2014, Sec. 3.1), for localization figures; a volume's (D1, D2, D3) from its
    (D1, D2, D3, C) gradient, over its channels."""
    return np.abs(np.asarray(input_gradient, dtype=np.float32)).max(axis=-1)


def saliency_map(gradient, box, image_shape):
    """An (H, W, C) gradient's saliency at the image's resolution, normalised to [0, 1]; and
    whether it is zero everywhere. A volume's (D1, D2, D3, C) gradient: its saliency resized
    trilinearly onto the volume's `image_shape` (D1', D2', D3'[, C]) whole (`box` None), as its map."""
    if np.ndim(gradient) == 4:
        return normalise(resize_volume(saliency(gradient), tuple(image_shape)[:3]))
    return normalise(resize_into_box(saliency(gradient), box, image_shape))


def shrink(image, side):
    """An (H, W) map area-averaged to at most side x side pixels (aspect kept), float32."""
    image = np.asarray(image, dtype=np.float32)
    height, width = image.shape[:2]
    if max(height, width) <= side:
        return image
    scale = side / max(height, width)
    return cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)


def normalise(heat):
    """Scale a non-negative map to [0, 1] by its maximum. A map that is zero everywhere stays
    zero (no division by zero, no NaN); the second value says whether that happened."""
    peak = float(heat.max(initial=0.0))
    if not np.isfinite(peak) or peak <= 0.0:
        return np.zeros_like(heat, dtype=np.float32), True
    return (heat / peak).astype(np.float32), False


def statistics(small_map, normalised, empty):
    """Numbers that describe a map, for the JSON record."""
    y, x = np.unravel_index(int(np.argmax(normalised)), normalised.shape)
    return {
        "empty": bool(empty),
        "raw_max": float(small_map.max(initial=0.0)),
        "raw_mean": float(small_map.mean()),
        "resolution": [int(small_map.shape[1]), int(small_map.shape[0])],
        "mean": float(normalised.mean()),
        "area_above_half": float((normalised >= 0.5).mean()),
        "peak": None if empty else [int(x), int(y)],
        "box": None if empty else list(bounding_box(normalised)),
    }


def bounding_box(normalised, threshold=0.5):
    """The box (x0, y0, x1, y1), x1/y1 exclusive, around the largest connected region of a [0, 1]
    map at or above `threshold` (the ILSVRC-style localization of CAM, Zhou et al. 2016, Sec. 3:
    threshold, keep the largest connected component, take its box). None for an empty map."""
    mask = (normalised >= threshold).astype(np.uint8)
    if normalised.max(initial=0.0) <= 0 or not mask.any():
        return None
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    largest = 1 + int(np.argmax(stats[1:count, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in stats[largest, :4])
    return (x, y, x + w, y + h)
