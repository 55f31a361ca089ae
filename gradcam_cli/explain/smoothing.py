"""Maps averaged over test-time augmentations (`--aug-smooth`) and over several target layers
(`--layer a --layer b`), as pytorch-grad-cam offers them (its `aug_smooth` and a list of
target layers). Pure numpy and OpenCV on prepared batches and maps; the methods themselves run
unchanged on each augmented batch or layer (api.Explainer.compute).

Test-time augmentation: the six views of the batch, horizontal flip (no, yes) x zoom about
the centre (0.9, 1.0, 1.1). Each view's map, after the ReLU and normalised to its own maximum,
is mapped back to the original geometry and the maps are averaged. Our choices, each named:

- Zoom, not brightness: we zoom the picture by 0.9/1.0/1.1 about its centre at a fixed input size
  (Keras models take one size), and flip. A zoomed-out view (0.9) fills its border by reflection
  (cv2.BORDER_REFLECT_101), so no constant frame appears.
- The inverse warp of a view's map is the zoom by 1/s about the map's centre; a zoomed-in view
  (1.1) does not see the original's border, so the average at each position is over the views
  that see it: the sum of the restored maps (zero outside the view, bilinear at its edge)
  divided by the sum of their coverages (the warped image of a map of ones).
- Every view explains the class the original view explains (the top-k ranks are read on the
  original view), so the six maps are of one class.
- The scores, probabilities, classes and input gradients reported are the original view's.
- `mode`: 'zoom' (the default) is the above; 'multiply' is pytorch-grad-cam's aug_smooth
  (base_cam.py forward_augmentation_smoothing, ttach 0.0.3 HorizontalFlip x Multiply): the six
  views are the preprocessed batch times 0.9/1.0/1.1, flipped or not; each view's map is
  normalised to [0, 1] (to its maximum, as every map here) and flipped back, and the six are
  averaged, no coverage weighting (nothing leaves the frame). Every view explains the original
  view's class, as with 'zoom' (pytorch-grad-cam's views take their own top-1 when no target is
  given). docs/methods.md#aug-smooth.

Several layers: each layer's map (after the ReLU) is normalised to its own maximum, upsampled
bilinearly to the model's input size, and the maps are averaged (a map that is zero everywhere
stays zero). The averaged map, at the model's input resolution, is the map that drawing then
resizes onto the image.

How pytorch-grad-cam's aug_smooth and aggregate_multi_layers differ: docs/methods.md#aug-smooth,
docs/methods.md#several-layers.
"""

from dataclasses import replace

import numpy as np

# How the views are made: zoomed about the centre (ours), or multiplied (pytorch-grad-cam's).
AUG_MODES = ("zoom", "multiply")
# The views --compat makes: pytorch-grad-cam's ttach transforms multiply the input (tf-keras-vis
# has no augmentation smoothing).
COMPAT_MODES = {"pytorch-grad-cam": "multiply"}
# The views: (flipped, zoom or factor). The original view comes first: its classes fix the others'.
VIEWS = tuple((flip, zoom) for flip in (False, True) for zoom in (1.0, 0.9, 1.1))


def _zoom_matrix(zoom, height, width):
    """The affine map from output to input coordinates of a zoom by `zoom` about the centre:
    out(x) = in(c + (x - c) / zoom)."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return np.array([[1.0 / zoom, 0.0, cx * (1.0 - 1.0 / zoom)], [0.0, 1.0 / zoom, cy * (1.0 - 1.0 / zoom)]])


def _warp(image, matrix, border, value=0.0):
    import cv2

    height, width = image.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    if image.ndim == 3 and image.shape[2] > 4:  # cv2 warps at most 4 channels at once
        return np.concatenate([_warp(image[:, :, k : k + 4], matrix, border, value)
                               for k in range(0, image.shape[2], 4)], axis=2)
    out = cv2.warpAffine(np.ascontiguousarray(image, dtype=np.float32), matrix, (width, height), flags=flags,
                         borderMode=border, borderValue=value)
    return out.reshape(image.shape)


def augment(inputs, flip, zoom):
    """A view of a prepared batch (B, H, W, C): zoomed by `zoom` about the centre (border by
    reflection), then flipped left-right if `flip`."""
    import cv2

    out = np.asarray(inputs, dtype=np.float32)
    if zoom != 1.0:
        matrix = _zoom_matrix(zoom, out.shape[1], out.shape[2])
        out = np.stack([_warp(image, matrix, cv2.BORDER_REFLECT_101) for image in out])
    return out[:, :, ::-1].copy() if flip else out


def restore(small_maps, flip, zoom):
    """A view's maps (B, h, w) in the original geometry (0 where the view does not see the
    original), and their coverage (B, h, w): what the view saw of each original position (1
    inside, 0 outside, fractions at the edge; the map there is the value times that fraction)."""
    import cv2

    maps_ = np.asarray(small_maps, dtype=np.float32)
    if flip:
        maps_ = maps_[:, :, ::-1]
    coverage = np.ones_like(maps_)
    if zoom != 1.0:
        matrix = _zoom_matrix(1.0 / zoom, maps_.shape[1], maps_.shape[2])
        maps_ = np.stack([_warp(m, matrix, cv2.BORDER_CONSTANT) for m in maps_])
        coverage = np.stack([_warp(c, matrix, cv2.BORDER_CONSTANT) for c in coverage])
    return np.ascontiguousarray(maps_), coverage


def unit_peak(small_maps):
    """Each map divided by its maximum (a map that is zero everywhere stays zero): (B, h, w)."""
    maps_ = np.maximum(np.asarray(small_maps, dtype=np.float32), 0.0)
    peaks = maps_.reshape(len(maps_), -1).max(axis=1, initial=0.0)
    return maps_ / np.where(peaks > 0, peaks, 1.0)[:, None, None]


def multiplied(inputs, flip, factor):
    """A 'multiply' view of a prepared batch (B, H, W, C): times `factor` (ttach's Multiply, on the
    preprocessed values), then flipped left-right if `flip`."""
    out = np.asarray(inputs, dtype=np.float32)
    if factor != 1.0:
        out = out * np.float32(factor)
    return out[:, :, ::-1].copy() if flip else out


def _view(inputs, flip, amount, mode):
    if not flip and amount == 1.0:
        return inputs
    return augment(inputs, flip, amount) if mode == "zoom" else multiplied(inputs, flip, amount)


def augmentation_smoothed(compute, inputs, codes, mode="zoom"):
    """compute(inputs, codes) -> explain.compute.MapBatch, averaged over VIEWS (see the module's notes):
    zoomed views (`mode` 'zoom') or multiplied ones ('multiply', pytorch-grad-cam's)."""
    if mode not in AUG_MODES:
        raise ValueError(f"mode must be one of {', '.join(AUG_MODES)}. Received: mode={mode!r}")
    first = None
    total = weight = None
    for flip, amount in VIEWS:
        batch = compute(_view(inputs, flip, amount, mode), codes if first is None else first.classes)
        if first is None:
            first = batch
        normalised = unit_peak(batch.small_maps)
        if mode == "zoom":
            restored, coverage = restore(normalised, flip, amount)  # restored: weighted by coverage
        else:  # a multiplied view's map is in place, a flipped one flipped back; every position seen
            restored, coverage = (normalised[:, :, ::-1] if flip else normalised), np.ones_like(normalised)
        total = restored if total is None else total + restored
        weight = coverage if weight is None else weight + coverage
    averaged = np.where(weight > 0, total / np.maximum(weight, 1e-12), 0.0).astype(np.float32)
    return replace(first, small_maps=averaged, weighted_sums=averaged)


def layers_averaged(batches, size):
    """explain.compute.MapBatches of one batch at several layers -> one, whose maps are the average
    of the layers' maps, each normalised to its maximum and upsampled to `size` (H, W)."""
    from gradcam_cli.explain.maps import upsample

    box = (0, 0, size[1], size[0])
    resized = [np.stack([upsample(m, box, size) for m in unit_peak(batch.small_maps)]) for batch in batches]
    averaged = np.mean(resized, axis=0).astype(np.float32)
    return replace(batches[0], small_maps=averaged, weighted_sums=averaged)
