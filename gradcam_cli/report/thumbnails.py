"""Thumbnails: small JPEGs in REPORT/thumbs/, one per distinct source picture.

A thumbnail is named after a hash of its source's path and the size, and is kept when it is
newer than its source: writing a report again over the same folder redoes only what changed.
"""

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

FOLDER = "thumbs"
JPEG_QUALITY = 80


def thumbnail_name(source, size):
    digest = hashlib.sha1(f"{os.path.abspath(source)}\0{size}".encode("utf-8", "surrogateescape")).hexdigest()
    return f"{digest[:16]}.jpg"


def is_thumbnail_name(name):
    stem, _, extension = name.partition(".")
    return extension == "jpg" and len(stem) == 16 and all(c in "0123456789abcdef" for c in stem)


def _fresh(thumbnail, source):
    try:
        return thumbnail.stat().st_mtime >= source.stat().st_mtime
    except OSError:
        return False


def write_thumbnail(source, thumbnail, size):
    """`source` scaled so its longer side is at most `size` pixels, as a JPEG at `thumbnail`
    (written atomically). Raises ImageError when the source cannot be read."""
    import cv2

    from gradcam_cli.files.images import load_rgb
    from gradcam_cli.files.outputs import write_atomic

    rgb = load_rgb(source)
    scale = min(1.0, size / max(rgb.shape[:2]))
    if scale < 1.0:
        shape = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = cv2.resize(rgb, shape, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"JPEG encoding failed for {thumbnail}")
    write_atomic(thumbnail, encoded.tobytes())


def make_thumbnails(sources, folder, size, progress=None, workers=None):
    """Thumbnails of the distinct `sources` (paths) in `folder`. Returns ({source: (file name,
    None) or (None, the reason it could not be made)}, how many were written: the others were
    fresh already). progress(1) after each. Thumbnails no source needs any more are removed."""
    from gradcam_cli.errors import ImageError

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {source: thumbnail_name(source, size) for source in dict.fromkeys(sources)}

    def make(source):
        thumbnail = folder / wanted[source]
        try:
            if _fresh(thumbnail, source):
                return (wanted[source], None), 0
            write_thumbnail(source, thumbnail, size)
            return (wanted[source], None), 1
        except ImageError as error:
            return (None, f"cannot read {Path(source).name}: {error}"), 0
        finally:
            if progress is not None:
                progress(1)

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = dict(zip(wanted, pool.map(make, wanted)))
    return {source: made for source, (made, _) in results.items()}, sum(n for _, n in results.values())


def prune(folder, keep):
    """Remove the thumbnails in `folder` whose names are not in `keep` (those of an earlier page):
    called once the new page is in place, so that an earlier page stays whole until then."""
    for path in Path(folder).iterdir():
        if is_thumbnail_name(path.name) and path.name not in keep:
            path.unlink(missing_ok=True)
