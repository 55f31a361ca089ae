"""Output paths, atomic writes and JSON records.

An output is named OUTDIR/<input's relative name, extension kept>.<method>[.<tag>].<kind>.png,
so a.jpg and a.png never overwrite each other and folder trees are mirrored. Files are written
to a temporary name in the same folder and renamed into place: an interrupted run leaves no
half-written PNG behind.
"""

import json
import os
import secrets
import stat
import sys
import tempfile
from pathlib import Path

import numpy as np

# What a run can write (--save): the map's kinds, and the input-gradient images of `guided`
# (the methods declare them: explain/methods/method.py).
from gradcam_cli.explain.methods.method import GRADIENT_KINDS, MAP_KINDS

# What a run writes for a volume beyond the map kinds: `nifti`, the map as NAME.METHOD[.TAG].nii.gz
# with the input's affine (NIfTI and DICOM inputs). Declared here, files-side: the methods' kinds
# (MAP_KINDS) are the same for every method, and this one depends on the input, not the method.
VOLUME_KINDS = ("nifti",)
KINDS = MAP_KINDS + GRADIENT_KINDS + VOLUME_KINDS
# The tile sheet of a volume's slices or a clip's frames, NAME.METHOD[.TAG].sheet.png: written with
# the overlay of a model of volumes (files.writing.output_paths), never asked for alone, so it is
# no --save choice (not in KINDS).
SHEET_KIND = "sheet"
# The file name ending of each kind that is not named NAME.METHOD[.TAG].KIND.png.
NIFTI_ENDING = "nii.gz"


def is_output_name(name):
    """Whether a file name has the shape of this tool's outputs (NAME.METHOD[.TAG].KIND.png|npy,
    NAME[.TAG].compare.png and its layers plot NAME[.TAG].layers.png, NAME.METHOD[.TAG].record.json,
    a volume's NAME.METHOD[.TAG].nii.gz and NAME.METHOD[.TAG].sheet.png)."""
    parts = str(name).split(".")
    if len(parts) >= 4 and parts[-2:] == NIFTI_ENDING.split("."):
        return True
    if len(parts) < 4 or parts[-1] not in ("png", "npy", "json"):
        return False
    kind = parts[-2]
    if parts[-1] == "json":
        return kind == "record"
    if kind == SHEET_KIND:
        return parts[-1] == "png"
    return kind in ("compare", "layers") or kind in KINDS or kind in ("gradient-raw", "gradcam-raw")


def output_path(output_dir, source_name, method, kind, tag=None, extension=None):
    """OUTDIR/NAME.METHOD[.TAG].KIND.EXTENSION (png, or npy for raw); a volume's `nifti` map is
    OUTDIR/NAME.METHOD[.TAG].nii.gz."""
    if kind == "nifti":
        return Path(output_dir) / ".".join([source_name, method] + ([tag] if tag else []) + [NIFTI_ENDING])
    extension = extension or ("npy" if kind == "raw" else "png")
    parts = [source_name, method] + ([tag] if tag else []) + [kind, extension]
    return Path(output_dir) / ".".join(parts)


def check_writable(folder):
    """Check that files can be written in `folder` (made with its parents if missing): OSError
    when not. The folders made for the check are removed again; writing the outputs makes them.
    Run before any work, so that a run does not compute every map, then fail to write each one."""
    folder = Path(folder)
    made = [p for p in (folder, *folder.parents) if not p.exists() and not p.is_symlink()]
    try:
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(20, "it is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".gradcam-probe-", suffix=".part")
        os.close(handle)
        os.unlink(probe)
    finally:
        for path in made:  # deepest first
            try:
                path.rmdir()
            except OSError:
                pass


def write_atomic(path, data):
    """Write `data` (bytes) to `path` whole or not at all: into a temporary name in the same folder
    (.NAME.XXXXXXXX.part, 8 random hex digits: distributed/cluster.py removes those of killed Ray
    workers), then renamed over `path`. The temporary is named before it is made, so that an
    exception at any instant (KeyboardInterrupt, SystemExit from a signal handler, a full disk),
    even one just after it was created, removes it: no hidden .part file is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}.part"
    try:
        # mode 0o666 less the umask (the kernel applies it): outputs are ordinary files
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except FileExistsError:  # os.open's alone: another writer's temporary of that name, not ours to remove
        return write_atomic(path, data)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def remove_stale(paths):
    """Remove the temporary files that earlier, killed writes of `paths` left (a SIGKILL gives no
    chance to clean up), reading each folder once: a resumed run leaves no `.part` file behind.
    Only the temporaries of these paths go: another run writing other files in the same folder
    (a shard) keeps its own."""
    by_folder = {}
    for path in map(Path, paths):
        by_folder.setdefault(path.parent, set()).add(path.name)
    removed = 0
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if name.startswith(".") and name.endswith(".part") and name[1:-5].rpartition(".")[0] in names:
                try:
                    os.unlink(entry.path)
                    removed += 1
                except OSError:
                    pass
    return removed


def write_png(path, rgb):
    """Write an RGB (or 2-D greyscale) uint8 image as PNG; returns the path as a string."""
    import cv2  # here, not at the top: the CLI reads KINDS at start-up

    if rgb.ndim == 3 and rgb.shape[2] == 1:
        rgb = rgb[:, :, 0]
    pixels = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # 2-D: greyscale
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    write_atomic(path, encoded.tobytes())
    return str(path)


def write_apng(path, frames, duration_ms):
    """Write (T, H, W, 3) uint8 RGB frames as an animated PNG (APNG, Pillow's writer: `save_all`,
    looping for ever, `duration_ms` per frame, fractional milliseconds kept as the APNG delay's
    fraction), atomically; returns the path as a string. Every frame is kept, identical ones too
    (Pillow's writer would merge consecutive identical frames into one longer frame; frames here
    alternate the APNG blend operation between SOURCE and OVER, the same pixels for opaque RGB
    frames, which it does not merge), so frame t of the file is frame t of the array. One frame
    gives a still PNG."""
    from io import BytesIO

    from PIL import Image
    from PIL.PngImagePlugin import Blend

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.shape[0] < 1 or frames.dtype != np.uint8:
        raise ValueError(f"frames are (T, H, W, 3) uint8, T at least 1. Received: shape {frames.shape}, "
                         f"dtype {frames.dtype}")
    pictures = [Image.fromarray(frame) for frame in frames]
    buffer = BytesIO()
    pictures[0].save(buffer, format="PNG", save_all=True, append_images=pictures[1:], loop=0,
                     duration=[float(duration_ms)] * len(pictures),
                     blend=[Blend.OP_SOURCE if t % 2 == 0 else Blend.OP_OVER for t in range(len(pictures))])
    write_atomic(path, buffer.getvalue())
    return str(path)


def write_npy(path, array):
    from io import BytesIO

    buffer = BytesIO()
    np.save(buffer, np.asarray(array, dtype=np.float32))
    write_atomic(path, buffer.getvalue())
    return str(path)


def write_json(path, record):
    """Write a JSON record (json_line, then a newline) atomically; returns the path as a string."""
    write_atomic(path, (json_line(record) + "\n").encode("utf-8"))
    return str(path)


def _finite(value):
    """`value` with every float that is not finite replaced by None (JSON has no inf or NaN)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def json_line(record):
    """One JSON line; inf and NaN become null, so the line is always valid JSON."""
    return json.dumps(_finite(record), ensure_ascii=False, allow_nan=False)


class StandardOutputError(OSError):
    """Standard output cannot be written (a full disk, a closed file): said as such, not as a
    failure of the image being explained."""


def write_line(line, stream=None):
    """Write one line (a JSON record) to standard output (or `stream`) whole or not at all: in one
    write to its file descriptor, and when that fails part-way (a full disk), the file is cut back
    to where the line began, so that a reader never sees half a record. BrokenPipeError when the
    reader went away; StandardOutputError for any other failure."""
    stream = stream or sys.stdout
    try:
        descriptor = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (Click's test runner): one write
        stream.write(line + "\n")
        stream.flush()
        return
    data = (line + "\n").encode("utf-8")
    stream.flush()  # what was printed before goes first
    start = None
    try:
        status = os.fstat(descriptor)
        if stat.S_ISREG(status.st_mode):
            start = os.lseek(descriptor, 0, os.SEEK_CUR)
            import fcntl

            if fcntl.fcntl(descriptor, fcntl.F_GETFL) & os.O_APPEND:  # `>>`: each write lands at the end
                start = status.st_size
        written = 0
        while written < len(data):
            written += os.write(descriptor, data[written:])
    except BrokenPipeError:
        raise
    except OSError as error:
        if start is not None:
            try:
                os.ftruncate(descriptor, start)
                os.lseek(descriptor, start, os.SEEK_SET)
            except OSError:
                pass
        raise StandardOutputError(error.errno, f"cannot write to standard output: {error.strerror or error}") \
            from None
