"""Side-by-side figures (`gradcam compare`, `gradcam dilated --compare`): maps side by side.

A figure has one row per model and one column per cell: a method at a layer (`--methods`,
`--layers`) or one of the Grad-CAM variants (`--variants`); with several images in one
figure (`--grid`) each image adds its rows. Every cell of a row explains the same class: the
one asked for, else the row's model's top-1 prediction. Each map comes from the code of its own
command (api.Explainer.maps), so a Grad-CAM cell is the `gradcam` command's map; maps are
normalised to their maximum and coloured with one colormap, gradient cells are drawn as the
`guided` command draws them. A cell that does not apply to a model (CAM on VGG16, a layer the
model lacks, a dilated copy of a ResNet) is drawn as such, with the reason in the JSON record.

An image's figure and its record are one unit, as a method run's files are (files.records): the
figure is written atomically, then its record file beside it (NAME[.TAG].compare.record.json),
then the record is handed on. A resumed run (`skip_existing`) skips an image only when its record
file was made from the same source for the same request (`planned`: the models, the cells and
what each computes, the class or target, the colormap, alpha, crop and layout) and its figure
exists where this run writes it; its stored record is handed on in its place. A --grid figure
of all images writes no record files and does not resume: it is drawn again whole.
"""

from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from gradcam_cli.compare import layers as layer_plot
from gradcam_cli.errors import ImageError
from gradcam_cli.evaluate.annotations import read_mask
from gradcam_cli.evaluate.localization import rank_correlation, single_figures
from gradcam_cli.explain import maps
from gradcam_cli.explain.methods import COMPARE_COLUMNS
from gradcam_cli.files import outputs, records, render, writing
from gradcam_cli.files.stream import decode, retry_alone
from gradcam_cli.models.graph import path_name

DEFAULT_METHODS = ("gradcam", "cam", "guided", "guided-gradcam", "dilated")
VARIANTS = ("pool-mean", "pool-max", "argmax-channel", "relu-after-resize")


@dataclass(frozen=True)
class Cell:
    """A column: a compare method at a layer (None: the model's default), or a Grad-CAM variant."""

    method: str
    layer: str = None
    variant: str = None

    @property
    def title(self):
        return self.variant or self.method


def columns(methods, layers=(), variants=()):
    """The cells, method by method then variant by variant, each at every layer."""
    layers = list(layers) or [None]
    return ([Cell(m, layer) for m in methods for layer in layers]
            + [Cell("gradcam", layer, v) for v in variants for layer in layers])


@dataclass
class Ready:
    """A cell made ready for one model: what computes it, or why it does not apply."""

    cell: Cell
    loaded: object = None  # the model the cell computes with (a dilated copy for dilated cells)
    reason: str = None
    explainer: object = None

    @property
    def shows(self):
        return COMPARE_COLUMNS[self.cell.method][1]


def _ready(loaded, cell, batch_size, shared, crop, target=None):
    from gradcam_cli.api import Explainer

    explainer = Explainer(loaded, COMPARE_COLUMNS[cell.method][0], layer=cell.layer, batch_size=batch_size,
                          pool="max" if cell.variant == "pool-max" else "mean", crop=crop, target=target)
    return Ready(cell, explainer.build(shared).loaded, explainer=explainer)


def ready_cells(loaded, cells, batch_size, crop=False, target=None):
    """Each cell made ready for `loaded` (one Explainer each, sharing engines and dilated
    copies) to explain `target` (explain/targets.py; None: classes), or marked not applicable
    with the reason."""
    shared, ready = {}, []
    for cell in cells:
        try:
            ready.append(_ready(loaded, cell, batch_size, shared, crop, target))
        except ValueError as error:  # GradcamError, or a method's refusal
            ready.append(Ready(cell, reason=str(error)))
    return ready


def rows_for(models, methods=(), layers=(), variants=(), class_name=None, batch_size=8, crop=False, target=None):
    """The rows of a figure: one per LoadedModel of `models`, its cells (`columns`) made ready.
    No methods and no variants: DEFAULT_METHODS, those that apply to some model. A layer no
    model has is a LayerError (a typo, not a figure of grey cells); `class_name` (an index or
    a class name: each row explains it) a ClassError for a model that lacks it. `target`: what
    every cell explains instead of a class (explain/targets.py); a model it does not fit is
    refused (TargetError) rather than drawn as a row of grey cells."""
    from gradcam_cli.errors import GradcamError, LayerError
    from gradcam_cli.models.labels import class_index

    methods = list(methods)
    if not methods and not variants:
        methods = [m for m in DEFAULT_METHODS if any(applies(loaded, m, target) for loaded in models)]
    for layer in layers:
        problems = []
        for loaded in models:
            try:
                loaded.target_layer(layer)
                break
            except GradcamError as problem:
                problems.append(problem.args[0])
        else:
            raise LayerError("; ".join(problems))
    cells = columns(methods, layers, variants)
    rows = []
    for loaded in models:
        index = None if class_name is None else class_index(class_name, loaded.labels, loaded.num_classes,
                                                            model=loaded.name if len(models) > 1 else None)
        if target is None:  # a segmenter or an embedding model explains no class unless asked to
            from gradcam_cli.explain.targets import Target, check_fits

            check_fits(Target("class"), loaded, explicit=class_name is not None)
        else:  # said once, in one line, for a model the target does not fit
            from gradcam_cli.api import Explainer

            bound = Explainer(loaded, "gradcam", layer=layers[0] if layers else None, target=target).build().target
            index = None if bound.is_class and bound.code < 0 else bound.code
        rows.append(Row(loaded, ready_cells(loaded, cells, batch_size, crop, target), index))
    return rows


def dilated_rows(loaded, layer, class_index, batch_size, crop=False):
    """The row `gradcam dilated --compare` draws: the original's Grad-CAM, then both dilated
    copies', at `layer` of the original (None: its default). GradcamError naming the cell when
    one does not apply."""
    from gradcam_cli.errors import LayerError

    cells = columns(["gradcam", "dilated-no-pooling", "dilated"], [path_name(loaded.target_layer(layer))])
    ready = ready_cells(loaded, cells, batch_size, crop)
    for item in ready:
        if item.reason is not None:
            raise LayerError(f"{item.cell.method}: {item.reason}")
    return [Row(loaded, ready, class_index)]


def applies(loaded, method, target=None):
    """Whether a compare method applies to `loaded` at its default layer, for `target`."""
    return ready_cells(loaded, [Cell(method)], 1, target=target)[0].reason is None


@dataclass
class Row:
    """A model and its ready cells, and the class its row explains (None: its top-1)."""

    loaded: object
    ready: list
    class_index: int = None

    @property
    def batch_size(self):
        return min([r.explainer.build().engine.batch_size for r in self.ready if r.reason is None] or [1])


@dataclass
class Figure:
    cells: list = field(default_factory=list)  # rows of uint8 images (None: not applicable)
    captions: list = field(default_factory=list)


def _mask_for(path, shape):
    """The object of the mask beside an image (annotations.read_mask), or None if it has none."""
    try:
        return read_mask(path, shape)
    except ImageError:
        return None


def _cell_image(ready, computed, i, rgb, box, options):
    """Image i's cell: (uint8 picture, normalised map at the image's size, map statistics)."""
    if ready.shows == "map":
        relu_later = ready.cell.variant == "relu-after-resize"
        small = computed.weighted_sums[i] if relu_later else computed.small_maps[i]
        heat, normalised, empty = maps.full_map(small, box, rgb.shape, relu_after_resize=relu_later)
        picture = render.map_overlay(rgb, render.colorize(normalised, options.colormap), box, options.alpha)
        return picture, normalised, maps.statistics(np.maximum(small, 0), normalised, empty)
    array = computed.input_gradients[i] if ready.shows == "gradient" else computed.gradient_times_map(i)
    normalised, _ = maps.saliency_map(array, box, rgb.shape)
    return render.gradient_picture(array, box, rgb.shape), normalised, writing.gradient_stats(array)


def explain_rows(rows, batch, options):
    """Every row's cells for a batch of (source, rgb): per image a list of (row record, images,
    captions). Cells of one row share the row's class."""
    rgbs = [rgb for _, rgb in batch]
    per_image = [[] for _ in batch]
    for row in rows:
        loaded = row.loaded
        if row.class_index is None:  # the row's model's top-1 (the original's, for a dilated cell)
            scorer = next((ready.explainer for ready in row.ready if ready.reason is None), None)
            codes = (np.argmax(scorer.probabilities(scorer.prepare(rgbs)[0]), axis=1) if scorer is not None
                     else np.zeros(len(batch), np.int64))
        else:
            codes = np.full(len(batch), row.class_index)
        computed = []
        for ready in row.ready:
            if ready.reason is not None:
                computed.append(None)
                continue
            computed.append(ready.explainer.maps(rgbs, codes, strongest=ready.cell.variant == "argmax-channel"))
        boxes = next((m.boxes for m in computed if m is not None), [(0, 0, rgb.shape[1], rgb.shape[0]) for rgb in rgbs])
        for i, (source, rgb) in enumerate(batch):
            class_index = int(codes[i])
            mask = _mask_for(source.path, rgb.shape)
            labelled = next((ready.loaded for ready in row.ready if ready.reason is None), loaded)  # a target's
            record = {"model": loaded.name, "precision": loaded.precision, "class": class_index,
                      "label": labelled.label(class_index), "cells": []}
            bound = next((r.explainer.build().target for r in row.ready if r.reason is None), None)
            if bound is not None and not bound.is_class:
                record["target"] = bound.describe(None)
            heading = f"{loaded.name}\n{labelled.label(class_index)}"
            if options.grid:  # rows of several images: say which image a row shows
                heading = f"{source.name}\n{heading}"
            images, captions, normalised_maps = [rgb], [heading], []
            for ready, result in zip(row.ready, computed):
                entry = {"method": ready.cell.method, "layer": ready.cell.layer, "variant": ready.cell.variant}
                if result is None:
                    entry.update(applicable=False, reason=ready.reason)
                    images.append(None)
                    captions.append(f"{ready.cell.title}\n{_short(ready.reason)}")
                    normalised_maps.append(None)
                else:
                    result = result.batch
                    picture, normalised, stats = _cell_image(ready, result, i, rgb, boxes[i], options)
                    layer = ready.explainer.build().layer
                    score = float(result.scores[i, class_index])
                    probability = float(result.probabilities[i, class_index])
                    entry.update(applicable=True, layer=layer, model=ready.loaded.name, score=round(score, 6),
                                 probability=round(probability, 6), stats=stats)
                    if bound is not None and not bound.is_class:  # a target's value is its score
                        del entry["probability"]
                    if mask is not None:
                        entry["eval"] = single_figures(normalised, mask)
                    images.append(picture)
                    resolution = "x".join(str(n) for n in reversed(stats["resolution"]))
                    value = (f"{score:.2f} (p {probability:.3f})" if bound is None or bound.is_class
                             else f"{score:.4g}")
                    captions.append(f"{ready.cell.title}, {layer} ({resolution})\n"
                                    f"{ready.loaded.label(class_index)} {value}")
                    normalised_maps.append(normalised)
                record["cells"].append(entry)
            record["rank_correlation"] = _correlations(row.ready, normalised_maps)
            per_image[i].append((record, images, captions))
    return per_image


def _short(reason, length=60):
    reason = reason.split(": ")[-1] if len(reason) > length else reason
    return reason if len(reason) <= length else reason[: length - 1] + "\u2026"


def _correlations(ready, normalised_maps):
    """Spearman's rank correlation between each pair of applicable cells' maps."""
    pairs = []
    for a in range(len(ready)):
        for b in range(a + 1, len(ready)):
            if normalised_maps[a] is None or normalised_maps[b] is None:
                continue
            rho = rank_correlation(normalised_maps[a], normalised_maps[b])
            pairs.append({"a": _name(ready[a].cell), "b": _name(ready[b].cell),
                          "rho": None if np.isnan(rho) else round(rho, 4)})
    return pairs


def _name(cell):
    return cell.title + (f"@{cell.layer}" if cell.layer else "")


@dataclass
class CompareOptions:
    """What a `compare` run draws and where: files.writing.FileOptions' counterpart for figures."""

    output_dir: Path
    tag: str = ""  # file names: NAME[.tag].compare.png
    grid: bool = False  # one figure for all images
    colormap: str = "jet"
    alpha: float = 0.4
    crop: bool = False
    request: str = None  # the digest of what the figures show (`planned`): what a resumed run checks
    layers: bool = True  # a layers plot beside each figure whose cells span two or more layers (compare.layers)


def figure_path(options, name):
    return Path(options.output_dir) / ".".join(part for part in (name, options.tag, "compare", "png") if part)


def record_path(options, name):
    """Where an image's record file lies: beside its figure, NAME[.TAG].compare.record.json."""
    return figure_path(options, name).with_suffix(".record.json")


def planned(rows, options):
    """`options` with the digest of what its figures show (files.records.request_key): every
    row's model and class, every cell's method, layer, variant and, where it applies, the layer
    and model it computes with, its options and target (api.Explainer.details), or why it does
    not apply; the tag, the layout, colormap, alpha and crop. Two runs asking the same share it."""
    request = {"figure": "compare", "tag": options.tag, "grid": options.grid, "colormap": options.colormap,
               "alpha": options.alpha, "crop": options.crop, "rows": [_row_request(row) for row in rows]}
    return replace(options, request=records.request_key(request))


def _row_request(row):
    loaded = row.loaded
    cells = []
    for ready in row.ready:
        cell = {"method": ready.cell.method, "layer": ready.cell.layer, "variant": ready.cell.variant}
        if ready.reason is not None:
            cell["reason"] = ready.reason
        else:
            built = ready.explainer.build()
            cell.update(model=ready.loaded.name, computed_at=built.layer, details=ready.explainer.details(),
                        target=repr(built.target.target))
        cells.append(cell)
    return {"model": loaded.name, "output": loaded.output.name, "input_size": list(loaded.input_size),
            "preprocess": str(loaded.preprocess), "precision": loaded.precision, "colour": loaded.colour,
            "class": row.class_index, "cells": cells}


def _has_figure(record):
    """Whether a stored record has a compare record's shape (files.records.read_record)."""
    return isinstance(record.get("rows"), list) and isinstance(record.get("outputs"), dict)


def resumable(sources, options):
    """The sources still to do, and {index: files.records.Stored} of those an earlier run
    finished: their record file matches the source and options.request, and their figure exists
    where this run writes it (the stored record is made to name it and the input as this run
    does). With a grid nothing is finished: its one figure of all images is drawn again."""
    done = {}
    for index, source in enumerate(sources if not options.grid else ()):
        stored = records.read_record(record_path(options, source.name), source, options.request, _has_figure)
        path, plot = figure_path(options, source.name), layer_plot.layers_path(options, source.name)
        drawn = {"compare": str(path)}
        if "layers" in ((stored.record.get("outputs") or {}) if stored is not None else {}):
            drawn["layers"] = str(plot)  # the stored record had one: it must still be there
        if stored is not None and all(Path(p).is_file() for p in drawn.values()):
            stored.record.update(input=str(source.path), outputs=drawn)
            done[index] = stored
    return [source for index, source in enumerate(sources) if index not in done], done


def draw_figures(rows, sources, options, on_result, on_failure, progress=None, skip_existing=False):
    """Write the figures, and after each its record file (not for a grid); returns a
    files.writing.Report. on_result(record) per image done, in input order; with `skip_existing`
    the images an earlier run finished (`resumable`) are not drawn again, their stored records
    are handed to on_result in their places (report.resumed counts them)."""
    if options.request is None:
        options = planned(rows, options)
    report = writing.Report()
    todo, done = resumable(sources, options) if skip_existing else (list(sources), {})
    if not options.grid:  # what killed writes of this run's files left behind
        outputs.remove_stale(path for source in todo for path in (figure_path(options, source.name),
                                                                   layer_plot.layers_path(options, source.name),
                                                                   record_path(options, source.name)))
    position = {id(source): index for index, source in enumerate(sources)}
    waiting = deque(sorted(done))

    def finished_before(source):  # the stored records of the images before `source`, in their places
        index = len(sources) if source is None else position[id(source)]
        while waiting and waiting[0] < index:
            report.done += 1
            report.resumed += 1
            on_result(done[waiting.popleft()].record)
            if progress is not None:
                progress(1)

    def emit(source, record):
        finished_before(source)
        on_result(record)

    def failure(source, reason):
        finished_before(source)
        on_failure(source, reason)

    if not layer_plot.shows_layers(rows):
        options = replace(options, layers=False)
    _draw(rows, todo, options, report, emit, failure, progress)
    finished_before(None)
    return report


def _draw(rows, sources, options, report, emit, on_failure, progress):
    batch_size = min(row.batch_size for row in rows)
    grid = Figure()
    pending = []  # with --grid: records waiting for the figure to be written
    for start in range(0, len(sources), batch_size):
        batch, unreadable = decode(sources[start : start + batch_size])
        for source, reason in unreadable:
            report.failed.append((source, reason))
            on_failure(source, reason)
        if batch:
            batch, explained = _explain_pinned(rows, batch, options, report, on_failure)
            for (source, rgb), rows_done in zip(batch, explained):
                record = {"input": str(source.path), "image_size": [int(rgb.shape[1]), int(rgb.shape[0])],
                          "rows": [r for r, _, _ in rows_done]}
                figure = Figure([images for _, images, _ in rows_done], [captions for _, _, captions in rows_done])
                if options.grid:
                    grid.cells += figure.cells
                    grid.captions += figure.captions
                    pending.append((source, record, rgb))
                    continue
                _write(figure, figure_path(options, source.name), options, [(source, record, rgb)], report, emit,
                       on_failure)
        if progress is not None:
            progress(min(batch_size, len(sources) - start))
    if options.grid and pending:
        _write(grid, figure_path(options, "grid"), options, pending, report, emit, on_failure)


def _explain_pinned(rows, batch, options, report, on_failure):
    """explain_rows, and when it fails, image by image (files.stream.retry_alone): an image whose
    cells cannot be computed is reported and the others go on. Returns the batch's images kept
    and their rows."""
    done, failed = retry_alone(lambda kept: explain_rows(rows, [batch[i] for i in kept], options), len(batch))
    for i, reason in failed:
        report.failed.append((batch[i][0], reason))
        on_failure(batch[i][0], reason)
    return [batch[i] for kept, _ in done for i in kept], [image for _, explained in done for image in explained]


def _write(figure, path, options, done, report, emit, on_failure):
    """The figure, its layers plot when options.layers (compare.layers), then (one image's
    figure) its record file, then emit(source, record) per image. done: [(source, record, rgb)]."""
    try:
        outputs.write_png(path, render.grid(figure.cells, figure.captions, colormap=options.colormap))
        written = {"compare": str(path)}
        if options.layers:
            name = "grid" if options.grid else done[0][0].name
            plot = layer_plot.render_layers([(source.name, rgb, record) for source, record, rgb in done])
            written["layers"] = outputs.write_png(layer_plot.layers_path(options, name), plot)
        for source, record, _ in done:
            record["outputs"] = dict(written)
            if not options.grid:  # last: an image with a record file has its figure
                records.write_record(record_path(options, source.name), source, options.request, record)
    except OSError as error:
        for source, _, _ in done:
            writing.write_failed(report, source, error, on_failure)
        return
    for source, record, _ in done:
        report.done += 1
        emit(source, record)
