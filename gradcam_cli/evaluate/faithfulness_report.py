"""Faithfulness for `gradcam eval`: each method's maps scored by deletion and insertion, Average
Drop and Increase in Confidence, and ROAD (faithfulness.py), beside baselines computed once on
the same images and classes, and one figure of the deletion and insertion curves.

A measure needs no object mask: it runs on any images. Every method explains the same class in
an image: the one given, or the model's own top-ranked class (read once, from the unperturbed
views). Maps are scored at the model's input view (faithfulness.view_maps resizes them), with
the model the explainers explain (the original, for dilated copies) as the judge.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from gradcam_cli.api import loaded_model
from gradcam_cli.errors import GradcamError
from gradcam_cli.evaluate import faithfulness as F
from gradcam_cli.files.images import model_inputs
from gradcam_cli.models.labels import class_codes

if TYPE_CHECKING:
    from gradcam_cli.api import Classes, Explainer, Explanation, Images, ModelInput

MEASURES = ("deletion", "confidence", "road")
# The figures each measure puts in a method's entry (report["methods"][m]).
FIGURES = {"deletion": ("deletion_auc", "insertion_auc"),
           "confidence": ("average_drop_percent", "increase_in_confidence_percent"),
           "road": ("road_morf", "road_lerf", "road_combined")}


def _judge(explainers):
    """(the LoadedModel that judges, its probabilities callable on RGB views (N, H, W, 3) 0..255,
    its batch size): the original model, through the first explainer's compiled forward step."""
    first = next(iter(explainers.values()))
    return loaded_model(first), scorer(first), first.scoring_engine.batch_size


def scorer(explainer: Explainer) -> F.Scorer:
    """The callable faithfulness.py takes: RGB views (N, H, W, 3) 0..255 -> (N, C) class
    probabilities of the explainer's original model (its preprocessing, then its compiled
    forward step: api.Explainer.probabilities)."""
    model = loaded_model(explainer)
    return lambda views: explainer.probabilities(model_inputs(model, views))


def measure_faithfulness(model: ModelInput, images: Images, maps: Iterable[npt.ArrayLike | Explanation],
                         classes: Classes = None, steps: int = F.DEFAULT_STEPS, baseline: F.Baseline = "zero",
                         road: bool = True, seed: int = 0, crop: bool | None = None, batch_size: int = 16,
                         name: str = "map") -> list[F.Faithfulness]:
    """Faithfulness of your own maps, one per image: [faithfulness.Faithfulness] in input order
    (deletion and insertion curves and AUCs, the masked probability for Average Drop and
    Increase in Confidence, ROAD's MoRF and LeRF curves unless `road` is False);
    faithfulness.summary(results) averages them as `gradcam eval` reports.

    model: a model name or path, a LoadedModel (gradcam_cli.load_model) or an Explainer (its
    model judges). images: paths or (H, W, 3) / (H, W) uint8 RGB arrays. maps: arrays (h, w) at
    any resolution, covering the image as the model sees it (the whole image; with `crop` its
    centre crop), or api.Explanation objects (their small_map, at the target layer's
    resolution over the model's view). classes: one index or name for all, one per image, or
    None: the Explanations' classes, else each image's top-1 class. crop: None takes it from
    the Explanations' boxes (False for arrays). steps, baseline, seed: as
    faithfulness.evaluate. Scored at the model's input size, `batch_size` images a call."""
    from gradcam_cli.api import Explainer
    from gradcam_cli.files.images import decode_input, view_of

    loaded = loaded_model(model)
    judge = model if isinstance(model, Explainer) else Explainer(loaded, "gradcam", batch_size=batch_size)
    items = [images] if isinstance(images, (str, Path, np.ndarray)) else list(images)
    given: list[Any] = list(maps)  # arrays or Explanations, told apart by their small_map
    if len(given) != len(items):
        raise GradcamError(f"give one map per image: {len(items)} image(s), {len(given)} map(s)")
    rgbs = [decode_input(item, i, None)[0] for i, item in enumerate(items)]
    explained = [getattr(m, "small_map", None) is not None for m in given]
    if crop is None:
        crop = any(e and tuple(m.box) != (0, 0, rgb.shape[1], rgb.shape[0])
                   for e, m, rgb in zip(explained, given, rgbs))
    if classes is None:
        classes = [m.class_index if e else None for e, m in zip(explained, given)]
    arrays = [np.asarray(m.small_map if e else m, dtype=np.float32) for e, m in zip(explained, given)]
    probabilities = scorer(judge)
    views = np.stack([view_of(loaded, rgb, crop=crop)[0] for rgb in rgbs]).astype(np.float32)
    codes = class_codes(loaded, classes, len(rgbs))
    classes_chosen = _classes(views, codes, probabilities, judge.scoring_engine.batch_size)
    return F.evaluate(views, arrays, classes_chosen, probabilities, method=name, steps=steps, baseline=baseline,
                      road=road, seed=seed)


def method_maps(explainer, rgbs, classes):
    """One method's maps over the model's view, (h, w) each, for `rgbs` explaining `classes`
    (indices): api.ImageMaps.at_input (the class activation map before normalising, or for
    backprop methods the saliency of the Guided Grad-CAM product)."""
    found = explainer.maps(rgbs, [int(c) for c in classes])
    return [found.at_input(i) for i in range(len(found))]


def _classes(views, codes, probabilities, batch_size):
    """Each image's class: its code when it is an index, else (batch.top_rank(r), negative) the
    r-th most probable class of the unperturbed view."""
    codes = np.broadcast_to(np.asarray(codes, dtype=np.int64), (len(views),))
    if (codes >= 0).all():
        return codes.copy()
    scores = np.concatenate([probabilities(views[s : s + batch_size]) for s in range(0, len(views), batch_size)])
    ranked = np.argsort(-scores, axis=1, kind="stable")
    return np.where(codes >= 0, codes, ranked[np.arange(len(views)), np.maximum(0, -codes - 1)])


def _figures(views, maps, classes, probabilities, name, measures, steps, baseline, seed):
    """{figure: value} and mean curves of one map per view, for `measures`."""
    figures = {}
    road = "road" in measures
    if "deletion" in measures:
        results = F.evaluate(views, maps, classes, probabilities, method=name, steps=steps, baseline=baseline,
                             road=road, seed=seed)
        summary = F.summary(results)[name]
    else:
        summary = {"images": len(views), "baseline": baseline}
        if "confidence" in measures:
            original, observed = F.confidence_change(views, maps, classes, probabilities)
            summary.update(average_drop_percent=F.average_drop_percent(original, observed),
                           increase_in_confidence_percent=F.increase_in_confidence_percent(original, observed))
        if road:
            morf, lerf = F.road_curves(views, maps, classes, probabilities, seed=seed)
            morf, lerf = morf.mean(axis=0), lerf.mean(axis=0)
            summary.update(road_percentages=list(F.ROAD_PERCENTAGES), road_morf=morf.tolist(),
                           road_lerf=lerf.tolist(), road_morf_mean=float(morf.mean()),
                           road_lerf_mean=float(lerf.mean()), road_combined=float((lerf.mean() - morf.mean()) / 2))
    figures["images"] = summary["images"]
    for measure in measures:
        for key in FIGURES[measure]:
            figures[key] = summary.get(key)
    if "deletion" in measures:
        figures.update(fractions=summary.get("fractions"), deletion_curve=summary.get("deletion_curve"),
                       insertion_curve=summary.get("insertion_curve"))
    if road:  # the scalar figures are the means over 10..90%; the curves beside them
        figures.update(road_morf=summary["road_morf_mean"], road_lerf=summary["road_lerf_mean"],
                       road_percentages=summary["road_percentages"], road_morf_curve=summary["road_morf"],
                       road_lerf_curve=summary["road_lerf"])
    return figures


def faithfulness_report(explainers, rgbs, codes, measures=MEASURES, steps=F.DEFAULT_STEPS, baseline="zero",
                        seed=0):
    """Faithfulness figures of each method (explainers: {method: api.Explainer} of one model,
    localization.explainers_for) on `rgbs` (decoded RGB uint8 images), each explaining its code in
    `codes` (one for all images or one per image: a class index, or batch.top_rank(1)).

    measures: any of MEASURES; 'deletion' gives deletion_auc and insertion_auc (RISE),
    'confidence' average_drop_percent and increase_in_confidence_percent (Grad-CAM++), 'road'
    road_morf and road_lerf (ROAD, the mean over 10..90% removed) and road_combined. steps and
    baseline: deletion's (faithfulness.deletion_curves; insertion starts from the blurred view).
    seed: ROAD's noise and the random map's.

    Beside the methods, under "baselines", the same figures of maps that know nothing: a uniform
    map (faithfulness.uniform_map: raster order), a random map per image (random_map, seeded
    seed + image index) and the `randomcam` method (random channel weights), which is computed
    here when it is not among the methods (else its entry under "methods" is its row).

    Volumes (a model of volumes; `rgbs` then (D1, D2, D3, C) float32 arrays) are scored the same
    way over their voxels at the model's input (faithfulness.py's docstring); road is refused.

    Returns {"images", "measures", "steps", "baseline", "insertion_start", "classes",
    "methods": {method: figures}, "baselines": {name: figures}}; figures hold the mean curves
    too (fractions, deletion_curve, insertion_curve; road_percentages, road_morf_curve,
    road_lerf_curve)."""
    from gradcam_cli.files.images import view_of

    measures = tuple(dict.fromkeys(measures))
    unknown = [m for m in measures if m not in MEASURES]
    if unknown or not measures:
        raise GradcamError(f"faithfulness measures are {', '.join(MEASURES)}. Received: {list(measures)}")
    if baseline not in F.BASELINES:
        raise GradcamError(f"unknown baseline {baseline!r}; choose from {', '.join(F.BASELINES)}")
    if not len(rgbs):
        raise GradcamError("give at least one image")
    from gradcam_cli.explain.prepared import takes_volumes

    model, probabilities, batch_size = _judge(explainers)
    first = next(iter(explainers.values()))
    if takes_volumes(model):  # volumes (D1, D2, D3, C): the view is the model's input itself (no preprocessing)
        if "road" in measures:
            raise GradcamError("road does not apply to volumes (its imputation is of images' pixels): measure "
                               "localization, deletion or confidence")
        views = np.asarray(first.prepare(list(rgbs))[0], dtype=np.float32)
        probabilities = lambda batch: first.probabilities(np.asarray(batch, dtype=np.float32))  # noqa: E731
        seen = [(view, None) for view in views]
    else:
        seen = [view_of(model, rgb, crop=first.crop) for rgb in rgbs]
        views = np.stack([view for view, _ in seen]).astype(np.float32)
    classes = _classes(views, codes, probabilities, batch_size)
    bound = first.build().target
    groups = {(): (list(range(len(views))), probabilities)}  # view geometry -> (images, their scorer)
    if bound.per_view:  # a box target: the images of each view geometry scored with their own binding
        groups = {}
        for i, (_, box) in enumerate(seen):
            groups.setdefault(tuple(int(v) for v in box), ([], scorer(first._view(box))))[0].append(i)

    def score(maps, name):
        return _merged([(len(rows), _figures(views[rows], [maps[i] for i in rows], classes[rows], scoring, name,
                                             measures, steps, baseline, seed)) for rows, scoring in groups.values()])
    report = {"images": len(rgbs), "measures": list(measures), "steps": int(steps), "baseline": baseline,
              "insertion_start": "blur", "classes": classes.tolist(), "methods": {}, "baselines": {},
              "scored": "class probability" if bound.is_class else "target value"}
    for method, explainer in explainers.items():
        report["methods"][method] = score(method_maps(explainer, rgbs, classes), method)
    shape = views.shape[1:-1]  # (H, W), or a volume's (D1, D2, D3)
    report["baselines"]["uniform"] = score([F.uniform_map(shape, len(shape))] * len(views), "uniform")
    report["baselines"]["random"] = score([F.random_map(shape, seed + i, len(shape)) for i in range(len(views))],
                                          "random")
    if "randomcam" not in explainers:  # random channel weights at the first method's layer
        randomcam = next(iter(explainers.values())).with_method("randomcam")
        report["baselines"]["randomcam"] = score(method_maps(randomcam, rgbs, classes), "randomcam")
    return report


def _merged(parts):
    """The figures of groups of images [(count, figures)] as one group's: every figure is a mean
    over images (an AUC, a percentage, a curve point), so the groups' are averaged weighted by
    their counts; "images" adds up; the x-axes (fractions, percentages) are shared."""
    if len(parts) == 1:
        return parts[0][1]
    total = sum(count for count, _ in parts)
    merged = {}
    for key, value in parts[0][1].items():
        values = [figures.get(key) for _, figures in parts]
        if key == "images":
            merged[key] = total
        elif key in ("fractions", "road_percentages") or any(v is None for v in values):
            merged[key] = value
        elif isinstance(value, list):
            weighted = sum(count * np.asarray(v, np.float64) for (count, _), v in zip(parts, values))
            merged[key] = (weighted / total).tolist()
        elif isinstance(value, (int, float)):
            merged[key] = float(sum(count * v for (count, _), v in zip(parts, values)) / total)
        else:
            merged[key] = value
    return merged


# -- the figure ----------------------------------------------------------------------------------


def curve_series(report, curve):
    """{name: (fractions, mean curve)} of every method and baseline with `curve`."""
    rows = list(report["methods"].items()) + list(report.get("baselines", {}).items())
    return {name: (figures["fractions"], figures[curve]) for name, figures in rows if figures.get(curve)}


def render_curves(report, model_name=""):
    """The mean deletion and insertion curves of every method and baseline: two panels side by
    side (x = the fraction of pixels, y = the class probability, or the target's value over its
    own range), one coloured line per series, the baselines dashed, one legend on the right
    (files.charts.curves, matplotlib). uint8 RGB, charts.CURVES_SIZE. GradcamError without
    deletion."""
    from gradcam_cli.files import charts

    deletion, insertion = curve_series(report, "deletion_curve"), curve_series(report, "insertion_curve")
    if not deletion:
        raise GradcamError("no deletion or insertion curves in the report (measure 'deletion')")
    scored = report.get("scored", "class probability")  # a target's value is no probability: its own range
    values = [v for series in (deletion, insertion) for _, curve in series.values() for v in curve if v is not None]
    span = (0.0, 1.0) if scored == "class probability" else (min([0.0] + values), max([1.0] + values))
    panels = [charts.Panel(f"deletion (to {report['baseline']}; lower AUC is better)", "fraction of pixels removed",
                           deletion),
              charts.Panel("insertion (from blur; higher AUC is better)", "fraction of pixels inserted", insertion)]
    title = f"{model_name}: mean curves over the images" if model_name else "mean curves over the images"
    return charts.curves(panels, scored, span, dashed=tuple(report.get("baselines", {})), title=title)


def write_curves(report, path, model_name=""):
    """render_curves written as a PNG at `path`; returns the path as a string."""
    from gradcam_cli.files import outputs

    return outputs.write_png(Path(path), render_curves(report, model_name))


# The bar chart's measures: (report key, title); localization's beside its chance row, faithfulness's
# beside its baselines' rows.
BAR_MEASURES = (("pointing", "pointing"), ("energy_in_box", "energy in box"), ("energy_in_mask", "energy in mask"),
                ("deletion_auc", "deletion AUC\n(lower is better)"), ("insertion_auc", "insertion AUC\n(higher is better)"))


def bar_groups(report):
    """(groups, marked) of the eval table's bar chart (files.charts.bars): a BarGroup per measure
    of BAR_MEASURES that some row has, each with every method's value, the chance row's
    ('chance') and the faithfulness baselines' (uniform, random, randomcam); marked: the names of
    those reference rows. Empty groups when no row has any of the measures."""
    from gradcam_cli.files.charts import BarGroup

    rows = [(str(name), figures) for name, figures in (report.get("methods") or {}).items() if isinstance(figures, dict)]
    references = []
    if isinstance(report.get("chance"), dict):
        references.append(("chance", report["chance"]))
    faith = report.get("faithfulness") if isinstance(report.get("faithfulness"), dict) else report
    references += [(str(name), figures) for name, figures in (faith.get("baselines") or {}).items()
                   if isinstance(figures, dict)]
    groups = []
    for key, title in BAR_MEASURES:
        values = {name: _finite(figures.get(key)) for name, figures in rows + references}
        if any(v is not None for v in values.values()):
            groups.append(BarGroup(title, values))
    return groups, tuple(name for name, _ in references)


def _finite(value):
    return float(value) if isinstance(value, (int, float)) and np.isfinite(value) else None


def render_bars(report, model_name=""):
    """The eval table as a bar chart (files.charts.bars, matplotlib): per measure a bar per
    method, the chance and baseline rows grey and hatched. uint8 RGB, charts.BARS_SIZE.
    GradcamError when the report has none of BAR_MEASURES."""
    from gradcam_cli.files import charts

    groups, marked = bar_groups(report)
    if not groups:
        raise GradcamError("no localization or deletion figures in the report to chart")
    scored = (report.get("faithfulness") or report).get("scored", "class probability")
    prefix = f"{model_name}: " if model_name else ""
    return charts.bars(groups, marked, f"{prefix}localization and faithfulness per method (grey: chance and "
                                       "baselines)", f"hit rate, share of energy, or AUC ({scored})")


def write_bars(report, path, model_name=""):
    """render_bars written as a PNG at `path`; returns the path as a string."""
    from gradcam_cli.files import outputs

    return outputs.write_png(Path(path), render_bars(report, model_name))


# -- the table -----------------------------------------------------------------------------------

COLUMNS = (("deletion_auc", "deletion AUC (lower better)"), ("insertion_auc", "insertion AUC (higher better)"),
           ("average_drop_percent", "average drop % (lower better)"),
           ("increase_in_confidence_percent", "increase in confidence %"), ("road_morf", "ROAD MoRF"),
           ("road_lerf", "ROAD LeRF"))


def format_table(report):
    """The methods' figures and, below them, the baselines' (marked as such), for the columns
    of the measures run."""
    measured = {key for m in report["measures"] for key in FIGURES[m]}
    columns = [(key, title) for key, title in COLUMNS if key in measured]
    rows = [("method",) + tuple(title for _, title in columns)]
    entries = list(report["methods"].items()) + [(f"{name} (baseline)", figures)
                                                 for name, figures in report["baselines"].items()]
    for name, figures in entries:
        cells = []
        for key, _ in columns:
            value = figures.get(key)
            cells.append("-" if value is None else f"{value:.1f}" if key.endswith("percent") else f"{value:.3f}")
        rows.append((name,) + tuple(cells))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) if k else cell.ljust(w) for k, (cell, w) in enumerate(zip(row, widths)))
                     for row in rows)
