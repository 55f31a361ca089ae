"""The run: sources -> images -> batches -> engine -> maps -> rendering -> files and records.

Each batch is one forward pass and one gradient per target (top-1 by default). A failure that
concerns one image (unreadable file, write error) is recorded and the run goes on.
"""

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gradcam_cli import maps, outputs, render
from gradcam_cli.engine import top_rank
from gradcam_cli.errors import GradcamError, ImageError, unexpected
from gradcam_cli.images import load_rgb, luminance, model_view
from gradcam_cli.methods import METHODS, Context
from gradcam_cli.methods.gradcam import strongest_channel
from gradcam_cli.methods.guided import guided_gradcam, saliency
from gradcam_cli.methods.pca import eigen_smooth as smooth
from gradcam_cli.models.graph import path_name
from gradcam_cli.models.preprocess import preprocess, pullback

log = logging.getLogger("gradcam_cli")


@dataclass
class Options:
    output_dir: Path
    method: str = "gradcam"
    classes: tuple = ()  # explicit class indices; empty = top-k
    top_k: int = 1
    save: tuple = ("heatmap", "overlay")
    colormap: str = "jet"
    alpha: float = 0.4
    crop: bool = False
    reference: object = None  # a LoadedModel whose predictions are reported beside (dilated copies)
    name: str = None  # what output files are named after (default: the method; api.output_name)
    details: dict = field(default_factory=dict)  # how the maps were made, for the records (api.Explainer.details)


@dataclass
class Report:
    done: int = 0
    failed: list = field(default_factory=list)  # (source, reason)
    empty_maps: int = 0


@dataclass(frozen=True)
class Target:
    code: int  # a class index, or top_rank(r)
    tag: object  # the file-name tag when an image gets several maps, else None


def targets(options):
    if options.classes:  # always in the name: a run for another class must not overwrite or skip it
        return [Target(c, f"class{c}") for c in options.classes]
    if options.top_k == 1:
        return [Target(top_rank(1), None)]
    return [Target(top_rank(r), f"top{r}") for r in range(1, options.top_k + 1)]


def predictions(loaded, probabilities, count=5):
    """The `count` most likely classes: [{class, label, probability}], most likely first."""
    order = np.argsort(-probabilities)[:count]
    return [
        {"class": int(i), "label": loaded.label(int(i)), "probability": _rounded(probabilities[i])}
        for i in order
    ]


def _rounded(value, digits=6):
    """A float for a JSON record, or None when it is not finite (JSON has no inf or NaN)."""
    value = float(value)
    return round(value, digits) if np.isfinite(value) else None


def _each(function, items, workers=None):
    """[function(item) for item in items], spread over the `workers` thread pool when given."""
    return list(map(function, items) if workers is None else workers.map(function, items))


def _load_one(source):
    try:
        return source, load_rgb(source.path), None
    except ImageError as error:
        return source, None, str(error)
    except Exception as error:  # a decoder's own failure (cv2.error, MemoryError...) is this file's
        return source, None, f"cannot decode: {unexpected(error)}"



def decode(sources, workers=None):
    """Decode a batch's images: [(source, rgb)] and [(source, reason)] for those that failed."""
    loaded = _each(_load_one, sources, workers)
    decoded = [(source, rgb) for source, rgb, reason in loaded if reason is None]
    return decoded, [(source, reason) for source, _, reason in loaded if reason is not None]


def _read(loaded, sources, crop, workers=None):
    """Reader threads' work: decode and prepare a batch, image by image on `workers` (OpenCV
    and Pillow release the GIL while they decode and resize)."""
    decoded, failed = decode(sources, workers)
    prepared = prepare(loaded, [rgb for _, rgb in decoded], crop, workers) if decoded else (None, [])
    return decoded, failed, prepared


# Batches decoded ahead of the model, and batches rendered behind it: memory stays bounded by
# these, however many images a folder holds.
READ_AHEAD = 2
WRITE_BEHIND = 2
# Threads that decode, colour and encode the images of those batches, one image each: a fast
# accelerator needs all the cores on I/O (PNG encoding alone takes ~10 ms for a 512x512 overlay).
IMAGE_WORKERS = min(32, os.cpu_count() or 1)


def run(loaded, engine, sources, options, context, on_result, on_failure, on_empty, progress=None, compute=None,
        layer=None, image_workers=None):
    """Explain every source; returns a Report. `compute(inputs, codes)` -> MapBatch computes a
    batch's maps (default: compute_maps with `engine`; api.Explainer.compute smooths and
    averages layers), `layer` names the layer(s) in the records (default: the engine's),
    `image_workers` the threads that decode and encode images (default IMAGE_WORKERS; a Ray
    worker given one core uses one).
    Callbacks: on_result(record) per image done,
    on_failure(source, reason[, record]) per image failed (with the image's record when one was
    made: a model output that is not finite), on_empty(source, class) per all-zero map; all
    called from this thread, in input order.

    A stream: reader threads decode and prepare the next batches while the model works on this
    one, and writer threads colour, encode and write the previous ones (bounded queues)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    report = Report()
    layer = layer or path_name(engine.target_path)
    if compute is None:
        compute = lambda inputs, codes: compute_maps(loaded, engine, inputs, codes, options.method, context)
    plan = targets(options)
    batches = [sources[start : start + engine.batch_size] for start in range(0, len(sources), engine.batch_size)]
    reads, writes = deque(), deque()

    def finish(future, count):
        for event in future.result():
            kind, source, value = event
            if kind == "result":
                report.done += 1
                on_result(value)
            elif kind == "empty":
                report.empty_maps += 1
                on_empty(source, value)
            elif kind == "unreadable":
                report.failed.append((source, value))
                on_failure(source, value)
            elif kind == "rejected":  # a record to report, but a failure
                report.failed.append((source, value[0]))
                on_failure(source, value[0], value[1])
            else:
                write_failed(report, source, value, on_failure)
        if progress is not None:
            progress(count)

    # Batch-level threads wait on the image-level pool, which waits on nothing: no deadlock.
    with ThreadPoolExecutor(READ_AHEAD, thread_name_prefix="gradcam-read") as readers, \
            ThreadPoolExecutor(WRITE_BEHIND, thread_name_prefix="gradcam-write") as writers, \
            ThreadPoolExecutor(image_workers or IMAGE_WORKERS, thread_name_prefix="gradcam-image") as workers:
        for batch in batches[:READ_AHEAD]:
            reads.append(readers.submit(_read, loaded, batch, options.crop, workers))
        for index, batch in enumerate(batches):
            decoded, failed, (inputs, boxes) = reads.popleft().result()
            if index + READ_AHEAD < len(batches):
                reads.append(readers.submit(_read, loaded, batches[index + READ_AHEAD], options.crop, workers))
            computed = None
            if decoded:
                computed, kept, reasons = _compute_pinned(compute, inputs, options, plan)
                failed = failed + [(decoded[i][0], reason) for i, reason in reasons]
                decoded, boxes = [decoded[i] for i in kept], [boxes[i] for i in kept]
            writes.append((writers.submit(_render_batch, loaded, batch, decoded, failed, boxes, computed, options,
                                          context, layer, workers), len(batch)))
            while len(writes) > WRITE_BEHIND:
                finish(*writes.popleft())
        while writes:
            finish(*writes.popleft())
    return report


def output_paths(source, options, target):
    """{kind: path} of every file a run with `options` writes for `source` and `target`: the
    --save kinds, and with `raw` for backprop methods the two gradient arrays (gradient-raw,
    gradcam-raw). The one place outputs are named."""
    def path(kind, extension=None):
        return outputs.output_path(options.output_dir, source.name, options.name or options.method, kind, target.tag,
                                   extension)

    paths = {kind: path(kind) for kind in options.save}
    if "raw" in options.save and METHODS[options.method].backprop:
        paths.update({f"{name}-raw": path(name, "npy") for name in ("gradient", "gradcam")})
    return paths


def pending(sources, expected):
    """The sources for which some path of `expected(source)` is not a file yet: what a resumed
    run still has to do (outputs are written atomically, so an existing file is complete)."""
    return [source for source in sources if not all(Path(p).is_file() for p in expected(source))]


def expected_outputs(source, options):
    """Every file a run with `options` writes for `source` (to skip sources already done)."""
    return [path for target in targets(options) for path in output_paths(source, options, target).values()]


def prepare(loaded, rgbs, crop=False, workers=None):
    """Images as the model sees them: a preprocessed batch, and the box each view covers. A
    1-channel model gets each view's luminance (images.luminance), then its preprocessing."""
    views = _each(lambda rgb: model_view(rgb, loaded.input_size, crop=crop), rgbs, workers)
    batch = np.stack([view for view, _ in views])
    if loaded.channels == 1:
        batch = luminance(batch)
    inputs = preprocess(batch, loaded.preprocess)
    return inputs, [box for _, box in views]


@dataclass
class MapBatch:
    small_maps: np.ndarray  # (B, h, w): ReLU(sum_k w_k A_k) at the layer's resolution
    classes: np.ndarray  # (B,) the class each map explains
    scores: np.ndarray  # (B, C) pre-softmax class scores
    probabilities: np.ndarray  # (B, C)
    input_gradients: np.ndarray = None  # (B, H, W, 3) d score / d RGB input, for backprop methods
    weighted_sums: np.ndarray = None  # (B, h, w): sum_k w_k A_k before the ReLU
    details: list = None  # per image, what its record says of the map (Finer-CAM's compared classes...)

    def guided(self, i):
        """Image i's input gradient times its map (Guided Grad-CAM), at the model's input size."""
        return guided_gradcam(self.input_gradients[i], self.small_maps[i])


def compute_maps(loaded, engine, inputs, codes, method="gradcam", context=Context(), strongest=False,
                 eigen_smooth=False):
    """One forward pass and gradient for a prepared batch; `codes` gives each image's target
    (a class index, or top_rank(r)); `context` from methods.context_for. `strongest`: a
    variant for channel-weight methods, the map of the channel with the largest weight alone.
    `eigen_smooth`: the first principal component of the channels' parts of the map instead of
    their sum (methods/pca.py); GradcamError for a method whose map is no such sum."""
    chosen = METHODS[method]
    if eigen_smooth and not chosen.smoothable:
        raise GradcamError(f"eigen smoothing takes the principal component of a map's channel terms; {method}'s "
                           "map is not a sum over channels")
    backprop = chosen.backprop
    objective = chosen.objective(context) if chosen.objective is not None else None
    result = engine.run(inputs, np.asarray(codes), backprop=backprop, gradients=chosen.gradients, objective=objective,
                        hessian=chosen.hessian)
    if backprop is not None and context.samples:  # `guided --smoothgrad N`: those gradients, smoothed
        from gradcam_cli.methods.input_attribution import smoothgrad

        result.input_gradients = smoothgrad(engine, result.inputs, result.classes, context.samples, context.noise,
                                            backprop=backprop)
    details = None
    if chosen.channel_weights is not None:
        weights = chosen.channel_weights(result, context)
        if strongest:
            weights = strongest_channel(weights)
        if eigen_smooth:
            weighted = smooth(result.activations * np.asarray(weights, np.float32)[:, None, None, :])
        else:
            weighted = maps.weighted_sum(result.activations, weights)
    elif chosen.contributions is not None:
        parts = np.asarray(chosen.contributions(result, context), dtype=np.float32)
        weighted = smooth(parts) if eigen_smooth else parts.sum(axis=3)
    else:
        weighted = chosen.spatial_map(result, context)
        if isinstance(weighted, tuple):  # (map, per-image details for the records)
            weighted, details = weighted
        weighted = np.asarray(weighted, dtype=np.float32)
    if result.compared is not None:
        details = [dict(d, compared_classes=[int(c) for c in row]) for d, row in
                   zip(details or [{}] * len(result.compared), result.compared)]
    return MapBatch(
        small_maps=maps.relu(weighted),
        weighted_sums=weighted,
        classes=result.classes,
        scores=np.asarray(loaded.head.scores(result.raw_outputs)),
        probabilities=loaded.head.probabilities(result.raw_outputs),
        input_gradients=None if backprop is None else pullback(result.input_gradients, loaded.preprocess),
        details=details,
    )


def localization_map(computed, i, box, image_shape, method):
    """Image i's map at the image's resolution, normalised to [0, 1]: the class activation map,
    or for backprop methods the saliency (largest magnitude over colours) of the Guided
    Grad-CAM product."""
    if METHODS[method].backprop is None:
        return full_map(computed.small_maps[i], box, image_shape)[1]
    return saliency_map(computed.guided(i), box, image_shape)[0]


def saliency_map(gradient, box, image_shape):
    """An (H, W, 3) gradient's saliency (largest magnitude over colours) at the image's
    resolution, normalised to [0, 1]; and whether it is zero everywhere."""
    return maps.normalise(maps.resize_into_box(saliency(gradient), box, image_shape))


def gradient_picture(gradient, box, image_shape):
    """A gradient (H, W[, C]) drawn centred at mid-grey, resized onto the image: uint8, RGB for
    a colour gradient (a 1-channel model's gradient drawn in grey), 2-D for a 2-D one."""
    picture = render.to_uint8(maps.resize_into_box(render.gradient_image(gradient), box, image_shape, fill=0.5))
    if picture.ndim == 3 and picture.shape[2] == 1:
        picture = np.repeat(picture, 3, axis=2)
    return picture


def gradient_stats(gradient):
    """What the JSON record says of an (H, W, 3) input gradient."""
    rms = float(np.sqrt(np.mean(np.square(gradient))))
    return {"rms": rms, "empty": rms == 0.0, "resolution": [int(gradient.shape[1]), int(gradient.shape[0])]}


def map_overlay(rgb, colored, box, alpha):
    """The coloured map blended onto the image inside the model's view `box`; outside it (what a
    centre crop cut away, where there is no map) the image is left as it is."""
    return render.outside_box(render.overlay(rgb, colored, alpha), rgb, box)


def full_map(small_map, box, image_shape, relu_after_resize=False):
    """The map at the image's resolution: (raw heat, normalised to [0, 1], empty flag).
    relu_after_resize: `small_map` is the weighted sum before its ReLU, applied after upsampling
    (a variant, for comparison: a negative value then bleeds into its neighbours)."""
    heat = maps.upsample(small_map, box, image_shape)
    if relu_after_resize:
        heat = maps.relu(heat)
    normalised, empty = maps.normalise(heat)
    return heat, normalised, empty


def predict(loaded, inputs):
    """Class probabilities of `loaded`'s model for a prepared batch (one forward pass, no gradient)."""
    from keras import ops

    return loaded.head.probabilities(ops.convert_to_numpy(loaded.forward(inputs, loaded.logits_rewrite)))


@dataclass
class Computed:
    """One batch's maps: per target (Target, MapBatch), and the compute seconds per image."""

    per_target: list
    seconds: float
    reference: np.ndarray = None  # the reference model's probabilities (dilated copies)


def _compute_pinned(compute, inputs, options, plan):
    """_compute_batch, and when it fails, image by image, so that a failure is pinned to the
    image that causes it and the others go on. Returns (Computed of the images kept or None,
    their indices, [(index, reason)] of the others)."""
    count = len(inputs)
    try:
        return _compute_batch(compute, inputs, count, options, plan), list(range(count)), []
    except Exception as error:
        if count == 1:
            log.info("computing the maps failed", exc_info=True)
            return None, [], [(0, f"cannot compute the maps: {unexpected(error)}")]
    singles, kept, reasons = [], [], []
    for i in range(count):
        computed, _, failed = _compute_pinned(compute, inputs[i : i + 1], options, plan)
        if failed:
            reasons.append((i, failed[0][1]))
        else:
            singles.append(computed)
            kept.append(i)
    return (_concatenate(singles) if singles else None), kept, reasons


def _concatenate(parts):
    """Single-image Computed results joined into one batch's."""
    per_target = []
    for k, (target, first) in enumerate(parts[0].per_target):
        joined = {}
        for name in MapBatch.__dataclass_fields__:
            values = [part.per_target[k][1].__dict__[name] for part in parts]
            joined[name] = (None if values[0] is None else sum(values, []) if isinstance(values[0], list)
                            else np.concatenate(values))
        per_target.append((target, MapBatch(**joined)))
    references = [part.reference for part in parts]
    reference = None if references[0] is None else np.concatenate(references)
    return Computed(per_target, float(np.mean([part.seconds for part in parts])), reference)


def _compute_batch(compute, inputs, count, options, plan):
    started = time.perf_counter()
    per_target = [(target, compute(inputs, np.full(count, target.code))) for target in plan]
    seconds = (time.perf_counter() - started) / count
    reference = None if options.reference is None else predict(options.reference, inputs)
    return Computed(per_target, seconds, reference)


def _render_batch(loaded, sources, batch, unreadable, boxes, computed, options, context, layer, workers=None):
    """Writer threads' work: every image's files and record, image by image on `workers`. Returns
    events for the main thread in the order of `sources`: ("result", source, record), ("empty",
    source, class), ("failed", source, OSError) for a write error, ("unreadable", source, reason)
    for a decoding error."""
    events = {id(source): [("unreadable", source, reason)] for source, reason in unreadable}
    def render(i):
        source, rgb = batch[i]
        return _render_image(loaded, source, rgb, boxes[i], i, computed, options, context, layer)

    for (source, _), image_events in zip(batch, _each(render, range(len(batch)), workers)):
        events[id(source)] = image_events
    return [event for source in sources for event in events[id(source)]]


def _render_image(loaded, source, rgb, box, i, computed, options, context, layer):
    """Image i's files and record, as events (see _render_batch)."""
    probabilities = computed.per_target[0][1].probabilities
    record = {
        "input": str(source.path),
        "model": loaded.name,
        "method": options.method,
        "layer": layer,
        **options.details,
        "precision": loaded.precision,
        "output": loaded.output.name,
        "channels": loaded.colour,
        "image_size": [int(rgb.shape[1]), int(rgb.shape[0])],  # [width, height], as every [x, y] here
        "predictions": predictions(loaded, probabilities[i]),
        "maps": [],
        "seconds": round(computed.seconds, 4),  # computing the maps, per image (batch time / batch size)
    }
    if loaded.warnings:
        record["warnings"] = list(loaded.warnings)
    if computed.reference is not None:
        record["reference_model"] = options.reference.name
        record["reference_predictions"] = predictions(options.reference, computed.reference[i])
    if context.relus is not None:
        record["backprop"] = context.relus.as_record(METHODS[options.method].backprop)
    scores = computed.per_target[0][1].scores[i]
    if not np.isfinite(scores).all():
        bad = int((~np.isfinite(scores)).sum())
        reason = (f"the model's output is not finite ({bad} of {scores.size} class scores are inf or NaN): "
                  "no map written")
        record.update(error=reason, warning="non-finite model output; such numbers are null here")
        return [("rejected", source, (reason, record))]
    empties = []
    try:
        for target, result in computed.per_target:
            class_index = int(result.classes[i])
            paths = output_paths(source, options, target)
            entry = render_map(loaded.label(class_index), rgb, box, result.small_maps[i], class_index,
                                float(result.scores[i, class_index]), float(probabilities[i, class_index]),
                                paths, options)
            if result.details is not None:
                entry.update(result.details[i])
            if result.input_gradients is not None:
                entry["gradient"] = render_gradients(rgb, box, result.input_gradients[i], result.guided(i),
                                                      paths, entry["outputs"])
            if entry["stats"]["empty"]:
                empties.append(("empty", source, entry["class"]))
            record["maps"].append(entry)
    except OSError as error:
        return [("failed", source, error)]
    except Exception as error:  # this image's rendering failed: the others go on
        log.info("rendering %s failed", source.path, exc_info=True)
        return [("unreadable", source, f"cannot render the outputs: {unexpected(error)}")]
    return empties + [("result", source, record)]


def write_failed(report, source, error, on_failure):
    reason = f"cannot write outputs: {error.strerror or error}"
    report.failed.append((source, reason))
    on_failure(source, reason)


def render_map(label, rgb, box, small_map, class_index, score, probability, paths, options):
    """The map's files (heatmap, overlay, raw: those in `paths`) and its JSON entry."""
    heat, normalised, empty = full_map(small_map, box, rgb.shape)
    written = {}
    if "heatmap" in paths or "overlay" in paths:
        colored = render.colorize(normalised, options.colormap)
        if "heatmap" in paths:
            written["heatmap"] = outputs.write_png(paths["heatmap"], render.outside_box(colored, rgb, box))
        if "overlay" in paths:
            written["overlay"] = outputs.write_png(paths["overlay"], map_overlay(rgb, colored, box, options.alpha))
    if "raw" in paths:
        written["raw"] = outputs.write_npy(paths["raw"], heat)
    return {
        "class": class_index,
        "label": label,
        "score": round(score, 6),
        "probability": round(probability, 6),
        "outputs": written,
        "stats": maps.statistics(small_map, normalised, empty),
    }


def render_gradients(rgb, box, gradient, product, paths, written):
    """The input gradient and its product with the map (Guided Grad-CAM) as pictures, colour and
    greyscale, and with `raw` both arrays at the model's input size (H, W, 3), RGB: the kinds in
    `paths`, added to `written`. Returns the gradient's statistics for the JSON entry."""
    for name, array in (("gradient", gradient), ("gradcam", product)):
        for kind, image in ((name, array), (f"{name}-gray", render.gray(array))):
            if kind in paths:
                written[kind] = outputs.write_png(paths[kind], gradient_picture(image, box, rgb.shape))
        if f"{name}-raw" in paths:
            written[f"{name}-raw"] = outputs.write_npy(paths[f"{name}-raw"], array)
    return gradient_stats(gradient)
