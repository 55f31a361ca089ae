"""Ablation-CAM (Desai and Ramaswamy 2020, "Ablation-CAM: Visual Explanations for Deep
Convolutional Network via Gradient-free Localization"): gradient-free, each channel weighted by the
relative drop of the class score y_c (before the softmax) when it is set to 0,

    w_k = (y_c - y_c(A with A_k = 0)) / max(|y_c|, 1e-6),   map = sum_k w_k A_k

scored by the layers above the target alone (the engine builds the ablated rows inside its compiled
step), or by the whole model where the graph cannot be cut there. Open choices (the denominator,
max_masks, memory): docs/methods.md#ablation-cam.

Volumes: a 3-D layer's activations (B, d1, d2, d3, K) are ablated the same way, a channel's whole
(d1, d2, d3) grid set to 0, and scored by the layers above it (the engine's ablated rows are of any
rank; after a GlobalAveragePooling3D they are built after the pooling, as after a 2-D one).
"""

import numpy as np

from gradcam_cli.explain.methods.method import Method, spatial_axes
from gradcam_cli.explain.methods.options import MAX_MASKS, LibraryChoice, MethodOption

# The most bytes of ablated activation copies built at once.
MASK_BUDGET_BYTES = 256 * 2**20
# The smallest denominator |y_c| (with 'absolute': a score of 0 gives finite weights).
SCORE_FLOOR = 1e-6
# What the drops are divided by: max(|y_c|, SCORE_FLOOR), or y_c itself (pytorch-grad-cam).
DENOMINATOR = MethodOption("ablation_denominator", str, "absolute", "absolute: the drops are divided by |y_c| (at "
                           "least 1e-6), so a negative class score keeps the weights' signs; signed: by y_c itself "
                           "(pytorch-grad-cam), an image with y_c = 0 getting an empty map",
                           choices=("absolute", "signed"))


def channel_weights(result, context):
    """Ablation-CAM's channel weights w_k of each image of an batch.BatchResult: (B, K)
    float32. The context's options: max_masks, the channels ablated per image (None: all);
    ablation_denominator. Scored by the layers above the target when the graph can be cut
    there, else by the whole model (`whole_model_scores`)."""
    engine = result.engine
    try:
        engine.upper_cut()
        ablated_scores = engine.upper_scores_ablated
    except ValueError:  # a residual connection from below, a transformer's prefix tokens: the whole model
        ablated_scores = whole_model_scores(engine, result.inputs)
    return ablation_weights(result.activations, result.classes, engine.upper_scores,
                            max_masks=context.options["max_masks"], budget_bytes=MASK_BUDGET_BYTES,
                            multiple=engine.batch_size, ablated_scores=ablated_scores,
                            denominator=context.options["ablation_denominator"])


def whole_model_scores(engine, inputs):
    """An `ablated_scores(activations, images, channels)` that runs the whole model: row r is
    the preprocessed input images[r] with the target layer's channel channels[r] set to 0 as the
    forward pass goes through it (-1: none), in compiled chunks of the engine's scoring chunk (the
    rest in batches of its batch size).
    Each row costs a full forward pass (pytorch-grad-cam's AblationLayer does the same)."""
    from keras import ops

    def forward(rows, codes, tap):
        def rewrite(path, layer):
            if path != engine.target_path:
                return engine.loaded.logits_rewrite(path, layer)

            def ablate(*args, **kwargs):
                out = layer(*args, **kwargs)
                grid = out if engine.grid is None else engine.grid.to_grid(out)
                channels = int(grid.shape[-1])
                keep = 1.0 - ops.one_hot(codes - 1, channels, dtype=grid.dtype)  # code 0: one_hot(-1), all kept
                tap(ops.zeros(()))  # the forward step returns its tap: nothing of size
                grid = grid * ops.reshape(keep, (-1,) + (1,) * (len(grid.shape) - 2) + (channels,))
                return grid if engine.grid is None else engine.grid.to_tokens(grid, out)

            return ablate

        return ops.zeros((ops.shape(rows)[0],)), {"raw": engine.loaded.forward(rows, rewrite)}

    step = engine.compiled(("ablated-whole",), "forward", forward)
    inputs = np.asarray(inputs, dtype=np.float32)

    def scores(activations, images, channels):
        full, raw, start = engine.scoring_chunk, [], 0
        while start < len(images):  # full chunks, then the rest in batches: two compiled shapes at most
            size = full if len(images) - start >= full else min(engine.batch_size, full)
            part = np.arange(start, min(start + size, len(images)))
            rows = np.resize(part, size)  # a short last part padded with its own rows
            _, aux = step(inputs[images[rows]], (channels[rows] + 1).astype(np.int32))
            raw.append(ops.convert_to_numpy(aux["raw"])[: len(part)].astype(np.float32))
            start += len(part)
        return np.asarray(engine.loaded.head.scores(np.concatenate(raw)), dtype=np.float32)

    return scores



def ablated_channels(activations, max_masks=None):
    """(B, K) bool: the channels that are ablated and scored. An all-zero channel never is (its
    weight is 0); with `max_masks` N, only each image's N channels of largest L1 norm."""
    activations = np.asarray(activations, dtype=np.float32)
    norms = np.abs(activations).astype(np.float64).sum(axis=spatial_axes(activations))
    nonzero = norms > 0
    if max_masks is None:
        return nonzero
    if isinstance(max_masks, bool) or not isinstance(max_masks, (int, np.integer)) or max_masks < 1:
        raise ValueError(f"max_masks must be a whole number of channels, 1 or more. Received: max_masks={max_masks!r}")
    order = np.argsort(-norms, axis=1, kind="stable")[:, :max_masks]
    top = np.zeros_like(nonzero)
    np.put_along_axis(top, order, True, axis=1)
    return nonzero & top


def ablation_weights(activations, classes, upper_scores, max_masks=None, budget_bytes=MASK_BUDGET_BYTES, multiple=1,
                     ablated_scores=None, denominator=DENOMINATOR.default):
    """Ablation-CAM channel weights w_k = (y_c - y_c^k) / max(|y_c|, SCORE_FLOOR) (`denominator`
    'signed': / y_c, an image with y_c = 0 getting weights 0), (B, K) float32; 0 for the channels
    not ablated (ablated_channels).

    activations (B, h, w, K); classes (B,); upper_scores: a callable scoring target-layer
    activations (N, h, w, K) -> (N, classes), before the softmax (engine.upper_scores). Each image's
    unmodified activations and its ablated copies go to it in groups of at most `budget_bytes`, a
    multiple of `multiple` rows (the engine's batch size). `ablated_scores(activations, images,
    channels)` (engine.upper_scores_ablated), when given, scores the same rows with the copies made
    inside the compiled upper-graph step instead: no copy is built here."""
    if denominator not in DENOMINATOR.choices:
        raise ValueError(f"ablation_denominator must be one of {', '.join(DENOMINATOR.choices)}. "
                         f"Received: ablation_denominator={denominator!r}")
    activations = np.asarray(activations, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64)
    ablated = ablated_channels(activations, max_masks)
    weights = np.zeros(ablated.shape, dtype=np.float32)
    # One job per scored row, image after image: (image, -1) its unmodified activations, then
    # (image, k) with channel k ablated. An image with nothing to ablate is not scored at all.
    jobs = [(i, k) for i in range(len(activations)) if ablated[i].any()
            for k in [-1] + np.flatnonzero(ablated[i]).tolist()]
    if not jobs:
        return weights
    if ablated_scores is not None:  # the copies made inside the compiled step
        images = np.array([i for i, _ in jobs])
        channels = np.array([k for _, k in jobs])
        try:
            scored = np.asarray(ablated_scores(activations, images, channels), dtype=np.float32)
        except ValueError as error:
            raise ValueError(f"Ablation-CAM scores ablated activations with the layers above the target "
                             f"alone: {error}") from error
        return _weights(jobs, scored[np.arange(len(jobs)), classes[images]], weights, denominator)
    group = min(_group_size(activations[0].nbytes, budget_bytes, multiple), len(jobs))
    # One buffer for every group: a fresh group-sized array each time pays its page faults again.
    buffer = np.empty((group,) + activations.shape[1:], dtype=np.float32)
    chosen = np.empty(len(jobs), dtype=np.float32)  # per job, the score of its image's class
    for start in range(0, len(jobs), group):
        part = jobs[start : start + group]
        try:
            scored = np.asarray(upper_scores(_ablated_copies(activations, part, buffer)), dtype=np.float32)
        except ValueError as error:  # the graph cannot be cut at the target: say who needed it
            raise ValueError(f"Ablation-CAM scores ablated activations with the layers above the target "
                             f"alone: {error}") from error
        images = np.array([i for i, _ in part])
        chosen[start : start + len(part)] = scored[np.arange(len(part)), classes[images]]
    return _weights(jobs, chosen, weights, denominator)


def _weights(jobs, chosen, weights, denominator):
    """w_k = (y_c - y_c^k) / max(|y_c|, SCORE_FLOOR) ('signed': / y_c) from each job's score of
    its image's class."""
    original = {}
    for (i, k), score in zip(jobs, chosen):
        if k < 0:
            original[i] = score
        elif denominator == "signed":
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                weights[i, k] = np.float32(original[i] - score) / np.float32(original[i])  # numpy: no ZeroDivisionError
        else:
            weights[i, k] = (original[i] - score) / max(abs(float(original[i])), SCORE_FLOOR)
    if denominator == "signed":  # y_c = 0: inf or NaN weights (pytorch-grad-cam's NaN map): none at all
        weights[~np.isfinite(weights).all(axis=1)] = 0.0
    return weights


def _group_size(row_bytes, budget_bytes, multiple):
    count = max(1, int(budget_bytes) // max(1, int(row_bytes)))
    multiple = max(1, int(multiple))
    return count - count % multiple if count >= multiple else count


def _ablated_copies(activations, jobs, buffer):
    """The activations of `jobs` [(image, channel)], in order, written into the first rows of
    `buffer`: a copy of the image's activations with that channel set to 0 (channel -1: none)."""
    copies = buffer[: len(jobs)]
    images = np.array([i for i, _ in jobs])
    channels = np.array([k for _, k in jobs])
    starts = np.flatnonzero(np.diff(images, prepend=-1))  # jobs come image after image
    for start, end in zip(starts, np.append(starts[1:], len(jobs))):
        copies[start:end] = activations[images[start]]  # broadcast: no temporary
    rows = np.flatnonzero(channels >= 0)
    copies[rows, ..., channels[rows]] = 0.0  # (R, h, w, K) or a volume's (R, d1, d2, d3, K)
    return copies


METHOD = Method(
    "ablationcam",
    "Ablation-CAM: channel weights = the relative drop of the class score when the channel is set to 0, "
    "scored by the layers above the target alone",
    "Desai and Ramaswamy 2020, Ablation-CAM: Visual Explanations for Deep Convolutional Network via "
    "Gradient-free Localization",
    ("activations", "upper-graph-scores"),
    channel_weights=channel_weights,
    options=(MAX_MASKS, DENOMINATOR),
    choices=(LibraryChoice("ablation_denominator", "what the drop of the class score is divided by",
                           "|y_c|, at least 1e-6",
                           {"pytorch-grad-cam": ("signed", "y_c, no guard (y_c = 0 gives a NaN map; here an empty "
                                                 "one). Its ablated value min(A) - 1e7 on a layer with negative "
                                                 "activations is not reproduced: the ablated value stays 0"),
                            "tf-keras-vis": (None, "not offered")}),),
    volumes=True,
)
