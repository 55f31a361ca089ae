"""Score-CAM (Wang et al. 2020, "Score-CAM: Score-Weighted Visual Explanations for Convolutional
Neural Networks"): gradient-free, each channel weighted by the class score of the input it masks,

    H_k = s(Up(A_k)),   w_k = f_c(X o H_k) [- f_c(0)],   map = sum_k w_k A_k

(Eq. 4-5; Up bilinear to the input size, s min-max). The masked inputs are scored in groups of at
most MASK_BUDGET_BYTES, never all at once. Open choices (score, baseline, upsampling, max_masks):
docs/methods.md#score-cam.

Volumes (a 3-D layer's channels (d1, d2, d3), the input (D1, D2, D3, C)): Up is trilinear to the
volume's shape, with half-pixel centres (maps.resize_volume, torch's align_corners=False), or with
--scorecam-upsample corners the corners aligned (`trilinear_corners`, torch's align_corners=True);
s min-max over all three axes. Memory: a group holds N = max(1, MASK_BUDGET_BYTES // (4 D1 D2 D3 C))
masked inputs (rounded down to a multiple of the engine's batch size when N >= it): 2,730 of a
32 x 32 x 24 one-channel volume, 32 of a 128^3 one. Each channel is upsampled alone into its row of
the group (its float64 temporaries are a few times D1 D2 D3 x 8 bytes), never all channels at once.
"""

import numpy as np

from gradcam_cli.explain.methods.method import Method, spatial_axes
from gradcam_cli.explain.methods.options import MAX_MASKS, LibraryChoice, MethodOption

# What a masked input's probability is compared with: nothing (the default), or the zero input's.
BASELINE = MethodOption("scorecam_baseline", str, "none", "none: each channel's weight is the class probability of "
                        "the masked input, as the authors' code, pytorch-grad-cam and tf-keras-vis compute it; zero: "
                        "minus that of the zero input, the paper's Eq. 4 (the increase of confidence)",
                        choices=("none", "zero"))
# What scores a masked input: the class probability, or the class logit then a softmax over channels.
SCORE = MethodOption("scorecam_score", str, "probability", "probability: a masked input scores the class "
                     "probability (the authors' code); softmax-logits: it scores the class logit, and the weights "
                     "are a softmax of those scores over the channels, a constant channel's zero mask scored too "
                     "(pytorch-grad-cam)", choices=("probability", "softmax-logits"))
# How a channel is upsampled to the input size: cv2's half-pixel centres, or the corners aligned.
UPSAMPLE = MethodOption("scorecam_upsample", str, "half-pixel", "half-pixel: the channels are upsampled to masks "
                        "bilinearly with half-pixel centres (cv2; the authors' align_corners=False); corners: "
                        "bilinearly with the corners aligned (pytorch-grad-cam's UpsamplingBilinear2d, "
                        "tf-keras-vis's scipy zoom of order 1); a volume's, trilinearly the same two ways",
                        choices=("half-pixel", "corners"))
# The most bytes of masked inputs built at once.
MASK_BUDGET_BYTES = 256 * 2**20
# cv2.resize takes at most 128 channels at a time (OpenCV 5; 512 before).
_CV2_CHANNELS = 128


def channel_weights(result, context):
    """Score-CAM's channel weights w_k of each image of an batch.BatchResult: (B, K) float32.
    The context's options: max_masks, the channels kept per image (None: all); scorecam_baseline;
    scorecam_score; scorecam_upsample (checked by the entry's options)."""
    engine = result.engine
    options = context.options
    softmax = options["scorecam_score"] == "softmax-logits"
    aligned = options["scorecam_upsample"] == "corners"
    if np.ndim(result.activations) == 5:  # a volume's channels: trilinear
        upsample = trilinear_corners if aligned else trilinear
    else:
        upsample = corners if aligned else bilinear
    return scorecam_weights(result.activations, result.inputs, result.classes,
                            engine.scores if softmax else engine.probabilities,
                            max_masks=options["max_masks"], budget_bytes=MASK_BUDGET_BYTES,
                            multiple=engine.batch_size, baseline=options["scorecam_baseline"],
                            upsample=upsample, softmax=softmax)


def bilinear(channels, size):
    """(h, w, n) float32 -> (H, W, n) for `size` (H, W): cv2's bilinear, half-pixel centres."""
    import cv2  # here: the registry imports this module, and `gradcam --help` must not load OpenCV

    height, width = size
    if channels.shape[:2] == (height, width):
        return channels.copy()
    parts = []
    for start in range(0, channels.shape[2], _CV2_CHANNELS):
        part = np.ascontiguousarray(channels[:, :, start : start + _CV2_CHANNELS])
        # cv2.resize takes (width, height), and drops a single channel axis.
        resized = cv2.resize(part, (width, height), interpolation=cv2.INTER_LINEAR)
        parts.append(resized.reshape(height, width, part.shape[2]))
    return np.concatenate(parts, axis=2)


def corners(channels, size):
    """(h, w, n) float32 -> (H, W, n) for `size` (H, W): bilinear with the corners aligned, output
    index i read at i (h - 1) / (H - 1): torch's UpsamplingBilinear2d (align_corners=True), as
    pytorch-grad-cam's score_cam.py, and scipy.ndimage.zoom(order=1), as tf-keras-vis's scorecam.py."""
    channels = np.asarray(channels, dtype=np.float32)
    rows = _corner_matrix(channels.shape[0], size[0])
    columns = _corner_matrix(channels.shape[1], size[1])
    tall = np.tensordot(rows, channels, axes=([1], [0]))  # (H, w, n)
    return np.ascontiguousarray(np.einsum("Xx,Yxn->YXn", columns, tall), dtype=np.float32)


def trilinear(channels, size):
    """(d1, d2, d3, n) -> (D1, D2, D3, n) float32 for `size` (D1, D2, D3): trilinear with half-pixel
    centres (maps.resize_volume: torch's interpolate(mode="trilinear", align_corners=False))."""
    from gradcam_cli.explain.maps import resize_volume  # here: maps imports OpenCV (`gradcam --help`)

    return resize_volume(channels, size)


def trilinear_corners(channels, size):
    """(d1, d2, d3, n) -> (D1, D2, D3, n) float32 for `size` (D1, D2, D3): trilinear with the
    corners aligned, output index i along each axis read at i (d - 1) / (D - 1) (torch's
    interpolate(mode="trilinear", align_corners=True)); linear along each axis in turn, in float64."""
    array = np.asarray(channels, dtype=np.float64)
    for axis, large in enumerate(size):
        matrix = _corner_matrix(array.shape[axis], int(large)).astype(np.float64)
        array = np.moveaxis(np.tensordot(matrix, array, axes=([1], [axis])), 0, axis)
    return np.ascontiguousarray(array, dtype=np.float32)


def _corner_matrix(small, large):
    """(large, small) float32: row i interpolates linearly at i (small - 1) / (large - 1)."""
    source = np.arange(large) * ((small - 1) / (large - 1) if large > 1 else 0.0)
    low = np.minimum(np.floor(source).astype(np.int64), small - 1)
    high = np.minimum(low + 1, small - 1)
    fraction = source - low
    matrix = np.zeros((large, small))
    np.add.at(matrix, (np.arange(large), low), 1.0 - fraction)
    np.add.at(matrix, (np.arange(large), high), fraction)
    return matrix.astype(np.float32)


def kept_channels(activations, max_masks=None, constant=False):
    """(B, K) bool: the channels that get a weight. A constant channel never does (its mask is
    zero, its weight 0) unless `constant` (pytorch-grad-cam scores its zero mask too); with
    `max_masks` N, only each image's N channels of highest spatial variance."""
    activations = np.asarray(activations, dtype=np.float32)
    axes = spatial_axes(activations)  # (1, 2); a volume's (1, 2, 3)
    spread = activations.max(axis=axes) > activations.min(axis=axes)
    if constant:
        spread = np.ones_like(spread)
    if max_masks is None:
        return spread
    if isinstance(max_masks, bool) or not isinstance(max_masks, (int, np.integer)) or max_masks < 1:
        raise ValueError(f"max_masks must be a whole number of channels, 1 or more. Received: max_masks={max_masks!r}")
    variance = activations.astype(np.float64).var(axis=axes)
    order = np.argsort(-variance, axis=1, kind="stable")[:, :max_masks]
    top = np.zeros_like(spread)
    np.put_along_axis(top, order, True, axis=1)
    return spread & top


def masks(channels, size, upsample=bilinear):
    """H_k = s(Up(A_k)) (Eq. 5) of one image's channels (h, w, n): (n, H, W, 1) in [0, 1], upsampled
    by `upsample(channels, size)` and min-max normalised per channel; a constant one is zero. A
    volume's channels (d1, d2, d3, n) give (n, D1, D2, D3, 1), normalised over all three axes."""
    upsampled = np.asarray(upsample(np.asarray(channels, dtype=np.float32), tuple(size)), dtype=np.float32)
    axes = tuple(range(upsampled.ndim - 1))
    low = upsampled.min(axis=axes, keepdims=True)
    span = upsampled.max(axis=axes, keepdims=True) - low
    normalised = np.where(span > 0, (upsampled - low) / np.where(span > 0, span, 1.0), 0.0)
    return np.moveaxis(normalised.astype(np.float32), -1, 0)[..., None]


def scorecam_weights(activations, inputs, classes, probabilities, max_masks=None, upsample=bilinear,
                     budget_bytes=MASK_BUDGET_BYTES, multiple=1, baseline=BASELINE.default, softmax=False):
    """Score-CAM channel weights w_k = f_c(X o H_k) - f_c(0) (Eq. 4; `baseline` 'none': f_c(X o H_k)
    alone), (B, K) float32; 0 for the channels not kept (kept_channels).

    activations (B, h, w, K) (a volume's (B, d1, d2, d3, K)); inputs (B, H, W, C) preprocessed (a
    volume's (B, D1, D2, D3, C)); classes (B,); probabilities: a
    callable scoring (N, H, W, C) inputs -> (N, classes) (engine.probabilities; engine.scores for
    pytorch-grad-cam's logits). The masked inputs and the zero input go to it in groups of at most
    `budget_bytes`, a multiple of `multiple` inputs (the engine's batch size: no padded chunk but
    the last); `upsample(channels, size)` is Up. `softmax`: pytorch-grad-cam's rule, w_k =
    softmax_k over the kept channels, constant ones kept and scored as the zero input."""
    activations = np.asarray(activations, dtype=np.float32)
    inputs = np.asarray(inputs, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64)
    if baseline not in BASELINE.choices:
        raise ValueError(f"baseline must be one of {', '.join(BASELINE.choices)}. Received: baseline={baseline!r}")
    kept = kept_channels(activations, max_masks, constant=softmax)
    weights = np.zeros(kept.shape, dtype=np.float32)
    if not kept.any():  # every mask is zero: no channel is scored
        return weights
    masked = kept & kept_channels(activations)  # the kept channels whose mask is not zero
    zero_needed = baseline == "zero" or bool((kept & ~masked).any())
    # One job per masked input, image after image; the zero input first (image -1) when needed.
    jobs = ([(-1, -1)] if zero_needed else []) + [(i, int(k)) for i in range(len(inputs))
                                                  for k in np.flatnonzero(masked[i])]
    chosen = _scored(activations, inputs, classes, probabilities, jobs, upsample, budget_bytes, multiple)
    zero = chosen[0] if zero_needed else np.zeros(len(inputs), np.float32)
    scores = np.where(kept, zero[:, None], 0.0).astype(np.float32)  # a constant channel: the zero input's
    for (i, k), value in zip(jobs[1:] if zero_needed else jobs, chosen[1:] if zero_needed else chosen):
        scores[i, k] = value
    if baseline == "zero":
        scores = np.where(kept, scores - zero[:, None], 0.0).astype(np.float32)
    return channel_softmax(scores, kept) if softmax else np.where(kept, scores, 0.0).astype(np.float32)


def channel_softmax(scores, kept):
    """w_k = exp(S_k) / sum_j exp(S_j) over each image's kept channels, 0 elsewhere: (B, K) float32
    (pytorch-grad-cam's torch.nn.Softmax(dim=-1) over the channels' scores)."""
    scores = np.where(kept, np.asarray(scores, dtype=np.float64), -np.inf)
    peaks = np.max(scores, axis=1, keepdims=True)
    exponentials = np.where(kept, np.exp(scores - np.where(np.isfinite(peaks), peaks, 0.0)), 0.0)
    totals = exponentials.sum(axis=1, keepdims=True)
    return (exponentials / np.where(totals > 0, totals, 1.0)).astype(np.float32)


def _scored(activations, inputs, classes, probabilities, jobs, upsample, budget_bytes, multiple):
    """Per job, the score of its image's class (the zero input's, image -1: (B,), one per image),
    scored in groups within the budget."""
    group = _group_size(inputs[0].nbytes, budget_bytes, multiple)
    chosen = []
    for start in range(0, len(jobs), group):
        part = jobs[start : start + group]
        scored = np.asarray(probabilities(_masked_inputs(activations, inputs, part, upsample)), dtype=np.float32)
        for row, (i, _) in zip(scored, part):
            chosen.append(row[classes] if i < 0 else row[classes[i]])
    return chosen


def _group_size(input_bytes, budget_bytes, multiple):
    count = max(1, int(budget_bytes) // max(1, int(input_bytes)))
    multiple = max(1, int(multiple))
    return count - count % multiple if count >= multiple else count


def _masked_inputs(activations, inputs, jobs, upsample):
    """The inputs X o H_k of `jobs` [(image, channel)], in order, in one array (no copies of the
    group); image -1 is the baseline 0. A volume's channels are upsampled one at a time, each into
    its own row (the module's memory bound)."""
    size = inputs.shape[1:-1]
    volume = inputs.ndim == 5
    masked = np.zeros((len(jobs),) + inputs.shape[1:], dtype=np.float32)
    start = 0
    while start < len(jobs):
        image = jobs[start][0]
        end = start
        while end < len(jobs) and jobs[end][0] == image:
            end += 1
        if image >= 0 and volume:  # the baseline rows stay 0
            for row in range(start, end):
                channel = activations[image][..., jobs[row][1] : jobs[row][1] + 1]
                np.multiply(masks(channel, size, upsample)[0], inputs[image], out=masked[row])
        elif image >= 0:
            channels = [k for _, k in jobs[start:end]]
            np.multiply(masks(activations[image][:, :, channels], size, upsample), inputs[image], out=masked[start:end])
        start = end
    return masked


METHOD = Method(
    "scorecam",
    "Score-CAM: channel weights = the class probability of the input masked by each upsampled, "
    "min-max normalised channel (minus that of the zero input with --scorecam-baseline zero)",
    "Wang et al. 2020, Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks",
    ("activations", "forward-scores"),
    channel_weights=channel_weights,
    options=(MAX_MASKS, BASELINE, SCORE, UPSAMPLE),
    choices=(LibraryChoice("scorecam_baseline", "what a masked input's probability is compared with",
                           "nothing: the probability itself (the authors' code)",
                           {"pytorch-grad-cam": ("none", "nothing (then a softmax over the channels' scores)"),
                            "tf-keras-vis": ("none", "nothing")}),
             LibraryChoice("scorecam_score", "what scores a masked input",
                           "the class probability, each channel's weight as it is (the authors' code)",
                           {"pytorch-grad-cam": ("softmax-logits", "the class logit, then a softmax over the "
                                                 "channels; a constant channel's zero mask is scored too"),
                            "tf-keras-vis": ("probability", "its score of softmax(model output): the class "
                                             "probability when the output is made linear (ReplaceToLinear)")}),
             LibraryChoice("scorecam_upsample", "how a channel is upsampled to a mask",
                           "bilinear, half-pixel centres (cv2; the authors' align_corners=False)",
                           {"pytorch-grad-cam": ("corners", "bilinear, corners aligned (UpsamplingBilinear2d)"),
                            "tf-keras-vis": ("corners", "bilinear, corners aligned (scipy.ndimage.zoom, "
                                             "order 1)")})),
    volumes=True,
)
