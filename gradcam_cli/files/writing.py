"""What a run writes for each image: its files (named in one place, `output_paths`) and its JSON
record. Numpy and OpenCV only: a Ray driver reads Report from here without loading Keras."""

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gradcam_cli.errors import GradcamError, unexpected
from gradcam_cli.explain import maps
from gradcam_cli.files import outputs, records, render

log = logging.getLogger("gradcam_cli")

RECORD_TAG_CHARACTERS = 24  # a record's tag, longer than any one map's, is hashed beyond this
TOP_RANK = -1  # the target code of an image's top-1 class (explain.batch.top_rank(1))


@dataclass
class FileOptions:
    """What a run writes, and how its files are named: files.writer.plan_outputs makes one."""

    output_dir: Path
    method: str = "gradcam"
    classes: tuple = ()  # explicit class indices; empty = top-k
    top_k: int = 1
    save: tuple = ("heatmap", "overlay")
    colormap: str = "jet"
    alpha: float = 0.4
    crop: bool = False
    reference: object = None  # a LoadedModel whose predictions are reported beside (dilated copies)
    name: str = None  # what output files are named after (default: the method; methods.output_name)
    details: dict = field(default_factory=dict)  # how the maps were made, for the records (api.Explainer.details)
    gradients: bool = False  # the method draws input gradients too (guided, deconvnet): their files with `raw`
    bound: object = None  # an explain.targets.Bound other than a class: its one map per image, named by its tag
    records: bool = True  # each image's record file beside its outputs (files.records): what resuming reads
    request: str = None  # the digest of what the run asks for (files.records.request_key; files.writer makes it)
    volumes: bool = False  # the model takes volumes: inputs are read as files.volumes.Volume (files.stream)
    window: tuple = None  # a volume's (low, high) intensity window: clipped and scaled to [0, 1] (volumes.window)
    max_voxels: int = None  # the voxel limit of a volume file (None: files.volumes.DEFAULT_MAX_VOXELS)


@dataclass
class Report:
    """What a run did: images done, images failed with their reasons, maps zero everywhere."""

    done: int = 0  # images done, those an earlier run finished included
    failed: list = field(default_factory=list)  # (source, reason)
    empty_maps: int = 0
    resumed: int = 0  # images an earlier run finished (their stored records emitted)


@dataclass(frozen=True)
class PlannedMap:
    """One map each image gets, and the tag its files are named by."""

    code: int  # a class index, or a top rank (-1 the top class, -2 the second...)
    tag: object  # the file-name tag when an image gets several maps, else None


def planned_maps(options):
    """The maps each image gets: a target's one (named by its tag), else one per explicit class,
    else one per top rank."""
    if options.bound is not None:
        return [PlannedMap(options.bound.code, options.bound.target.tag)]
    if options.classes:  # always in the name: a run for another class must not overwrite or skip it
        return [PlannedMap(c, f"class{c}") for c in options.classes]
    if options.top_k == 1:
        return [PlannedMap(TOP_RANK, None)]
    return [PlannedMap(-r, f"top{r}") for r in range(1, options.top_k + 1)]


def output_paths(source, options, planned):
    """{kind: path} of every file a run with `options` writes for `source` and one planned map: the
    --save kinds, with `raw` for gradient methods the two gradient arrays (gradient-raw,
    gradcam-raw), and with `overlay` for a model of volumes the tile sheet (`sheet`: a volume's
    slices or a clip's frames, files.sheets). The one place outputs are named."""
    def path(kind, extension=None):
        return outputs.output_path(options.output_dir, source.name, options.name or options.method, kind, planned.tag,
                                   extension)

    paths = {kind: path(kind) for kind in options.save}
    if "raw" in options.save and options.gradients:
        paths.update({f"{name}-raw": path(name, "npy") for name in ("gradient", "gradcam")})
    if options.volumes and "overlay" in options.save:
        paths[outputs.SHEET_KIND] = path(outputs.SHEET_KIND)
    return paths


def record_tag(options):
    """The tag of an image's record file: its maps' tags joined (None for one untagged map), so
    that runs for other classes or targets keep their own records."""
    tags = [planned.tag for planned in planned_maps(options) if planned.tag]
    if not tags:
        return None
    joined = "+".join(tags)
    if len(joined) <= RECORD_TAG_CHARACTERS:
        return joined
    # many classes: a digest keeps the record's name as short as its maps' names
    return f"maps-{hashlib.sha256(joined.encode('utf-8')).hexdigest()[:16]}"


def record_path(source, options):
    """Where `source`'s record lies under `options` (files.records)."""
    return records.record_path(source, options, record_tag(options))


def written_paths(source, options):
    """Every file a run with `options` writes for `source`: its outputs, then its record."""
    paths = [path for planned in planned_maps(options) for path in output_paths(source, options, planned).values()]
    return paths + ([record_path(source, options)] if options.records else [])


def rounded(value, digits=6):
    """A float for a JSON record, or None when it is not finite (JSON has no inf or NaN)."""
    value = float(value)
    return round(value, digits) if np.isfinite(value) else None


def predictions(loaded, probabilities, count=5):
    """The `count` most likely classes: [{class, label, probability}], most likely first."""
    order = np.argsort(-probabilities)[:count]
    return [{"class": int(i), "label": loaded.label(int(i)), "probability": rounded(probabilities[i])}
            for i in order]


def gradient_stats(gradient):
    """What the JSON record says of an (H, W, 3) input gradient."""
    rms = float(np.sqrt(np.mean(np.square(gradient))))
    return {"rms": rms, "empty": rms == 0.0, "resolution": [int(gradient.shape[1]), int(gradient.shape[0])]}


def render_map(label, rgb, box, small_map, class_index, score, probability, paths, options):
    """The map's files (heatmap, overlay, raw: those in `paths`) and its JSON entry."""
    heat, normalised, empty = maps.full_map(small_map, box, rgb.shape)
    written = {}
    if "heatmap" in paths or "overlay" in paths:
        colored = render.colorize(normalised, options.colormap)
        if "heatmap" in paths:
            written["heatmap"] = outputs.write_png(paths["heatmap"], render.outside_box(colored, rgb, box))
        if "overlay" in paths:
            written["overlay"] = outputs.write_png(paths["overlay"], render.map_overlay(rgb, colored, box,
                                                                                        options.alpha))
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
                written[kind] = outputs.write_png(paths[kind], render.gradient_picture(image, box, rgb.shape))
        if f"{name}-raw" in paths:
            written[f"{name}-raw"] = outputs.write_npy(paths[f"{name}-raw"], array)
    return gradient_stats(gradient)


@dataclass
class Computed:
    """One batch's maps: per planned map (PlannedMap, explain.compute.MapBatch), the compute seconds per
    image, and the reference model's probabilities (dilated copies) or None."""

    per_map: list
    seconds: float
    reference: np.ndarray = None

    def take(self, indices):
        """The images at `indices` alone."""
        return Computed([(planned, batch.take(indices)) for planned, batch in self.per_map], self.seconds,
                        None if self.reference is None else self.reference[np.asarray(indices, dtype=np.int64)])

    @classmethod
    def joined(cls, parts):
        """Single-image Computed results joined into one batch's."""
        per_map = [(planned, type(first).joined([part.per_map[k][1] for part in parts]))
                   for k, (planned, first) in enumerate(parts[0].per_map)]
        references = [part.reference for part in parts]
        reference = None if references[0] is None else np.concatenate(references)
        return cls(per_map, float(np.mean([part.seconds for part in parts])), reference)


def image_events(loaded, source, rgb, box, i, computed, options, layer):
    """Image i's files and record, as events: ("result", source, record), ("empty", source,
    class) per map zero everywhere, ("rejected", source, (reason, record)) for a model output
    that is not finite, ("failed", source, OSError) for a write error, ("unreadable", source,
    reason) when rendering failed. `rgb`: the decoded image, or a files.volumes.Volume (its
    files and record: files.volume_outputs)."""
    from gradcam_cli.files import clip_outputs, volume_outputs

    volume = rgb if hasattr(rgb, "affine") else None
    probabilities = computed.per_map[0][1].probabilities
    record = {
        "input": str(source.path),
        "model": loaded.name,
        "method": options.method,
        "layer": layer,
        **options.details,
        "precision": loaded.precision,
        "output": loaded.output.name,
        "channels": loaded.colour,
        **({"image_size": [int(rgb.shape[1]), int(rgb.shape[0])]}  # [width, height], as every [x, y] here
           if volume is None else {}),
        **({"predictions": predictions(loaded, probabilities[i])} if options.bound is None else {}),
        "maps": [],
        "seconds": round(computed.seconds, 4),  # computing the maps, per image (batch time / batch size)
    }
    if loaded.warnings:
        record["warnings"] = list(loaded.warnings)
    if computed.reference is not None:
        record["reference_model"] = options.reference.name
        record["reference_predictions"] = predictions(options.reference, computed.reference[i])
    scores = computed.per_map[0][1].scores[i]
    if not np.isfinite(scores).all():
        bad = int((~np.isfinite(scores)).sum())
        reason = (f"the model's output is not finite ({bad} of {scores.size} class scores are inf or NaN): "
                  "no map written")
        record.update(error=reason, warning="non-finite model output; such numbers are null here")
        return [("rejected", source, (reason, record))]
    reason = (computed.per_map[0][1].details or [{}] * (i + 1))[i].get("target_refusal")
    if reason is not None:  # a target this image does not have: nothing predicted as the class, no box matched
        return [("rejected", source, (reason, dict(record, error=reason)))]
    if volume is not None:  # a clip's NIfTI: refused before anything is removed or written
        try:
            volume_outputs.check_nifti(volume.kind, options.save)
        except GradcamError as error:
            return [("unreadable", source, str(error))]
    empties = []
    try:
        if options.records:  # first: an earlier run's record must not vouch for the files rewritten now
            Path(record_path(source, options)).unlink(missing_ok=True)
        for planned, result in computed.per_map:
            class_index = int(result.classes[i])
            paths = output_paths(source, options, planned)
            label, score = loaded.label(class_index), float(result.scores[i, class_index])
            if volume is None:
                entry = render_map(label, rgb, box, result.small_maps[i], class_index, score,
                                   float(probabilities[i, class_index]), paths, options)
            else:
                entry = clip_outputs.render_map(label, volume.array, result.small_maps[i], class_index, score,
                                                float(probabilities[i, class_index]), paths, options, volume)
            if result.details is not None:
                entry.update(result.details[i])
            if options.bound is not None:
                entry["target"] = options.bound.describe(entry["score"], {key: entry.pop(key) for key in list(entry)
                                                                           if key.startswith("target_")})
                del entry["probability"]
            if result.input_gradients is not None and volume is None:
                entry["gradient"] = render_gradients(rgb, box, result.input_gradients[i], result.gradient_times_map(i),
                                                     paths, entry["outputs"])
            elif result.input_gradients is not None:  # a clip's too: its (T, H, W) as a volume's montage
                entry["gradient"] = volume_outputs.render_volume_gradients(
                    volume.array, result.input_gradients[i], result.gradient_times_map(i), paths, entry["outputs"],
                    options, volume)
            if entry["stats"]["empty"]:
                empties.append(("empty", source, entry["class"]))
            record["maps"].append(entry)
        if volume is not None:
            record["volume"] = volume_outputs.volume_record(volume, record["maps"], options.window)
            if volume.kind == "clip":
                record["clip"] = clip_outputs.clip_record(volume, record["maps"])
        if options.records:  # last: an image with a record file has all its files
            records.write_record(record_path(source, options), source, options.request, record)
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


def dispatch(events, on_result=None, on_failure=None, on_empty=None, progress=None):
    """A run's events (files.writer.stream_outputs) handed to callbacks, in order: on_result(record),
    on_failure(source, reason[, record]), on_empty(source, class_index), progress(n). Returns the
    run's Report."""
    report = Report()
    ignore = lambda *args: None
    on_result, on_failure, on_empty = on_result or ignore, on_failure or ignore, on_empty or ignore
    for kind, source, value in events:
        if kind in ("result", "resumed"):
            report.done += 1
            report.resumed += kind == "resumed"
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
        elif kind == "failed":
            write_failed(report, source, value, on_failure)
        elif progress is not None:
            progress(value)
    return report
