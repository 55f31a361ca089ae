"""Output paths, atomic writes and JSON records.

An output is named OUTDIR/<input's relative name, extension kept>.<method>[.<tag>].<kind>.png,
so a.jpg and a.png never overwrite each other and folder trees are mirrored. Files are written
to a temporary name in the same folder and renamed into place: an interrupted run leaves no
half-written PNG behind.
"""

import json
import os
import tempfile
from pathlib import Path

import numpy as np

# What a run can write (--save): the map's kinds, and the input-gradient images of `guided`.
MAP_KINDS = ("heatmap", "overlay", "raw")
GRADIENT_KINDS = ("gradient", "gradient-gray", "gradcam", "gradcam-gray")
KINDS = MAP_KINDS + GRADIENT_KINDS


def _file_mode():
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def output_path(output_dir, source_name, method, kind, tag=None, extension=None):
    extension = extension or ("npy" if kind == "raw" else "png")
    parts = [source_name, method] + ([tag] if tag else []) + [kind, extension]
    return Path(output_dir) / ".".join(parts)


def _write_atomic(path, data):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, _file_mode())  # mkstemp creates 0600; outputs are ordinary files
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_png(path, rgb):
    """Write an RGB (or 2-D greyscale) uint8 image as PNG; returns the path as a string."""
    import cv2  # here, not at the top: the CLI reads KINDS at start-up

    pixels = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # 2-D: greyscale
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    _write_atomic(path, encoded.tobytes())
    return str(path)


def write_npy(path, array):
    from io import BytesIO

    buffer = BytesIO()
    np.save(buffer, np.asarray(array, dtype=np.float32))
    _write_atomic(path, buffer.getvalue())
    return str(path)


def json_line(record):
    return json.dumps(record, ensure_ascii=False, allow_nan=False)
