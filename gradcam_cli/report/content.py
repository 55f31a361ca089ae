"""From records to the page's data: an entry per image (its maps, files and predictions), the
failures, the compare figures, the eval tables and the concepts.

Paths in records are relative to the folder the run started from (`base_dir`, default: the
current folder) unless absolute. The page refers to originals, heatmaps, overlays and figures
where they lie, by paths relative to the report folder (URL-quoted); only thumbnails are
written into the report.
"""

import math
import os
import re
from pathlib import Path
from urllib.parse import quote

TOP_PREDICTIONS = 5
# The picture a map's thumbnail is made from, the first that exists (else the original image).
THUMBNAIL_KINDS = ("overlay", "heatmap", "gradcam", "gradient", "gradcam-gray", "gradient-gray")
# Keys of an image's record that have their own place on the page; other scalars go to "details".
_PLACED = {"input", "model", "method", "layer", "image_size", "predictions", "maps", "warnings", "seconds"}
SHEET_TILES = 4096  # more tiles than this in a sheet's layout: not a layout this page believes
DEFAULT_FPS = 10.0  # a clip's player without an fps in the record (as the animated overlay's 100 ms)
RUN_KEYS = ("model", "method", "layer", "details")
_FIGURE_TITLES = {"curves": "deletion and insertion curves", "bars": "localization and faithfulness per method "
                  "(grey, hatched: chance and baselines)", "randomisation": "cascading randomisation"}
LAYERS_TITLE = "where each layer's map peaks, and the share of the image above half its maximum"


def number(value, digits=4):
    """A float rounded to `digits` significant digits (None when not finite); other values as they are."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if math.isfinite(value) else None
    return value


def compact(value):
    """`value` (dicts, lists, numbers) with every float rounded by number()."""
    if isinstance(value, dict):
        return {str(key): compact(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [compact(item) for item in value]
    return number(value)


class Files:
    """Where the files a record names are, and how the page refers to them."""

    def __init__(self, base_dir, report_dir):
        self.base = Path(os.path.abspath(base_dir or os.getcwd()))
        self.report = Path(os.path.abspath(report_dir))

    def find(self, recorded):
        """The file a record names (a path string), or None when there is none."""
        if not isinstance(recorded, str) or not recorded:
            return None
        try:
            path = Path(recorded) if os.path.isabs(recorded) else self.base / recorded
            return path if path.is_file() else None
        except (OSError, ValueError):  # a name too long, a NUL byte
            return None

    def href(self, path):
        return quote(os.path.relpath(path, self.report).replace(os.sep, "/"), safe="/")


def image_entry(record, files):
    """A method command's record as the page's entry, and each map's thumbnail source (a path
    or None)."""
    original = files.find(record["input"])
    entry = {
        "name": str(record["input"]),
        "src": files.href(original) if original else None,
        "model": str(record.get("model", "")),
        "method": str(record.get("method", "")),
        "layer": str(record.get("layer", "")),
        "size": compact(record.get("image_size") or _volume_shape(record)),
        "seconds": number(record.get("seconds")),
        "predictions": [[p.get("class"), str(p.get("label", "")), number(p.get("probability"))]
                        for p in record.get("predictions") or [] if isinstance(p, dict)][:TOP_PREDICTIONS],
        "details": {key: number(value) for key, value in record.items()
                    if key not in _PLACED and isinstance(value, (str, int, float, bool))},
        "warnings": [str(warning) for warning in record.get("warnings") or []],
        "notes": [] if original else [f"original image missing: {record['input']}"],
        "maps": [],
    }
    if isinstance(record.get("volume"), dict):  # the original is a scan or a clip, not a picture a page shows
        entry["volume"] = str(record["volume"].get("kind") or "volume")
    clip = clip_entry(record.get("clip"))
    if clip is not None:
        entry["clip"] = clip
    sources = []
    for item in record["maps"]:
        if isinstance(item, dict):
            entry_map, source = map_entry(item, files)
            if "sheet" in entry_map:
                entry_map["sheet"]["start"] = _start_tile(entry_map["sheet"], _peak_index(record, item))
            entry["maps"].append(entry_map)
            sources.append(source or original)
    return entry, sources


def _volume_shape(record):
    """A volume's or clip's shape (its `volume` block's), the size the page shows when a record has
    no image_size."""
    volume = record.get("volume")
    shape = volume.get("shape") if isinstance(volume, dict) else None
    return shape if isinstance(shape, list) and all(_count(side) for side in shape) else None


def _count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def clip_entry(clip):
    """A clip's block as the player needs it: fps (the record's, or DEFAULT_FPS with "assumed"
    true when it has none) and the number of frames taken; None when the record has no clip block."""
    if not isinstance(clip, dict):
        return None
    fps, count = clip.get("fps"), clip.get("count")
    given = _finite(fps) and fps > 0
    return {"fps": number(float(fps)) if given else DEFAULT_FPS, "assumed": not given,
            "count": count if _count(count) else None}


def sheet_layout(sheet):
    """A map's tile sheet layout (the `sheet` block: count, columns, tile [h, w], axis, labels,
    indices) as the page's scrubber and player use it, or None when it is not one (the page then
    shows the sheet as a plain picture, as for a record without a layout). Missing labels are made
    from the indices: "frame I" for frames, "AXIS I" otherwise."""
    if not isinstance(sheet, dict):
        return None
    count, columns, tile = sheet.get("count"), sheet.get("columns"), sheet.get("tile")
    if not (_count(count) and _count(columns) and count <= SHEET_TILES and isinstance(tile, list) and len(tile) == 2
            and all(_count(side) for side in tile)):
        return None
    axis = str(sheet.get("axis") or "slice")
    indices = sheet.get("indices")
    if not (isinstance(indices, list) and len(indices) == count and all(isinstance(i, int) for i in indices)):
        indices = list(range(count))
    labels = sheet.get("labels")
    labels = [str(label) for label in labels] if isinstance(labels, list) else []
    word = "frame" if axis == "frames" else axis
    labels = labels[:count] + [f"{word} {index}" for index in indices[len(labels):]]
    return {"count": count, "columns": columns, "tile": tile, "axis": axis, "labels": labels, "indices": indices}


def _peak_index(record, item):
    """The index along the sheet's axis where a map peaks: a clip's peak frame (its index in the
    clip, as the sheet's indices), a volume's map's peak voxel's third index (the sheet's slices
    run along D3), else the record's; None when the record does not say."""
    clip = record.get("clip")
    if isinstance(clip, dict):
        return clip["peak_frame"] if isinstance(clip.get("peak_frame"), int) else None
    for block in (item.get("stats"), record.get("volume")):
        peak = block.get("peak_voxel") if isinstance(block, dict) else None
        if isinstance(peak, list) and len(peak) == 3 and isinstance(peak[2], int):
            return peak[2]
    return None


def _start_tile(sheet, peak):
    """The tile a scrubber opens at: the one whose index is nearest the peak, else the first."""
    if peak is None:
        return 0
    return min(range(sheet["count"]), key=lambda k: (abs(sheet["indices"][k] - peak), k))


def map_entry(record, files):
    """One map's entry and the picture its thumbnail is made from (None: none of its files exists)."""
    entry = {"class": record.get("class"), "label": str(record.get("label", "")),
             "score": number(record.get("score")), "probability": number(record.get("probability")),
             "stats": compact(record.get("stats") or {}), "files": {}, "missing": [], "thumb": None}
    target = record.get("target")
    if isinstance(target, dict) and target.get("spec"):  # a target beyond a class: filterable by its spec
        entry["label"] = f"{entry['label']} [{target['spec']}]"
    if isinstance(record.get("gradient"), dict):
        entry["gradient"] = compact(record["gradient"])
    found = {}
    for kind, recorded in (record.get("outputs") or {}).items():
        if not str(recorded).endswith(".png"):  # raw .npy arrays are not pictures
            continue
        path = files.find(recorded)
        if path is None:
            entry["missing"].append(str(kind))
        else:
            found[kind] = path
            entry["files"][str(kind)] = files.href(path)
    layout = sheet_layout(record.get("sheet"))
    if layout is not None and "sheet" in found:
        entry["sheet"] = layout
    source = next((found[kind] for kind in THUMBNAIL_KINDS if kind in found), None)
    return entry, source or next(iter(found.values()), None)


def share_runs(images):
    """The fields every image of a run has alike (model, method, layer, details), moved from
    the image entries into a list of runs that each entry names by index ("run"): a tenth
    of the page's weight."""
    runs, index = [], {}
    for entry in images:
        run = {key: entry.pop(key) for key in RUN_KEYS}
        key = repr(sorted(run.items()))  # details: str, int, float or bool values
        if key not in index:
            index[key] = len(runs)
            runs.append(run)
        entry["run"] = index[key]
    return runs


def failure_entry(record):
    return {"name": str(record["input"]), "reason": str(record["error"])}


def compare_entries(records, files):
    """`gradcam compare` records grouped by figure (with --grid, several images share one), with
    the figure's layers plot (compare --layers: outputs["layers"]) when the records name one."""
    groups = {}
    for record in records:
        figure = (record.get("outputs") or {}).get("compare")
        groups.setdefault(str(figure) if figure else None, []).append(record)
    entries = []
    for figure, members in groups.items():
        path = files.find(figure)
        plot = next((r["outputs"]["layers"] for r in members if (r.get("outputs") or {}).get("layers")), None)
        plot_path = files.find(plot) if plot else None
        entries.append({
            "figure": files.href(path) if path else None,
            "note": None if path else f"figure missing: {figure}" if figure else "no figure in the records",
            "layers": None if plot is None else {"title": LAYERS_TITLE, "src": files.href(plot_path) if plot_path
                                                 else None, "note": None if plot_path else f"figure missing: {plot}"},
            "images": [{"name": str(r["input"]),
                        "rows": [_compare_row(row) for row in r["rows"] if isinstance(row, dict)]} for r in members],
        })
    return entries


def _compare_row(row):
    cells = []
    for cell in row.get("cells") or []:
        heading = " ".join(str(cell[key]) for key in ("method", "layer", "variant") if cell.get(key))
        cells.append({"heading": heading, "applicable": cell.get("applicable", True) is not False,
                      "score": number(cell.get("score")), "probability": number(cell.get("probability"))})
    return {"model": str(row.get("model", "")), "class": row.get("class"), "label": str(row.get("label", "")),
            "cells": cells}


def eval_entry(record, files):
    """`gradcam eval --json`'s report as tables (the command's own columns) and its figures."""
    from gradcam_cli.evaluate import (
        faithfulness_report,
        localization,  # their tables' columns (no Keras in either
    )

    methods = {str(name): figures for name, figures in record["methods"].items() if isinstance(figures, dict)}
    if "scenes" in record:
        what = f"{record['scenes']} generated scenes (seed {record.get('seed')})"
    else:
        what = f"{record.get('images')} image(s)"
    tables = []
    if "localization" in record.get("measures", ()):
        chance = [("chance", record["chance"])] if isinstance(record.get("chance"), dict) else []
        tables.append(_table("localization", localization.COLUMNS, list(methods.items()) + chance))
    faith = record.get("faithfulness")
    if isinstance(faith, dict):
        baselines = [(f"{name} (baseline)", figures) for name, figures in (faith.get("baselines") or {}).items()]
        title = f"faithfulness (deletion to {faith.get('baseline')}, {faith.get('steps')} steps)"
        tables.append(_table(title, faithfulness_report.COLUMNS, list(methods.items()) + baselines))
    if isinstance(record.get("randomisation"), dict):
        tables.append(_randomisation_table(record["randomisation"]))
    figures = []
    for key, recorded in (record.get("outputs") or {}).items():
        path = files.find(recorded)
        figures.append({"title": _FIGURE_TITLES.get(key, str(key)), "src": files.href(path) if path else None,
                        "note": None if path else f"figure missing: {recorded}"})
    return {"title": f"{record.get('model')}, layer {record.get('layer')}: {what}", "tables": tables,
            "figures": figures}


def _cell(key, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-" if value is None else str(value)
    return f"{value:.1f}" if key.endswith("percent") else f"{value:.3f}"


def _table(title, columns, rows):
    """A table of `rows` ((name, figures) pairs) for the `columns` ((key, title) pairs) that some row has."""
    shown = [(key, heading) for key, heading in columns if any(figures.get(key) is not None for _, figures in rows)]
    return {"title": title, "columns": ["method"] + [heading for _, heading in shown],
            "rows": [[name] + [_cell(key, figures.get(key)) for key, _ in shown] for name, figures in rows]}


def _randomisation_table(result):
    """Spearman rank correlation with the trained model's maps, per randomisation step and method."""
    methods = {str(name): points for name, points in (result.get("methods") or {}).items() if isinstance(points, list)}
    steps = [str(step.get("name")) for step in result.get("steps") or [] if isinstance(step, dict)]
    rows = []
    for k, step in enumerate(steps):
        cells = []
        for points in methods.values():
            point = points[k] if k < len(points) and isinstance(points[k], dict) else {}
            cells.append(_cell("spearman", (point.get("spearman") or {}).get("mean")))
        rows.append([step] + cells)
    return {"title": "cascading randomisation (Spearman rank correlation with the trained model's maps, lower is "
                     "better)", "columns": ["step"] + list(methods), "rows": rows}


_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


def _colour(value):
    """A record's concept colour as #rrggbb, or None (the page then shows no swatch)."""
    return value if isinstance(value, str) and _COLOUR.fullmatch(value) else None


def _concept_key(record):
    """What ties an image of `gradcam concepts` to its concepts: model, layer and the names."""
    names = tuple(str(c.get("name")) for c in record.get("concepts") or [] if isinstance(c, dict))
    return str(record.get("model")), str(record.get("layer")), names


def concept_entries(runs, images, files):
    """`gradcam concepts` records as the page's entries: per run of concepts (its 'concepts'
    record) its concepts (name, colour, top classes) and the overlay of each of its images (the
    'concept-image' records of the same model, layer and concept names; those of no run get an
    entry of their own)."""
    entries, by_key = [], {}
    for record in runs:
        concepts = [{"name": str(c.get("name", "")), "colour": _colour(c.get("colour"))}
                    for c in record["concepts"] if isinstance(c, dict)]
        title = (f"{record.get('model')}, layer {record.get('layer')}: {len(concepts)} concept(s) found in "
                 f"{record.get('images')} image(s), fitted on {record.get('images_fitted')}")
        entry = {"title": title, "concepts": concepts, "note": record.get("classes_note"), "images": []}
        entries.append(entry)
        by_key.setdefault(_concept_key(record), entry)
    for record in images:
        key = _concept_key(record)
        if key not in by_key:
            concepts = [{"name": str(c.get("name", "")), "colour": _colour(c.get("colour"))}
                        for c in record["concepts"] if isinstance(c, dict)]
            by_key[key] = {"title": f"{key[0]}, layer {key[1]}: {len(concepts)} concept(s)", "concepts": concepts,
                           "note": "the record of these concepts is not among the results", "images": []}
            entries.append(by_key[key])
        by_key[key]["images"].append(_concept_image(record, files))
    return entries


def _concept_image(record, files):
    recorded = (record.get("outputs") or {}).get("overlay")
    path = files.find(recorded)
    concepts = [c for c in record["concepts"] if isinstance(c, dict)]
    strongest = record.get("strongest")
    named = next((str(c.get("name")) for c in concepts if c.get("index") == strongest), None)
    note = None if path else f"overlay missing: {recorded}" if recorded else "no overlay written"
    return {"name": str(record["input"]), "overlay": files.href(path) if path else None, "note": note,
            "strongest": named}


def _counted(count, word):
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary(data):
    """The page's header counts, as phrases: the maps of the method commands' images (one card per
    map, one for an image without maps) when there are any, or when there is nothing else; the
    images of `gradcam concepts` when there are any; the failures."""
    cards = sum(max(len(entry["maps"]), 1) for entry in data["images"])
    concept_images = sum(len(entry["images"]) for entry in data["concepts"])
    counts = []
    if data["images"] or not concept_images:
        counts.append(f"{_counted(cards, 'map')} of {_counted(len(data['images']), 'image')}")
    if concept_images:
        counts.append(f"{_counted(concept_images, 'image')} with concepts")
    return counts + [_counted(len(data["failures"]), "failure")]
