"""SESS (Tursun, Denman, Sridharan and Fookes 2022, "SESS: Saliency Enhancing with Scaling and
Sliding"): a meta-method. The image is scaled up several times, windows of the model's input size
slide over each, and the base method's map of every window, weighted by the class probability in
it over the best window's, is pasted back, resized to the image, fused (mean above theta, or max)
and blurred:

    map = GaussianBlur(fuse_i resize(paste(w_i mm(base map of window_i))), 11 x 11, sigma)

Open choices (windows, scales, resizing, chunks): docs/methods.md#sess.
"""

import numpy as np

from gradcam_cli.explain.methods.method import Method, base_method_option, base_suffix
from gradcam_cli.explain.methods.options import MethodOption

BASE_METHOD = base_method_option("gradcam")
SCALES = MethodOption("sess_scales", int, 12, "how many scales the image is enlarged to (the first is its own "
                      "size); each adds windows", minimum=1)
SCALE_STEP = MethodOption("sess_scale_step", float, 2.0 / 7.0, "each scale's short side grows by this fraction of "
                          "the input's", minimum=0.0)
STRIDE = MethodOption("sess_stride", int, None, "the windows' stride in pixels; not given: the window's size",
                      minimum=1, metavar="PIXELS")
PRE_FILTER = MethodOption("sess_pre_filter", float, 0.0, "leave out this fraction of the windows, those in which the "
                          "class scores lowest", minimum=0.0, maximum=0.99)
THETA = MethodOption("sess_theta", float, 0.0, "with --sess-pool mean, a pixel's mean takes the pasted maps above "
                     "this value only", minimum=0.0)
POOL = MethodOption("sess_pool", str, "mean", "how the pasted maps are fused: their mean (over those above theta) "
                    "or their maximum", choices=("mean", "max"))
BLUR = MethodOption("sess_blur", float, 5.0, "the Gaussian blur's sigma over an 11 x 11 window (0: none)",
                    minimum=0.0)


def scales(short, count=SCALES.default, step=SCALE_STEP.default):
    """The short sides the image is scaled to: short + round(short step) i, i = 0..count-1."""
    return [int(short + round(short * step) * i) for i in range(int(count))]


def window_starts(length, window, stride):
    """Where windows of `window` start along an axis of `length`, every `stride`, the last one
    shifted back to end at the edge (pytorch-grad-cam's window_starts)."""
    starts = []
    for start in range(0, length, stride):
        if start + window >= length:
            starts.append(max(length - window, 0))
            break
        starts.append(start)
    return starts


def scaled_size(size, short_side):
    """(height, width) of an image of `size` whose short side becomes `short_side`."""
    height, width = size
    if height <= width:
        return short_side, int(short_side * width / height)
    return int(short_side * height / width), short_side


def windows(size, count=SCALES.default, step=SCALE_STEP.default, stride=None):
    """Every window of an input of `size` (H, W): [(scaled size (Hs, Ws), (y, x))], scale by
    scale (ascending), row by row. Windows are H x W, `stride` pixels apart on both axes
    (default: the window's height and width)."""
    height, width = size
    found = []
    for short in scales(min(height, width), count, step):
        scaled = scaled_size(size, short)
        stride_y = stride or height
        stride_x = stride or width
        for y in window_starts(scaled[0], height, stride_y):
            for x in window_starts(scaled[1], width, stride_x):
                found.append((scaled, (y, x)))
    return found


def _resize(image, size):
    """A (h, w[, C]) float array resized to `size` (H, W) with cv2's bilinear."""
    import cv2

    height, width = size
    if image.shape[:2] == (height, width):
        return np.asarray(image, dtype=np.float32)
    resized = cv2.resize(np.ascontiguousarray(image, dtype=np.float32), (width, height),
                         interpolation=cv2.INTER_LINEAR)
    return resized.reshape((height, width) + image.shape[2:])


def patches(inputs, found, rows):
    """The windows `rows` [(image, window index into `found`)] of a batch of inputs, in order:
    (len(rows), H, W, C) float32. Each scaled image is made once per call."""
    height, width = inputs.shape[1:3]
    out = np.empty((len(rows),) + inputs.shape[1:], dtype=np.float32)
    scaled_cache = {}
    for row, (i, w) in enumerate(rows):
        scaled, (y, x) = found[w]
        if (i, scaled) not in scaled_cache:
            scaled_cache[(i, scaled)] = _resize(inputs[i], scaled)
        out[row] = scaled_cache[(i, scaled)][y : y + height, x : x + width]
    return out


def fuse(patch_maps, scores, found, size, pre_filter=PRE_FILTER.default, theta=THETA.default, pool=POOL.default,
         blur=BLUR.default):
    """One image's SESS map from its windows' maps (N, H, W) at the window's size, in [0, 1],
    and their scores (N,): weighted, pasted, resized, fused and blurred (see the module's
    equations). (H, W) float32."""
    import cv2

    height, width = size
    scores = np.maximum(np.asarray(scores, dtype=np.float64), 0.0)
    order = np.argsort(scores, kind="stable")[int(len(scores) * pre_filter):]
    top = scores[order].max() if len(order) else 0.0
    total = np.zeros((height, width), np.float64)
    counts = np.zeros((height, width), np.int64)
    best = np.zeros((height, width), np.float64)
    for i in order:
        weight = scores[i] / top if top > 0 else 1.0
        scaled, (y, x) = found[i]
        canvas = np.zeros(scaled, np.float32)
        canvas[y : y + height, x : x + width] = weight * patch_maps[i]
        pasted = _resize(canvas, size).astype(np.float64)
        if pool == "max":
            best = np.maximum(best, pasted)
        else:
            inside = pasted > theta
            total[inside] += pasted[inside]
            counts += inside
    fused = best if pool == "max" else np.where(counts > 0, total / np.maximum(counts, 1), 0.0)
    if blur and blur > 0:
        fused = cv2.GaussianBlur(fused, (11, 11), float(blur), borderType=cv2.BORDER_REFLECT_101)
    return fused.astype(np.float32)


def chunks(count, size):
    """[start, stop) ranges covering `count` rows in chunks of `size`."""
    return [(start, min(start + size, count)) for start in range(0, count, size)]


def meta(explainer, inputs, codes):
    """The meta-method's batch (api.Explainer.base gives the base method on the Explainer's
    layers): the whole inputs once (their classes, scores and probabilities), then every window
    of every image through the base method in chunks of its batch size, then `fuse` per image.
    Returns an explain.compute.MapBatch with maps at the input's size and, per image, the number
    of windows in its record."""
    from dataclasses import replace

    from gradcam_cli.explain.maps import upsample
    from gradcam_cli.explain.methods.refinecam import min_max

    options = explainer.options
    base = explainer.base(explainer.layer_names)
    size = tuple(inputs.shape[1:3])
    whole = base.compute(inputs, codes)
    found = windows(size, options["sess_scales"], options["sess_scale_step"], options["sess_stride"])
    inputs = np.asarray(inputs, dtype=np.float32)
    rows = [(i, w) for i in range(len(inputs)) for w in range(len(found))]  # every window, image by image
    classes = np.repeat(whole.classes, len(found))
    batch = base.build().engine.batch_size
    maps_, scores = [], []
    height, width = size
    for start, stop in chunks(len(rows), batch):  # a chunk's windows are cut when it is computed
        computed = base.compute(patches(inputs, found, rows[start:stop]), classes[start:stop])
        upsampled = np.stack([upsample(m, (0, 0, width, height), size) for m in computed.small_maps])
        maps_.append(min_max(upsampled))
        scores.append(computed.probabilities[np.arange(stop - start), classes[start:stop]])
    maps_, scores = np.concatenate(maps_), np.concatenate(scores)
    fused = np.stack([fuse(maps_[i * len(found) : (i + 1) * len(found)], scores[i * len(found) : (i + 1) * len(found)],
                           found, size, options["sess_pre_filter"], options["sess_theta"], options["sess_pool"],
                           options["sess_blur"])
                      for i in range(len(inputs))])
    details = [dict(d or {}, sess_windows=len(found)) for d in (whole.details or [None] * len(inputs))]
    return replace(whole, small_maps=fused, weighted_sums=fused, input_gradients=None, details=details)


def suffix(values):
    """The base method in output names when it is not Grad-CAM (method.base_suffix)."""
    return base_suffix(values, BASE_METHOD.default)


METHOD = Method(
    "sess",
    "SESS: the base method's maps of windows sliding over upscaled copies of the image, weighted by the class's "
    "probability in each window, pasted back, fused and blurred",
    "Tursun et al. 2022, SESS: Saliency Enhancing with Scaling and Sliding",
    ("base-method",),
    meta=meta,
    suffix=suffix,
    options=(BASE_METHOD, SCALES, SCALE_STEP, STRIDE, PRE_FILTER, THETA, POOL, BLUR),
    volumes=False,
    no_volumes=("it slides windows of the model's input size over an image scaled up several times and pastes their "
               "2-D maps back (bilinear resizing, an 11 x 11 Gaussian blur)"),
)
