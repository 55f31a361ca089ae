"""Measuring maps against known object positions: pointing game, energy in the box, box IoU,
class discrimination, each beside its chance level.

A map is a float array in [0, 1] at the image's resolution; an object has a mask and a box.
"""

from dataclasses import dataclass, field

import cv2
import numpy as np

from gradcam_cli.explain.maps import bounding_box, shrink

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


def energy_in_mask(normalised, mask):
    """The share of the map's total mass on the object's own pixels (its mask)."""
    total = float(normalised.sum())
    return float(normalised[mask].sum()) / total if total > 0 else 0.0


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
        "energy_in_mask": energy_in_mask(normalised, scene_object.mask),
        "box_iou": box_iou(bounding_box(normalised, threshold), scene_object.box),
    }


def rank_correlation(a, b, side=64):
    """Spearman's rank correlation of two maps of one shape, compared on at most side x side
    pixels (area-averaged); ties get their average rank, so the zeros of ReLU'd maps count as
    one shared rank. NaN when a map is constant."""
    a, b = (shrink(m, side).ravel() for m in (a, b))
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else float("nan")


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
    mask_energy: list = field(default_factory=list)

    @classmethod
    def empty(cls):
        return cls([], [], [], [], [])

    def add_single(self, normalised, scene_object, threshold=0.5):
        figures = single_figures(normalised, scene_object, threshold)
        self.pointing.append(figures["pointing"])
        self.energy.append(figures["energy_in_box"])
        self.iou.append(figures["box_iou"])
        self.mask_energy.append(figures["energy_in_mask"])

    def add_pair(self, map_for_a, object_a, object_b):
        """Class discrimination: the map for A's class puts more mass on A than on B."""
        self.discrimination.append(energy_in_box(map_for_a, object_a.box) > energy_in_box(map_for_a, object_b.box))

    def summary(self):
        mean = lambda values: float(np.mean(values)) if values else None
        return {
            "pointing": mean(self.pointing),
            "energy_in_box": mean(self.energy),
            "energy_in_mask": mean(self.mask_energy),
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


def explainers_for(loaded, methods, layer=None, batch_size=32, pool="mean", options=None, compat=None, target=None):
    """{method: api.Explainer} for `loaded` at `layer`, sharing engines and dilated copies.
    options: the methods' own options ({name: value}), each given to the methods that have it
    (a meta-method's base method's too); GradcamError for one that none of `methods` has.
    GradcamError (LayerError) naming the method when one does not apply."""
    from gradcam_cli.api import Explainer
    from gradcam_cli.errors import GradcamError, LayerError, argument
    from gradcam_cli.explain.methods import METHODS

    options = {name: value for name, value in (options or {}).items() if value is not None}

    def takes(method, name):
        chosen = METHODS[method]
        base = (options.get("base_method") or chosen.option("base_method").default) if chosen.meta else None
        return chosen.option(name) is not None or (base is not None and METHODS[base].option(name) is not None)

    unused = [name for name in options if not any(takes(method, name) for method in methods)]
    if unused:
        raise GradcamError(f"none of the methods {', '.join(methods)} has the option "
                           f"{', '.join(map(argument, unused))}")
    shared, explainers = {}, {}
    for method in methods:
        own = {name: value for name, value in options.items() if takes(method, name)}
        explainer = Explainer(loaded, method, layer=layer, batch_size=batch_size, pool=pool, compat=compat,
                              target=target, **own)
        try:
            explainer.build(shared)
        except LayerError as error:
            raise LayerError(f"{method}: {error.args[0]}") from None
        explainers[method] = explainer
    return explainers


def _maps_for(explainer, images, codes):
    """Normalised maps at each image's resolution for the given target codes (api.Explainer.maps),
    and each image's top-1 class (read from the same forward pass's scores)."""
    found = explainer.maps(images, list(codes))
    return [found.on_image(i) for i in range(len(found))], [int(c) for c in np.argmax(found.batch.scores, axis=1)]


def _chance(images, objects, threshold, pairs):
    chance = Scores.empty()
    for image, obj in zip(images, objects):
        uniform, centre = chance_maps(image.shape)
        chance.pointing.append(pointing_hit(centre, obj.mask, tolerance_for(image.shape)))
        chance.energy.append(energy_in_box(uniform, obj.box))
        chance.mask_energy.append(energy_in_mask(uniform, obj.mask))
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
    from gradcam_cli.evaluate import scenes as scene_maker

    model = _model(explainers)
    size = model.input_size[0]
    code = scene_code(model)
    scenes = [scene_maker.generate(i, seed, size) for i in range(count)]
    two = [scene_maker.generate(i, seed, size, two_objects=True) for i in range(pairs)]
    images = [scene.image for scene in scenes]
    objects = [scene.objects[0] for scene in scenes]
    shuffled = control == "shuffled"
    report = {"scenes": count, "pairs": pairs, "seed": seed, "control": control, "methods": {}}
    for method, explainer in explainers.items():
        scores, predicted = _score_singles(explainer, images, objects, [code(o.class_index) for o in objects],
                                           threshold, shuffled)
        accuracy = (None if model.output_kind == "map" else  # a segmenter's table ranks classes by mass, not likelihood
                    float(np.mean([p == code(o.class_index) for p, o in zip(predicted, objects)])))
        report.setdefault("accuracy", accuracy)
        for first, second in ((0, 1), (1, 0)) if pairs else ():
            codes = [code(s.objects[first].class_index) for s in two]
            for i, normalised in enumerate(_maps_for(explainer, [s.image for s in two], codes)[0]):
                j = (i + 1) % pairs if shuffled else i
                scores.add_pair(normalised, two[j].objects[first], two[j].objects[second])
        report["methods"][method] = {**scores.summary(), "accuracy": accuracy}
    report["chance"] = _chance(images, objects, threshold, pairs)
    return report




def scene_code(loaded):
    """class index in the generated scenes -> the index of that class among `loaded`'s labels (a
    segmenter's come after its background)."""
    from gradcam_cli.evaluate.scenes import CLASS_NAMES

    labels = list(loaded.labels)
    return lambda index: labels.index(CLASS_NAMES[index])


def scene_target(loaded):
    """What a model explains in each generated scene: its object's class (None: a class target);
    for a segmenter, a segment target, each scene's code picking the object's class (scene_code)."""
    if loaded.output_kind != "map":
        return None
    from gradcam_cli.explain.targets import Target

    return Target("segment", scene_code(loaded)(0))


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


# -- volumes -----------------------------------------------------------------------------------


def volume_figures(normalised, mask):
    """One volume's map (D1, D2, D3) against its object's label map (D1, D2, D3) bool: the
    pointing game (the map's maximum voxel lies inside the mask: no tolerance, unlike an image's
    15 px at 224, so that its chance is exactly the mask's share of voxels) and the energy inside
    the mask (energy_in_mask). GradcamError when the shapes differ (nothing is flattened)."""
    from gradcam_cli.errors import GradcamError

    normalised, mask = np.asarray(normalised), np.asarray(mask, bool)
    if normalised.ndim != 3 or normalised.shape != mask.shape:
        raise GradcamError(f"a volume's map and its mask are (D1, D2, D3) of one shape. Received: map "
                           f"{normalised.shape}, mask {mask.shape}")
    peak = np.unravel_index(int(np.argmax(normalised)), normalised.shape)
    return {"pointing": bool(normalised.max(initial=0.0) > 0 and mask[peak]),
            "energy_in_mask": energy_in_mask(normalised, mask)}


def volume_chance(mask):
    """The chance of both figures for one label map: its share of voxels (a voxel drawn at random
    lies inside with that probability; a uniform map puts that share of its energy inside)."""
    share = float(np.mean(np.asarray(mask, bool)))
    return {"pointing": share, "energy_in_mask": share}


def evaluate_volumes(explainers, volumes, masks, codes, control=None):
    """Localization figures on volumes (D1, D2, D3, C) with their objects' label maps (D1, D2, D3)
    bool (pointing and energy in the mask, volume_figures; box figures do not apply), each
    explaining its code in `codes` (one per volume, or one for all), beside their chance
    (volume_chance, averaged). control 'shuffled': each map against the next volume's mask (of
    the same shape)."""
    count = len(volumes)
    codes = list(codes) if isinstance(codes, (list, tuple, np.ndarray)) else [codes] * count
    report = {"volumes": count, "control": control, "methods": {}}
    for method, explainer in explainers.items():
        found = explainer.maps(list(volumes), [int(c) for c in codes])
        scores = Scores.empty()
        for i in range(count):
            j = (i + 1) % count if control == "shuffled" else i
            figures = volume_figures(found.on_image(i), masks[j])
            scores.pointing.append(figures["pointing"])
            scores.mask_energy.append(figures["energy_in_mask"])
        report["methods"][method] = {**scores.summary(), "accuracy": None}
        report.setdefault("predicted", [int(c) for c in np.argmax(found.batch.scores, axis=1)])
    chance = [volume_chance(mask) for mask in masks]
    report["chance"] = {**Scores.empty().summary(), "pointing": float(np.mean([c["pointing"] for c in chance])),
                        "energy_in_mask": float(np.mean([c["energy_in_mask"] for c in chance]))}
    return report


COLUMNS = (("pointing", "pointing"), ("energy_in_box", "energy in box"), ("energy_in_mask", "energy in mask"),
           ("box_iou", "box IoU"),
           ("localized_iou50", "IoU>=0.5"), ("discrimination", "class discrimination"), ("accuracy", "accuracy"))


def format_table(report):
    rows = [("method",) + tuple(title for _, title in COLUMNS)]
    for name, figures in list(report["methods"].items()) + [("chance", report["chance"])]:
        rows.append((name,) + tuple("-" if figures.get(key) is None else f"{figures[key]:.3f}" for key, _ in COLUMNS))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) if k else cell.ljust(w) for k, (cell, w) in enumerate(zip(row, widths)))
                     for row in rows)
