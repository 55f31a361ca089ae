"""Results files (JSON lines, as `--json` prints them) and the kinds of record in them."""

import json
import logging
from pathlib import Path

log = logging.getLogger("gradcam_cli")

KINDS = ("image", "failure", "compare", "eval", "concept-image", "concepts")


def kind_of(record):
    """What a record is: 'image' (a method command's image, with its maps), 'failure' (an
    image that failed: its input and error), 'compare' (`gradcam compare --json`), 'eval'
    (`gradcam eval --json`), 'concept-image' (an image of `gradcam concepts --json`: its
    concepts' shares), 'concepts' (the concepts `gradcam concepts` found: names, classes, how
    many images); None for anything else."""
    if not isinstance(record, dict):
        return None
    if "input" in record and "error" in record:  # before maps: a rejected image has both
        return "failure"
    if "input" in record and isinstance(record.get("maps"), list):
        return "image"
    if "input" in record and isinstance(record.get("rows"), list):
        return "compare"
    if isinstance(record.get("methods"), dict) and "measures" in record:
        return "eval"
    if record.get("method") == "concepts" and isinstance(record.get("concepts"), list):
        return "concept-image" if "input" in record else "concepts" if "images_fitted" in record else None
    return None


def _lines(source):
    """(name, iterator of bytes lines, stream to close or None) for a path or an open stream."""
    if hasattr(source, "read"):
        stream = getattr(source, "buffer", source)  # a text stream's bytes: one bad line, not the file
        return getattr(source, "name", "<stream>"), stream, None
    stream = open(source, "rb")
    return str(source), stream, stream


def read_results(sources, on_bad_line=None):
    """The records of JSON-lines files (paths or open streams), in order. A line that is not
    JSON, not UTF-8 or not a gradcam record is reported, on_bad_line(where, reason) with where
    as FILE:LINE (default: a logged warning), and skipped; blank lines are ignored."""
    if isinstance(sources, (str, Path)) or hasattr(sources, "read"):
        sources = [sources]
    report = on_bad_line or (lambda where, reason: log.warning("warning: %s: %s", where, reason))
    for source in sources:
        name, lines, closing = _lines(source)
        try:
            for number, raw in enumerate(lines, 1):
                record = _parse(raw)
                if isinstance(record, str):
                    report(f"{name}:{number}", record)
                elif record is not None:
                    yield record
        finally:
            if closing is not None:
                closing.close()


def _parse(raw):
    """A line's record, None for a blank line, or the reason it is unusable (a str)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        return "not UTF-8 text"
    text = text.strip().lstrip("\ufeff")
    if not text:
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        return f"not JSON ({error.msg} at column {error.colno})"
    if kind_of(record) is None:
        return ("not a gradcam record (an image's with input and maps, a failure's with input and error, "
                "compare's, eval's or concepts')")
    return record
