"""What `gradcam eval` runs, as one library call: choose the images and the class each explains,
run the chosen measures over each method's maps, assemble one report, draw the figures and
check the thresholds of a gate.

    from gradcam_cli import load_model
    from gradcam_cli.evaluate import assess

    model = load_model("demo-gap")
    result = assess.assess(model, ["gradcam", "scorecam"], ("localization", "deletion"))
    result.report["methods"]["gradcam"]["pointing"], result.text()

    images = assess.read_images(["photos/"])            # any folder: no masks needed
    result = assess.assess(model, ["gradcam"], ("deletion", "road"), images=images,
                               output_dir="out", fail_under={"insertion_auc": 0.5})
    result.failed                                            # ["gradcam: insertion_auc 0.41 < 0.5"]

Without images it measures on generated scenes (gradcam_cli.evaluate.scenes) whose objects are known,
which needs a model of the four scene classes (demo-gap, demo-vgg). Each measure is the
library's own: localization (localization.py), deletion, confidence and road
(faithfulness_report.py over faithfulness.py), randomisation (randomisation.py).

A model of volumes (a Conv3D classifier, a 3-D segmenter) is measured on scans: read_images(...,
volumes=True) reads NIfTI or NumPy scans and, for localization, the label map beside each
(annotations.read_volume_mask); without scans, on generated ones (volume_scenes) for a model of
their classes (demo-volume). Localization is the pointing game and the energy inside the label map
beside their chance (the mask's share of voxels, localization.evaluate_volumes); deletion and
confidence run over voxels (faithfulness.py); road and randomisation do not apply to volumes yet.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from gradcam_cli.errors import GradcamError, argument

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from gradcam_cli.api import ClassChoice, ModelInput
    from gradcam_cli.evaluate.scenes import SceneObject
    from gradcam_cli.explain.targets import Bound

MEASURES = ("localization", "deletion", "confidence", "road", "randomisation")
FAITHFULNESS = ("deletion", "confidence", "road")
RANDOMISATION_SCENES = 20  # the generated scenes the randomisation test takes at most


@dataclass
class EvalImages:
    """The user's images an evaluation runs on, decoded."""

    rgbs: list[npt.NDArray[np.uint8]]  # (H, W, 3) RGB
    paths: list[str]  # one per image
    objects: list[SceneObject] | None = None  # with masks or boxes: one evaluation SceneObject per image
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of each input left out
    volumes: bool = False  # scans: `rgbs` are (D1, D2, D3, C) float32 volumes, `masks` their label maps
    masks: list[npt.NDArray[np.bool_]] | None = None  # with volumes and objects: (D1, D2, D3) bool per scan

    @property
    def failures(self) -> int:
        """How many inputs were left out."""
        return len(self.problems)


def read_images(arguments: Iterable[str | os.PathLike[str]], objects: bool = False,
                boxes_file: str | os.PathLike[str] | None = None, stdin: IO[str] | None = None,
                output_dir: str | os.PathLike[str] | None = None, volumes: bool = False) -> EvalImages:
    """The images of IMAGE arguments (files, folders searched recursively, globs, '-' for paths
    on `stdin`) as EvalImages. objects: read each image's object too, from its NAME.mask.png or,
    given `boxes_file` (a COCO-style JSON, annotations.read_boxes), from its boxes; an image
    without a usable one is left out with its reason. output_dir: a run's output folder, whose
    files are not inputs. volumes: the inputs are scans (NIfTI, NumPy, files.volumes), read with
    their label maps when `objects` (annotations.annotated_volumes). GradcamError when no image is
    left."""
    from gradcam_cli.evaluate.annotations import annotated_inputs, annotated_volumes, is_volume_mask, read_boxes
    from gradcam_cli.files.images import load_rgb
    from gradcam_cli.files.inputs import collect

    if volumes:
        if boxes_file is not None:
            raise GradcamError(f"{argument('boxes')} marks objects in images; a scan's object is its label map "
                               "(NAME.mask.nii.gz beside NAME.nii.gz)")
        collected = collect(arguments, stdin=stdin, output_dir=output_dir, exclude=is_volume_mask, volumes=True)
        problems = [(str(argument), "no such file or folder") for argument in collected.missing]
        problems += [(str(path), collected.link_problem(path)) for path in collected.broken]
        arrays, masks, paths, unusable = annotated_volumes(collected.sources, objects)
        problems += [(str(path), reason) for path, reason in unusable]
        if not arrays:
            where = "with a usable label map (NAME.mask.nii.gz beside NAME.nii.gz)" if objects else "that can be read"
            raise GradcamError(f"no scan {where} in " + ", ".join(map(str, arguments)))
        return EvalImages(arrays, paths, None, problems, volumes=True, masks=masks)

    collected = collect(arguments, stdin=stdin, output_dir=None if objects else output_dir)
    problems = [(str(argument), "no such file or folder") for argument in collected.missing]
    problems += [(str(path), collected.link_problem(path)) for path in collected.broken]
    if objects:
        boxes = None if boxes_file is None else read_boxes(boxes_file)
        rgbs, found, paths, unusable = annotated_inputs(collected.sources, boxes)
        problems += [(str(path), reason) for path, reason in unusable]
    else:
        rgbs, found, paths = [], None, []
        for source in collected.sources:
            try:
                rgbs.append(load_rgb(source.path))
            except GradcamError as error:
                problems.append((str(source.path), str(error)))
                continue
            paths.append(str(source.path))
    read = EvalImages(rgbs, paths, found, problems)
    if not rgbs:
        where = (f"with boxes in {boxes_file}" if boxes_file else "with a usable mask (NAME.ext beside NAME.mask.png)"
                 ) if objects else "that can be read"
        raise GradcamError(f"no image {where} in " + ", ".join(map(str, arguments)))
    return read


@dataclass
class Assessment:
    """An evaluation's outcome: `report` (what --json prints), `heading` and `tables` (what the
    command prints), `outputs` ({figure: path} written), `failed` (the gate's shortfalls, one
    'METHOD: FIGURE VALUE < N' line each)."""

    report: dict[str, Any]
    heading: str
    tables: list[str]
    outputs: dict[str, str]
    failed: list[str]

    def text(self) -> str:
        """The heading and the tables, as the command prints them."""
        return "\n".join([self.heading, *self.tables])


def _checked(loaded, methods, measures, images, class_name, boxes_file):
    from gradcam_cli.explain.methods import METHODS
    from gradcam_cli.models.registry import DEMO_CLASSES

    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise GradcamError(f"{argument('methods')}: choose from {', '.join(METHODS)}. Received: {list(methods)}")
    unknown = [m for m in measures if m not in MEASURES]
    if unknown or not measures:
        raise GradcamError(f"{argument('measures')}: choose from {', '.join(MEASURES)}. Received: {list(measures)}")
    if class_name is not None and images is None:
        raise GradcamError(f"{argument('class_name')} applies to your images; generated scenes use each "
                           "object's class")
    if boxes_file is not None and images is None:
        raise GradcamError(f"{argument('boxes')} applies to your images; generated scenes bring their own objects")
    if images is not None and "localization" in measures and images.objects is None:
        raise GradcamError("localization needs each image's object: read the images with objects=True")
    if images is None and not set(DEMO_CLASSES) <= set(loaded.labels):
        raise GradcamError(
            f"{loaded.name} does not classify the generated scenes ({', '.join(DEMO_CLASSES)}); use demo-gap "
            "or demo-vgg, a model trained on gradcam_cli.evaluate.scenes with those labels, or give images"
            + (" with masks" if "localization" in measures else ""))
    if images is None and loaded.input_size[0] != loaded.input_size[1]:
        raise GradcamError("generated scenes are square: the model's input must be too")


def randomisation_views(methods: Iterable[str]) -> tuple[str, ...]:
    """The randomisation.VIEWS names for the chosen methods: guided (and deconvnet) as the Guided
    Grad-CAM product and the guided backpropagation gradient alone."""
    from gradcam_cli.explain.methods import METHODS

    views = []
    for method in methods:
        views += [f"{method}-gradcam", f"{method}-backprop"] if METHODS[method].backprop else [method]
    return tuple(dict.fromkeys(views))


def assess(loaded: ModelInput, methods: Iterable[str], measures: Iterable[str] = ("localization",),
           images: EvalImages | None = None, layer: str | None = None, class_name: ClassChoice | None = None,
           count: int = 200, pairs: int = 100, seed: int = 1, threshold: float = 0.5,
           control: Literal["shuffled"] | None = None, steps: int = 20,
           baseline: Literal["zero", "blur", "mean"] = "zero", output_dir: str | os.PathLike[str] | None = None,
           batch_size: int = 32, pool: Literal["mean", "max"] = "mean", fail_under: dict[str, float] | None = None,
           boxes_file: str | os.PathLike[str] | None = None, options: dict[str, Any] | None = None,
           compat: Literal["pytorch-grad-cam", "tf-keras-vis"] | None = None,
           target: str | Callable[[Any], Any] | Bound | None = None) -> Assessment:
    """Measure `methods` (METHODS names) on `loaded` (a LoadedModel, or a model name or path):
    an Assessment.

    measures: any of MEASURES. images: EvalImages (read_images) or None for `count` generated
    one-object scenes and `pairs` two-object ones of scene set `seed`. class_name: with images,
    the class every image explains (index or name; default each image's top-1). threshold,
    control ('shuffled' or None): localization's (localization.evaluate). steps, baseline:
    deletion's (faithfulness.deletion_curves). output_dir: where eval.curves.png (deletion),
    eval.bars.png (localization or faithfulness figures) and eval.randomisation.png go; None
    draws nothing. fail_under: {figure: minimum} (gate.parse_thresholds) checked against each method. boxes_file: only named in the
    report's errors (read_images reads it). options, compat: the methods' own options and
    their compat (localization.explainers_for); the randomisation check runs the methods with
    their defaults. target: what the maps explain (explain/targets.py; None: classes); on generated
    scenes a segmenter explains each scene's object as a segment target, its class's pixels."""
    from gradcam_cli.evaluate import localization
    from gradcam_cli.evaluate import scenes as scene_maker
    from gradcam_cli.evaluate.faithfulness_report import loaded_model
    from gradcam_cli.explain.batch import top_rank
    from gradcam_cli.explain.prepared import takes_volumes
    from gradcam_cli.models.graph import path_name

    loaded = loaded_model(loaded)
    methods, measures = tuple(methods), tuple(dict.fromkeys(measures))
    if takes_volumes(loaded) or (images is not None and images.volumes):
        return _assess_volumes(loaded, methods, measures, images, layer, class_name, count, seed, control, steps,
                               baseline, output_dir, batch_size, pool, fail_under, options, compat, target)
    _checked(loaded, methods, measures, images, class_name, boxes_file)
    if target is None and images is None:
        target = localization.scene_target(loaded)  # a segmenter: each scene's object as a segment target
    explainers = localization.explainers_for(loaded, methods, layer=layer, batch_size=batch_size, pool=pool,
                                             options=options, compat=compat, target=target)
    bound = next(iter(explainers.values())).build().target
    if images is not None:
        rgbs, skipped = images.rgbs, images.failures
        codes = top_rank(1) if class_name is None else next(iter(explainers.values())).class_indices(class_name)[0]
        codes = codes if bound.code < 0 else bound.code
        report = {"images": len(rgbs), "inputs": images.paths, "skipped": skipped, "methods": {m: {} for m in methods}}
        heading = f"{len(rgbs)} image(s)" + (f", {skipped} skipped" if skipped else "")
    else:
        scenes = [scene_maker.generate(i, seed, loaded.input_size[0]) for i in range(count)]
        code = localization.scene_code(loaded)
        rgbs, codes = [s.image for s in scenes], [code(s.objects[0].class_index) for s in scenes]
        report = {"scenes": count, "seed": seed, "methods": {m: {} for m in methods}}
        heading = f"{count} scenes (seed {seed})"
    tables: list[str] = []
    outputs: dict[str, str] = {}
    if "localization" in measures:
        report, heading = _localization(explainers, images, codes, count, pairs, seed, threshold, control)
        tables.append(localization.format_table(report))
    report.update(model=loaded.name, layer=path_name(loaded.target_layer(layer)), measures=list(measures))
    chosen = {method: explainer.details() for method, explainer in explainers.items()}
    chosen = {method: details for method, details in chosen.items() if details}
    if options or compat:  # how each method was run: its options as its records give them
        report["method_options"] = chosen
        heading += "; " + "; ".join(f"{m}: " + ", ".join(f"{k}={v}" for k, v in d.items()) for m, d in chosen.items())
    faithful = tuple(m for m in measures if m in FAITHFULNESS)
    if faithful:
        tables.append(_faithfulness(report, explainers, rgbs, codes, faithful, steps, baseline, output_dir,
                                    loaded.name, outputs))
    if "randomisation" in measures:
        taken = rgbs if images is not None else rgbs[:RANDOMISATION_SCENES]
        classes = None if images is not None and class_name is None else \
            (codes if images is not None else codes[: len(taken)])
        tables.append(_randomisation(report, loaded, taken, methods, layer, classes, batch_size, output_dir, outputs))
    return _finished(report, loaded, heading + (", maps shuffled across images (negative control)" if control and
                                                "localization" in measures else ""), tables, outputs, output_dir, fail_under)


def _assess_volumes(loaded, methods, measures, images, layer, class_name, count, seed, control, steps, baseline,
                    output_dir, batch_size, pool, fail_under, options, compat, target):
    """assess() for a model of volumes: on `images` (scans read with volumes=True) or `count`
    generated scans of set `seed` (volume_scenes, for a model of their classes)."""
    from gradcam_cli.evaluate import localization, volume_scenes
    from gradcam_cli.explain.batch import top_rank
    from gradcam_cli.explain.prepared import takes_volumes
    from gradcam_cli.models.graph import path_name

    if not takes_volumes(loaded):
        raise GradcamError(f"{loaded.name} takes images; these inputs are scans (volumes): give a model of volumes")
    if images is not None and not images.volumes:
        raise GradcamError(f"{loaded.name} takes volumes: give scans (.nii, .nii.gz, .npy, .npz, DICOM folders)")
    refused = [m for m in measures if m in ("road", "randomisation")]
    if refused:
        raise GradcamError(f"{refused[0]} does not apply to volumes yet: measure localization, deletion or confidence")
    if images is None:
        if not set(volume_scenes.CLASS_NAMES) <= set(loaded.labels):
            raise GradcamError(f"{loaded.name} does not classify the generated scans "
                               f"({', '.join(volume_scenes.CLASS_NAMES)}): use demo-volume, or give scans with "
                               "label maps (NAME.mask.nii.gz)")
        scans = [volume_scenes.generate(i, seed, loaded.input_size) for i in range(count)]
        volumes, masks = [scan.volume[..., None] for scan in scans], [scan.mask for scan in scans]
        codes = [list(loaded.labels).index(scan.label) for scan in scans]
        report = {"scenes": count, "seed": seed}
        heading = f"{count} generated scans (seed {seed})"
    else:
        volumes, masks = images.rgbs, images.masks
        report = {"images": len(volumes), "inputs": images.paths, "skipped": images.failures}
        heading = f"{len(volumes)} scan(s)" + (f", {images.failures} skipped" if images.failures else "")
    if "localization" in measures and masks is None:
        raise GradcamError("localization needs each scan's label map: read the scans with objects=True")
    explainers = localization.explainers_for(loaded, methods, layer=layer, batch_size=batch_size, pool=pool,
                                             options=options, compat=compat, target=target)
    bound = next(iter(explainers.values())).build().target
    if images is not None:
        codes = top_rank(1) if class_name is None else next(iter(explainers.values())).class_indices(class_name)[0]
    codes = codes if bound.code < 0 else bound.code
    report.update(methods={m: {} for m in methods}, model=loaded.name, layer=path_name(loaded.target_layer(layer)),
                  measures=list(measures))
    tables, outputs = [], {}
    if "localization" in measures:
        found = localization.evaluate_volumes(explainers, volumes, masks, codes, control)
        for method, figures in found["methods"].items():
            report["methods"][method].update(figures)
        report.update(chance=found["chance"], control=control, predicted=found["predicted"])
        tables.append(localization.format_table({"methods": {m: report["methods"][m] for m in methods},
                                                 "chance": found["chance"]}))
    faithful = tuple(m for m in measures if m in FAITHFULNESS)
    if faithful:
        tables.append(_faithfulness(report, explainers, volumes, codes, faithful, steps, baseline, output_dir,
                                    loaded.name, outputs))
    return _finished(report, loaded, heading + (", maps shuffled across scans (negative control)" if control and
                                                "localization" in measures else ""), tables, outputs, output_dir, fail_under)


def _finished(report, loaded, heading, tables, outputs, output_dir, fail_under):
    """The Assessment of a report whose measures are done: the bar chart drawn, the outputs and the
    --fail-under shortfalls recorded."""
    from gradcam_cli.evaluate import gate

    _bars(report, output_dir, loaded.name, outputs)
    if outputs:
        report["outputs"] = outputs
    failed = []
    if fail_under is not None:
        try:
            failed = gate.shortfalls(report, fail_under)
        except GradcamError as error:
            raise GradcamError(f"{argument('fail_under')}: {error.args[0]}") from None
        report["failed"] = failed
    return Assessment(report, f"{loaded.name}, layer {report['layer']}: {heading}", tables, outputs, failed)


def _localization(explainers, images, codes, count, pairs, seed, threshold, control):
    """(report, heading) of the localization figures."""
    from gradcam_cli.evaluate import localization

    if images is None:
        report = localization.evaluate(explainers, count=count, pairs=pairs, seed=seed, threshold=threshold,
                                     control=control)
        heading = f"{count} scenes and {pairs} two-object scenes (seed {seed})"
        if report["accuracy"] is not None:
            heading += f", classification accuracy {report['accuracy']:.3f}"
    else:
        report = localization.evaluate_annotated(explainers, images.rgbs, images.objects, codes, threshold=threshold,
                                               control=control)
        report.update(inputs=images.paths, skipped=images.failures)
        heading = f"{len(images.rgbs)} annotated image(s)" + (f", {images.failures} skipped" if images.failures
                                                              else "")
    report["threshold"] = threshold
    return report, heading


def _faithfulness(report, explainers, rgbs, codes, measures, steps, baseline, output_dir, model_name, outputs):
    """Add each method's faithfulness figures and the baselines to `report`; its table."""
    from gradcam_cli.evaluate import faithfulness_report

    faith = faithfulness_report.faithfulness_report(explainers, rgbs, codes, measures, steps=steps,
                                                  baseline=baseline, seed=0)
    for method, figures in faith.pop("methods").items():
        report["methods"][method].update(figures)
    report["faithfulness"] = faith
    if "deletion" in measures and output_dir is not None:
        outputs["curves"] = faithfulness_report.write_curves({**faith, "methods": report["methods"]},
                                                           Path(output_dir) / "eval.curves.png", model_name)
    how = f"; deletion to {baseline}, {steps} steps" if "deletion" in measures else ""
    return (f"faithfulness ({', '.join(measures)}{how}):\n"
            + faithfulness_report.format_table({**faith, "methods": {m: report["methods"][m] for m in explainers}}))


def _bars(report, output_dir, model_name, outputs):
    """eval.bars.png (faithfulness_report.render_bars) in `output_dir` when the report has a
    localization or faithfulness figure to chart; its path in outputs["bars"]."""
    from gradcam_cli.evaluate import faithfulness_report

    if output_dir is not None and faithfulness_report.bar_groups(report)[0]:
        outputs["bars"] = faithfulness_report.write_bars(report, Path(output_dir) / "eval.bars.png", model_name)


def _randomisation(report, loaded, rgbs, methods, layer, classes, batch_size, output_dir, outputs):
    """Add the cascading randomisation's record to `report`; its table."""
    from gradcam_cli.evaluate import randomisation

    result = randomisation.cascading_randomisation(loaded, rgbs, randomisation_views(methods), layer=layer,
                                                   classes=classes, batch_size=batch_size)
    report["randomisation"] = result.as_record()
    if output_dir is not None:
        outputs["randomisation"] = randomisation.write_curves(result, Path(output_dir) / "eval.randomisation.png")
    return (f"cascading randomisation ({len(rgbs)} image(s), each method with its default options; Spearman rank "
            f"correlation with the trained model's maps, lower is better):\n" + result.table())
