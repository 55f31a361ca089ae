"""Each image's record on disk, next to its outputs: what makes a run resumable.

An image's files and its record are one unit, as a database transaction is: the PNGs (and
arrays) are written first, each atomically, then the record, atomically, as
OUTDIR/NAME.OUTPUT-NAME[.TAG].record.json (a compare figure's: NAME[.TAG].compare.record.json,
compare.figures). Whatever a crash leaves is therefore whole: an image
with a record file has all its files, and an image without one is done again on resume (its
files are rewritten with the same bytes). `--skip-existing` skips an image only when its record
file says it was made from the same source (path, size, modification time) for the same request
(model, method, layer, target, classes, options, what is saved and how), and its files exist;
the run then emits the stored record in the image's place, so a resumed run's output and report
cover every image, as one uninterrupted run's would.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from gradcam_cli.files import outputs

VERSION = 1  # of the record file's layout
RECORD_BYTES = 16 << 20  # a record file larger than this is not one of ours: the image is done again


def source_key(source):
    """What identifies an image's source: its name under the output folder, the real path of its
    file, its size and its modification time (a different image of the same name, or the same
    file changed, is not the one explained before); for a folder (a DICOM series), the total size
    of the files in it and the latest of their modification times."""
    path = Path(source.path)
    try:
        if path.is_dir():  # a DICOM series: its files together (a folder's own size and time say little)
            statuses = [entry.stat() for entry in os.scandir(path) if entry.is_file()]
            size = sum(status.st_size for status in statuses)
            modified = max((status.st_mtime_ns for status in statuses), default=path.stat().st_mtime_ns)
        else:
            status = path.stat()
            size, modified = status.st_size, status.st_mtime_ns
    except OSError:
        size, modified = None, None
    return {"name": source.name, "path": os.path.realpath(path), "size": size, "modified_ns": modified}


def request_key(request):
    """A digest of what a run asks for (a dict of JSON values): two runs asking the same things
    share it."""
    text = json.dumps(request, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_path(source, options, tag):
    """Where the record of `source` under files.writing.FileOptions `options` lies: beside its
    outputs, tagged like them (`tag`: the tags of every map the image gets, or None)."""
    return outputs.output_path(options.output_dir, source.name, options.name or options.method, "record", tag,
                               "json")


def write_record(path, source, request, record):
    """The record file, written atomically (after the image's outputs). `request`: request_key's
    digest of what the run asks for."""
    stored = {"version": VERSION, "source": source_key(source), "request": request, "record": record}
    return outputs.write_json(path, stored)


@dataclass(frozen=True)
class Stored:
    """A record read back from disk for resuming: the image's record as the run emitted it."""

    record: dict


def lists_maps(record):
    """Whether a stored record has a method run's shape: its maps, each naming its files."""
    maps = record.get("maps")
    return isinstance(maps, list) and all(isinstance(entry, dict) and isinstance(entry.get("outputs"), dict)
                                          for entry in maps)


def read_record(path, source, request, shaped=lists_maps):
    """The Stored record at `path` when it was made from `source` for `request` (the digest) and
    has the shape `shaped(record)` checks (a method run's by default; compare.figures passes its
    own); else None (the image is done again). Whether its files exist is the caller's to check
    (files.writer.resumable, compare.figures.resumable: where this run writes them)."""
    try:
        with open(path, "rb") as handle:
            stored = json.loads(handle.read(RECORD_BYTES + 1)[: RECORD_BYTES])
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("version") != VERSION or stored.get("request") != request:
        return None
    if stored.get("source") != source_key(source):
        return None
    record = stored.get("record")
    if not isinstance(record, dict) or not shaped(record):
        return None
    return Stored(record)
