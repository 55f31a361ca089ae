"""Measuring maps against known object positions: pointing game, energy in the box, box IoU,
class discrimination, each beside its chance level.

A map is a float array in [0, 1] at the image's resolution; an object has a mask and a box.
"""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gradcam_cli.inputs import MASK_SUFFIX, is_mask  # noqa: F401 (eval and compare read it here)
from gradcam_cli.maps import bounding_box

# The pointing game's tolerance: 15 pixels at 224x224 (Zhang et al. 2016), scaled to the image.
POINTING_TOLERANCE_AT_224 = 15


def pointing_hit(normalised, mask, tolerance):
    """The map's maximum lies on the object, or within `tolerance` pixels of it."""
    if normalised.max(initial=0.0) <= 0:
        return False
    y, x = np.unravel_index(int(np.argmax(normalised)), normalised.shape)
    return _near(mask, x, y, tolerance)


def _near(mask, x, y, tolerance):
    distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    return bool(distance[y, x] <= tolerance)


def energy_in_box(normalised, box):
    """The share of the map's total mass that lies inside `box`."""
    total = float(normalised.sum())
    if total <= 0:
        return 0.0
    x0, y0, x1, y1 = box
    return float(normalised[y0:y1, x0:x1].sum()) / total


def box_iou(a, b):
    if a is None or b is None:
        return 0.0
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def tolerance_for(shape):
    return POINTING_TOLERANCE_AT_224 * max(shape[:2]) / 224.0


def single_figures(normalised, scene_object, threshold=0.5):
    """One map's figures against one object: pointing hit, energy in its box, box IoU."""
    return {
        "pointing": pointing_hit(normalised, scene_object.mask, tolerance_for(normalised.shape)),
        "energy_in_box": energy_in_box(normalised, scene_object.box),
        "box_iou": box_iou(bounding_box(normalised, threshold), scene_object.box),
    }


def rank_correlation(a, b, side=64):
    """Spearman's rank correlation of two maps of one shape, compared on at most side x side
    pixels (area-averaged); ties get their average rank, so the zeros of ReLU'd maps count as
    one shared rank. NaN when a map is constant."""
    a, b = (_shrink(np.asarray(m, dtype=np.float32), side).ravel() for m in (a, b))
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else float("nan")


def _shrink(image, side):
    height, width = image.shape[:2]
    if max(height, width) <= side:
        return image
    scale = side / max(height, width)
    return cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)


def _average_ranks(values):
    unique, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + ends - 1) / 2.0)[inverse.ravel()]


@dataclass
class Scores:
    """Per-image figures, averaged by `summary`."""

    pointing: list
    energy: list
    iou: list
    discrimination: list

    @classmethod
    def empty(cls):
        return cls([], [], [], [])

    def add_single(self, normalised, scene_object, threshold=0.5):
        figures = single_figures(normalised, scene_object, threshold)
        self.pointing.append(figures["pointing"])
        self.energy.append(figures["energy_in_box"])
        self.iou.append(figures["box_iou"])

    def add_pair(self, map_for_a, object_a, object_b):
        """Class discrimination: the map for A's class puts more mass on A than on B."""
        self.discrimination.append(energy_in_box(map_for_a, object_a.box) > energy_in_box(map_for_a, object_b.box))

    def summary(self):
        mean = lambda values: float(np.mean(values)) if values else None
        return {
            "pointing": mean(self.pointing),
            "energy_in_box": mean(self.energy),
            "box_iou": mean(self.iou),
            "localized_iou50": mean([v >= 0.5 for v in self.iou]) if self.iou else None,
            "discrimination": mean(self.discrimination),
        }


def chance_maps(shape):
    """Baselines: a uniform map (energy, IoU, discrimination) and a centre point (pointing)."""
    uniform = np.ones(shape[:2], dtype=np.float32)
    centre = np.zeros(shape[:2], dtype=np.float32)
    centre[shape[0] // 2, shape[1] // 2] = 1.0
    return uniform, centre


def _in_batches(items, size):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def explainers_for(loaded, methods, layer=None, batch_size=32, pool="mean"):
    """{method: api.Explainer} for `loaded` at `layer`, sharing engines and dilated copies.
    GradcamError (LayerError) naming the method when one does not apply."""
    from gradcam_cli.api import Explainer
    from gradcam_cli.errors import LayerError

    shared, explainers = {}, {}
    for method in methods:
        explainer = Explainer(loaded, method, layer=layer, batch_size=batch_size, pool=pool)
        try:
            explainer.build(shared)
        except LayerError as error:
            raise LayerError(f"{method}: {error.args[0]}") from None
        explainers[method] = explainer
    return explainers


def _maps_for(explainer, images, codes):
    """Normalised maps at each image's resolution for the given target codes, and each image's
    top-1 class (read from the same forward pass's scores)."""
    from gradcam_cli.pipeline import localization_map

    size = explainer.build().engine.batch_size
    normalised, predicted = [], []
    for batch, batch_codes in zip(_in_batches(images, size), _in_batches(list(codes), size)):
        inputs, boxes = explainer.prepare(batch)
        computed = explainer.compute(inputs, batch_codes)
        predicted.extend(int(c) for c in np.argmax(computed.scores, axis=1))
        for i, rgb in enumerate(batch):
            normalised.append(localization_map(computed, i, boxes[i], rgb.shape, explainer.method))
    return normalised, predicted


def _chance(images, objects, threshold, pairs):
    chance = Scores.empty()
    for image, obj in zip(images, objects):
        uniform, centre = chance_maps(image.shape)
        chance.pointing.append(pointing_hit(centre, obj.mask, tolerance_for(image.shape)))
        chance.energy.append(energy_in_box(uniform, obj.box))
        chance.iou.append(box_iou(bounding_box(uniform, threshold), obj.box))
    summary = chance.summary()
    summary["discrimination"] = 0.5 if pairs else None  # a coin toss between the two objects
    return summary


def _score_singles(explainer, images, objects, codes, threshold, shuffled):
    """Scores of one method on one-object images, and the images' top-1 classes."""
    scores = Scores.empty()
    maps_, predicted = _maps_for(explainer, images, codes)
    for i, normalised in enumerate(maps_):
        scores.add_single(normalised, objects[(i + 1) % len(objects) if shuffled else i], threshold)
    return scores, predicted


def _model(explainers):
    """The model the explainers explain (the original, for dilated copies)."""
    built = next(iter(explainers.values())).build()
    return built.reference or built.loaded


def evaluate(explainers, count=200, pairs=100, seed=1, threshold=0.5, control=None):
    """Localization figures of each method on `count` generated one-object scenes (each explained
    for its object's class) and `pairs` two-object scenes (class discrimination).

    explainers: {method: api.Explainer} of one model (explainers_for). control: None, or
    'shuffled' (each map is scored against another scene's object: a negative control that
    must score near chance). Each method's figures include the top-1 accuracy of its network
    (a dilated copy's own); `accuracy` is the first method's.
    """
    from gradcam_cli import synthetic

    size = _model(explainers).input_size[0]
    scenes = [synthetic.generate(i, seed, size) for i in range(count)]
    two = [synthetic.generate(i, seed, size, two_objects=True) for i in range(pairs)]
    images = [scene.image for scene in scenes]
    objects = [scene.objects[0] for scene in scenes]
    shuffled = control == "shuffled"
    report = {"scenes": count, "pairs": pairs, "seed": seed, "control": control, "methods": {}}
    for method, explainer in explainers.items():
        scores, predicted = _score_singles(explainer, images, objects, [o.class_index for o in objects], threshold,
                                           shuffled)
        accuracy = float(np.mean([p == o.class_index for p, o in zip(predicted, objects)]))
        report.setdefault("accuracy", accuracy)
        for first, second in ((0, 1), (1, 0)) if pairs else ():
            codes = [s.objects[first].class_index for s in two]
            for i, normalised in enumerate(_maps_for(explainer, [s.image for s in two], codes)[0]):
                j = (i + 1) % pairs if shuffled else i
                scores.add_pair(normalised, two[j].objects[first], two[j].objects[second])
        report["methods"][method] = {**scores.summary(), "accuracy": accuracy}
    report["chance"] = _chance(images, objects, threshold, pairs)
    return report




def read_mask(image_path, shape):
    """The object in the mask beside `image_path` (non-zero pixels), for an image of `shape`.
    ImageError when there is none, or it does not fit the image, or it is empty."""
    from gradcam_cli.errors import ImageError
    from gradcam_cli.images import load_rgb

    mask_path = image_path.with_name(image_path.name.rsplit(".", 1)[0] + MASK_SUFFIX)
    if not mask_path.is_file():
        raise ImageError(f"no mask {mask_path.name} beside it")
    mask = load_rgb(mask_path).max(axis=2)
    if mask.shape != tuple(shape[:2]):
        raise ImageError(f"the mask is {mask.shape[1]}x{mask.shape[0]}, the image {shape[1]}x{shape[0]}")
    if not mask.any():
        raise ImageError("the mask is empty")
    return annotated_object(mask)


def read_boxes(path):
    """Object boxes from a COCO-style JSON file: {file name: [(x0, y0, x1, y1), ...]}, from its
    "images" (id, file_name) and "annotations" (image_id, bbox [x, y, width, height], in pixels).
    A file name matches an input by its name or its path's end. GradcamError for a file that
    cannot be read or is not of that shape."""
    import json

    from gradcam_cli.errors import GradcamError

    try:
        data = json.loads(Path(path).read_text())
        names = {image["id"]: str(image["file_name"]) for image in data["images"]}
        boxes = {name: [] for name in names.values()}
        for annotation in data["annotations"]:
            x, y, width, height = (float(v) for v in annotation["bbox"])
            if width <= 0 or height <= 0:
                raise ValueError(f"annotation {annotation.get('id', '?')}: an empty bbox {annotation['bbox']}")
            boxes[names[annotation["image_id"]]].append((x, y, x + width, y + height))
    except OSError as error:
        raise GradcamError(f"cannot read the boxes file {path}: {error.strerror or error}") from None
    except (ValueError, KeyError, TypeError) as error:
        raise GradcamError(f"boxes file {path}: not COCO-style JSON (images with id and file_name, annotations "
                           f"with image_id and bbox [x, y, width, height]): {type(error).__name__}: {error}") from None
    return boxes


def _boxes_for(image_path, boxes):
    """The boxes of `image_path` in read_boxes' dict (matched by the longest file name that ends
    its path), or None."""
    text = Path(image_path).as_posix()
    matches = [name for name in boxes if text == name or text.endswith("/" + name.lstrip("./"))]
    return boxes[max(matches, key=len)] if matches else None


def boxes_object(image_path, shape, boxes):
    """The object of an image from its boxes (read_boxes): the union of the boxes as its mask,
    the smallest box around them all as its box. ImageError when the file names none, or a box
    lies outside the image."""
    from gradcam_cli.errors import ImageError

    found = _boxes_for(image_path, boxes)
    if not found:
        raise ImageError("no box for it in the boxes file")
    height, width = shape[:2]
    mask = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in found:
        if x0 < 0 or y0 < 0 or x1 > width + 0.5 or y1 > height + 0.5:
            raise ImageError(f"box {[round(v, 1) for v in (x0, y0, x1 - x0, y1 - y0)]} lies outside the "
                             f"{width}x{height} image")
        mask[int(round(y0)) : max(int(round(y1)), int(round(y0)) + 1),
             int(round(x0)) : max(int(round(x1)), int(round(x0)) + 1)] = True
    return annotated_object(mask)


def annotated_inputs(sources, boxes=None):
    """The images among `sources` (inputs.Source) with a mask beside them (NAME.mask.png), or,
    given `boxes` (read_boxes), with boxes in that file: (rgbs, objects, paths, [(path, reason)]
    of those that cannot be used). Masks themselves are not inputs."""
    from gradcam_cli.errors import ImageError
    from gradcam_cli.images import load_rgb

    rgbs, objects, paths, unusable = [], [], [], []
    for source in sources:
        if is_mask(source.path):
            continue
        try:
            rgb = load_rgb(source.path)
            objects.append(read_mask(source.path, rgb.shape) if boxes is None
                           else boxes_object(source.path, rgb.shape, boxes))
        except ImageError as error:
            unusable.append((source.path, str(error)))
            continue
        rgbs.append(rgb)
        paths.append(str(source.path))
    return rgbs, objects, paths, unusable


def annotated_object(mask):
    """A SceneObject from a user's mask (any non-zero pixel is the object)."""
    from gradcam_cli.synthetic import SceneObject

    mask = np.asarray(mask) > 0
    ys, xs = np.nonzero(mask)
    return SceneObject(-1, mask, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))


def evaluate_annotated(explainers, images, objects, class_code, threshold=0.5, control=None):
    """The same figures on users' images with object masks (no two-object discrimination).
    class_code: a class index for every image, or top_rank(1) for each image's prediction."""
    codes = [class_code] * len(images)
    report = {"images": len(images), "control": control, "methods": {}}
    for method, explainer in explainers.items():
        predicted_key = "predicted" if "predicted" not in report else f"predicted_{method}"
        scores, report[predicted_key] = _score_singles(explainer, images, objects, codes, threshold,
                                                       control == "shuffled")
        report["methods"][method] = {**scores.summary(), "accuracy": None}
    report["chance"] = _chance(images, objects, threshold, pairs=0)
    return report


# Short names a gate (`--fail-under`) may use for a figure.
ALIASES = {"energy": "energy_in_box", "iou": "box_iou", "iou50": "localized_iou50", "localized": "localized_iou50",
           "insertion": "insertion_auc", "deletion": "deletion_auc", "drop": "average_drop_percent",
           "increase": "increase_in_confidence_percent"}


def parse_thresholds(text):
    """'pointing=0.8,insertion=0.5' -> {figure: threshold}; GradcamError for a malformed item."""
    from gradcam_cli.errors import GradcamError

    thresholds = {}
    for item in (part.strip() for part in str(text).split(",")):
        if not item:
            continue
        name, _, value = item.partition("=")
        try:
            thresholds[ALIASES.get(name.strip(), name.strip())] = float(value)
        except ValueError:
            raise GradcamError(f"expected FIGURE=NUMBER, comma-separated (e.g. pointing=0.8). Received: {item!r}") from None
    if not thresholds:
        raise GradcamError("give at least one FIGURE=NUMBER (e.g. pointing=0.8)")
    return thresholds


def shortfalls(report, thresholds):
    """What fell short of `thresholds` ({figure: lowest acceptable value}) in an evaluate report:
    one line per method and figure, 'METHOD: FIGURE VALUE < THRESHOLD' (or 'not measured').
    GradcamError for a figure no method reports."""
    from gradcam_cli.errors import GradcamError

    known = sorted({key for figures in report["methods"].values() for key, value in figures.items()
                    if key != "images" and (value is None or isinstance(value, (int, float)))})  # not curves
    unknown = [name for name in thresholds if name not in known]
    if unknown:
        spelled = [next((f"{alias!r} ({name})" for alias, full in ALIASES.items() if full == name), repr(name))
                   for name in unknown]
        raise GradcamError(f"no figure {', '.join(spelled)} to gate on; the figures are {', '.join(known)}")
    lines = []
    for method, figures in report["methods"].items():
        for name, threshold in thresholds.items():
            value = figures.get(name)
            if value is None:
                lines.append(f"{method}: {name} not measured (needed >= {threshold:g})")
            elif value < threshold:
                lines.append(f"{method}: {name} {value:.3f} < {threshold:g}")
    return lines


COLUMNS = (("pointing", "pointing"), ("energy_in_box", "energy in box"), ("box_iou", "box IoU"),
           ("localized_iou50", "IoU>=0.5"), ("discrimination", "class discrimination"), ("accuracy", "accuracy"))


def format_table(report):
    rows = [("method",) + tuple(title for _, title in COLUMNS)]
    for name, figures in list(report["methods"].items()) + [("chance", report["chance"])]:
        rows.append((name,) + tuple("-" if figures.get(key) is None else f"{figures[key]:.3f}" for key, _ in COLUMNS))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) if k else cell.ljust(w) for k, (cell, w) in enumerate(zip(row, widths)))
                     for row in rows)
