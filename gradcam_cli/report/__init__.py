"""The HTML report of a run: `gradcam report RESULTS.jsonl -o DIR`, or write_report(records, DIR).

REPORT/index.html is one static page (no server, no network, nothing external): a grid of the
maps' thumbnails (file name, class, score, map statistics), sorted and filtered in the page;
a click shows the original, the heatmap and the overlay side by side with the top-5
predictions; a volume's or clip's map with a tile sheet (its `sheet` output and block) also gets
a slice scrubber or a frame player at the clip's fps (report/content.sheet_layout). Failures,
`compare` figures, `eval` tables and curves and the concepts of `gradcam concepts` (their names
and colours, each image's overlay) get their own sections.
The records are embedded as JSON and the grid is built in chunks as it scrolls, so a page of
10,000 maps opens at once.

Files: thumbnails (JPEG, 160 px by default) are written to REPORT/thumbs/; originals, heatmaps,
overlays and figures are referred to where they lie, by paths relative to REPORT. The grid
therefore works wherever REPORT goes; the full-size views work while REPORT keeps its place
relative to the run's files. Every file is written atomically, index.html last; when the page
cannot be written (a full disk), the thumbnails made for it are removed again: a report is whole
or absent (an earlier report in the folder stays as it was).

No Keras or TensorFlow here: a report needs no model.
"""

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from gradcam_cli.errors import GradcamError, argument
from gradcam_cli.files.outputs import write_atomic
from gradcam_cli.report import content
from gradcam_cli.report.page import render_page
from gradcam_cli.report.records import KINDS, kind_of, read_results
from gradcam_cli.report.thumbnails import FOLDER, make_thumbnails, prune

__all__ = ["write_report", "read_results", "kind_of", "ReportError", "Written"]

INDEX = "index.html"
THUMBNAIL_SIZES = (32, 1024)


class ReportError(GradcamError):
    """A report that cannot be written as asked."""


@dataclass
class Written:
    """What write_report wrote."""

    index: Path  # REPORT/index.html
    images: int  # images with maps (method commands' records)
    maps: int  # cards in the grid
    failures: int
    compare: int  # compare figures
    eval: int  # eval reports
    missing: int  # images and figures with a file missing (their entries say which)
    thumbnails: int  # written now (the others were up to date)
    skipped: int  # records of no known kind
    concepts: int = 0  # runs of `gradcam concepts` (their concepts' records)
    concept_images: int = 0  # images of `gradcam concepts`


def write_report(records, output_dir, base_dir=None, title=None, thumbnail_size=160, progress=None, workers=None):
    """Write the report of `records` (dicts, as the commands print them with --json: method
    commands', failures {"input", "error"}, compare's, eval's and concepts', in any mix) into
    `output_dir`. Relative paths in the records are taken from `base_dir` (default: the current
    folder). progress(1) after each thumbnail; `workers` threads make them. Returns Written."""
    low, high = THUMBNAIL_SIZES
    if not isinstance(thumbnail_size, int) or not low <= thumbnail_size <= high:
        raise ReportError(f"the thumbnail size is a number of pixels from {low} to {high}. Received: "
                          + argument("thumbnail_size", repr(thumbnail_size)))
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ReportError(f"the report folder is a file. Received: {argument('output_dir', repr(str(output_dir)))}")
    before = _thumbnail_names(output_dir)
    try:
        return _write(records, output_dir, base_dir, title, thumbnail_size, progress, workers)
    except BaseException:  # whole or absent: the thumbnails made for a page that was not written go again
        for name in _thumbnail_names(output_dir) - before:
            (output_dir / FOLDER / name).unlink(missing_ok=True)
        raise


def _thumbnail_names(output_dir):
    try:
        return {entry.name for entry in (output_dir / FOLDER).iterdir()}
    except OSError:
        return set()


def _write(records, output_dir, base_dir, title, thumbnail_size, progress, workers):
    files = content.Files(base_dir, output_dir)
    kinds, skipped = _by_kind(records)
    images, sources = [], []
    for record in kinds["image"]:
        entry, map_sources = content.image_entry(record, files)
        images.append(entry)
        sources.append(map_sources)
    thumbnails, written = make_thumbnails([s for each in sources for s in each if s is not None],
                                          output_dir / FOLDER, thumbnail_size, progress, workers)
    for entry, map_sources in zip(images, sources):
        _attach(entry, map_sources, thumbnails)
    data = {
        "title": title or "gradcam report",
        "generated": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        "thumbnailSize": thumbnail_size,
        "runs": content.share_runs(images),
        "images": images,
        "failures": [content.failure_entry(record) for record in kinds["failure"]],
        "compare": content.compare_entries(kinds["compare"], files),
        "eval": [content.eval_entry(record, files) for record in kinds["eval"]],
        "concepts": content.concept_entries(kinds["concepts"], kinds["concept-image"], files),
    }
    data["summary"] = content.summary(data)
    index = output_dir / INDEX
    write_atomic(index, render_page(data, data["title"]).encode("utf-8"))  # last: the thumbnails are in place
    prune(output_dir / FOLDER, {name for name, _ in thumbnails.values() if name is not None})
    return Written(index=index, images=len(images), maps=sum(len(entry["maps"]) for entry in images),
                   failures=len(data["failures"]), compare=len(data["compare"]), eval=len(data["eval"]),
                   missing=_missing(data), thumbnails=written, skipped=skipped, concepts=len(kinds["concepts"]),
                   concept_images=len(kinds["concept-image"]))


def _by_kind(records):
    """{kind: its records} (records.KINDS) and how many records are of no kind."""
    kinds, skipped = {kind: [] for kind in KINDS}, 0
    for record in records:
        kind = kind_of(record)
        if kind is None:
            skipped += 1
        else:
            kinds[kind].append(record)
    return kinds, skipped


def _missing(data):
    """Images (original or a map's file) and figures with a file missing."""
    missing = sum(bool(entry["notes"] or any(m["missing"] for m in entry["maps"])) for entry in data["images"])
    missing += sum(entry["figure"] is None for entry in data["compare"])
    missing += sum(entry.get("layers") is not None and entry["layers"]["src"] is None for entry in data["compare"])
    missing += sum(image["overlay"] is None for entry in data["concepts"] for image in entry["images"])
    return missing + sum(figure["src"] is None for entry in data["eval"] for figure in entry["figures"])


def _attach(entry, map_sources, thumbnails):
    """Each map's thumbnail (REPORT-relative), or the reason it has none in the map's notes."""
    for entry_map, source in zip(entry["maps"], map_sources):
        entry_map["notes"] = [f"missing: {', '.join(entry_map['missing'])}"] if entry_map["missing"] else []
        if source is None:
            entry_map["notes"].append("no picture to show")
            continue
        name, reason = thumbnails[source]
        if name is not None:
            entry_map["thumb"] = f"{FOLDER}/{name}"
        else:
            entry_map["notes"].append(reason)
