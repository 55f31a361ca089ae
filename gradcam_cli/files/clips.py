"""Video clips in: video files read by OpenCV, and folders of numbered frames.

A clip leaves here as a video model's time axis receives it: (T, H, W, 3) uint8 RGB, T the frames
taken, with the frames' indices in the clip and their times in seconds, so that a map per frame
can say which frame and which moment it explains.

  - Video files (.mp4, .avi, .mov, .webm), read by OpenCV's VideoCapture through its FFmpeg
    backend (or another file backend where FFmpeg is missing; never its image-sequence backend,
    which would read a name holding '%' as a pattern of files). Frames are as OpenCV decodes
    them (its FFmpeg backend applies a rotation stored in the file), BGR turned to RGB. A frame's
    time is index / fps, the fps the container states.
  - A folder of numbered frames: the PNG and JPEG files directly in it whose names hold a number
    (the last run of digits before the suffix: clip3_frame010.png is frame 10), in the order of
    those numbers (frame2 before frame10; leading zeros make no difference). Anything else in
    the folder (other files, images whose names hold no number, NAME.mask.png masks, hidden
    files, subfolders) is ignored. Gaps in the numbering are allowed: the numbers give the order
    only, and frames are counted consecutively (frame1, frame2, frame5 are indices 0, 1, 2). Two
    files of the same number, or frames of different sizes, are refused. Each frame is read by
    files/images.py's load_rgb (its header checked before decoding). Times are index / fps when
    `fps` is given, else None.

Sampling (sample_indices): frames=N takes N frames evenly over the clip, at indices
floor(linspace(0, count - 1, N)), the rule of torchvision's UniformTemporalSubsample (v2) and
pytorchvideo's uniform_temporal_subsample (`torch.linspace(0, t - 1, n).long()`), so that a
model trained through them sees the same frames here. (Rounding instead would give 0, 4, 7, 11
of 12 frames for N=4; this rule gives 0, 3, 7, 11.) frames=None takes every frame.

Every clip passes one gate before any frame is decoded: frames taken x height x width, from the
container's properties (CAP_PROP_FRAME_COUNT, CAP_PROP_FRAME_WIDTH, CAP_PROP_FRAME_HEIGHT) or the
frame files' headers, checked against `max_voxels` (default: files/images.py's
DEFAULT_MAX_PIXELS, the --max-pixels default). Some containers state no frame count, or a wrong
one: then the frames are counted while decoding, frames are held only while the pixels held stay
within the limit, and a clip found to exceed it is refused on the way.
"""

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gradcam_cli.errors import GradcamError, ImageError, argument, one_line
from gradcam_cli.files.images import DEFAULT_MAX_PIXELS, load_rgb
from gradcam_cli.files.names import CLIP_SUFFIXES, clip_suffix, is_mask

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
# The default limit on frames x height x width: the image pixel limit's number (Pillow's own).
DEFAULT_MAX_VOXELS = DEFAULT_MAX_PIXELS
# OpenCV's file backends, in the order tried (those this OpenCV has); never CAP_IMAGES.
_BACKENDS = ("CAP_FFMPEG", "CAP_MSMF", "CAP_AVFOUNDATION", "CAP_GSTREAMER", "CAP_OPENCV_MJPEG")
_DIGITS = re.compile(r"[0-9]+")


class ClipError(ImageError):
    """One video file or frame folder could not be used: the message names it and says why."""


class TooFewFrames(ClipError):
    """More frames were asked than the clip holds."""


@dataclass(frozen=True, eq=False)
class Clip:
    """A clip as a video model's time axis receives it.

    array:   (T, H, W, 3) uint8 RGB, the frames taken, in time order.
    indices: the taken frames' indices in the clip (0-based), a tuple of T ints.
    times:   their times in seconds, index / fps (a tuple of T floats), or None without an fps.
    fps:     frames per second (the container's; for a folder the fps given), or None.
    source:  the path read; kind: 'video' or 'frames'.
    count:   the frames in the whole clip (counted while decoding where the container's count
             was missing or wrong).
    files:   for a folder, the file names of the frames taken (a tuple of T); None for a video.
    """

    array: np.ndarray
    indices: tuple
    times: tuple
    fps: float
    source: str
    kind: str
    count: int
    files: tuple = None

    @property
    def size(self):
        """The frames' (height, width)."""
        return tuple(int(n) for n in self.array.shape[1:3])

    @property
    def frames(self):
        """T, the number of frames taken."""
        return int(self.array.shape[0])

    def record(self):
        """What a JSON record says of the clip: which frames, at which times, of how many."""
        return {"kind": self.kind, "frames": self.frames, "size": list(self.size), "fps": self.fps,
                "count": self.count, "indices": list(self.indices),
                "times": None if self.times is None else list(self.times)}


def sample_indices(count, n):
    """The indices of `n` frames taken evenly from a clip of `count` frames:
    floor(linspace(0, count - 1, n)) in float64, torchvision's UniformTemporalSubsample rule
    (first and last frames always taken; n == count gives every frame). GradcamError unless
    1 <= n <= count, both whole numbers."""
    for name, value in (("count", count), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise GradcamError(f"{name} must be a whole number of at least 1. Received: {value!r}")
    if n > count:
        raise GradcamError(f"cannot take {n} frames of {count}")
    return [int(i) for i in np.floor(np.linspace(0, count - 1, n))]


def numbered_frames(folder):
    """The numbered frames directly in `folder`: [(number, file name)] sorted by number (see the
    module's docstring for what counts). ClipError (without the folder's name) when two files
    hold the same number. OSError
    when the folder cannot be listed."""
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            suffix = os.path.splitext(name)[1].lower()
            if name.startswith(".") or suffix not in FRAME_SUFFIXES or is_mask(name) or not entry.is_file():
                continue
            digits = _DIGITS.findall(name[: -len(suffix)])
            if digits:
                found.append((int(digits[-1]), name))
    found.sort()
    for (number, first), (again, second) in zip(found, found[1:]):
        if number == again:
            raise ClipError(f"two frames numbered {number}: {first} and {second}")
    return found


def is_clip(path, folders=False):
    """Whether `path` is a clip: a file named *.mp4, *.avi, *.mov or *.webm, or, with `folders`,
    a folder holding numbered frames (numbered_frames).

    A folder of numbered frames is also an ordinary folder of images, each explained on its own
    by the image walker; so is_clip(folder) is False unless asked. The command line will ask
    (folders=True) only where the model takes clips, its input having a time axis
    (B, T, H, W, C): there each folder of numbered frames is one clip; for an image model the
    folder stays a folder of images."""
    path = Path(path)
    if path.is_dir():
        if not folders:
            return False
        try:
            return bool(numbered_frames(path))
        except (OSError, ClipError):
            return False
    return path.is_file() and clip_suffix(path) is not None


def check_frames(frames):
    """GradcamError unless `frames` (the frames a clip gives a video model) is None or a whole number >= 1."""
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, (int, np.integer))
                               or frames < 1):
        raise GradcamError(f"{argument('frames')} must be a whole number of at least 1 or None. "
                           f"Received: {frames!r}")


def _check_arguments(frames, max_voxels, fps):
    check_frames(frames)
    if max_voxels is not None and (isinstance(max_voxels, bool) or not isinstance(max_voxels, (int, np.integer))
                                   or max_voxels < 1):
        raise GradcamError(f"{argument('max_voxels')} must be a whole number of at least 1 or None. "
                           f"Received: {max_voxels!r}")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float, np.number))
                            or not math.isfinite(fps) or fps <= 0):
        raise GradcamError(f"{argument('fps')} must be a positive number or None. Received: {fps!r}")


def check_size(taken, height, width, max_voxels):
    """The gate: `taken` frames of height x width within `max_voxels` (None: no limit).
    ClipError (without the file's name) otherwise."""
    count = taken * height * width
    if max_voxels is not None and count > max_voxels:
        raise ClipError(f"clip too large: {taken}x{height}x{width} (frames x height x width) is {count:,} "
                        f"pixels, over the limit of {max_voxels:,} ({argument('max_voxels')})")


def _too_many(asked, count):
    return TooFewFrames(f"{argument('frames', str(asked))} asked, but the clip has {count} frame"
                     f"{'' if count == 1 else 's'}")


def read_clip(path, frames=None, max_voxels=DEFAULT_MAX_VOXELS, fps=None):
    """The Clip at `path`: a video file or a folder of numbered frames (the module's docstring).

    frames: N to take N frames evenly (sample_indices), None for every frame: the caller passes
    the model's time axis. max_voxels: the limit on frames taken x height x width (None: none),
    checked before any frame is decoded. fps: the frame rate where the source states none (a
    frame folder, a container without one): the times are index / fps; a container's own rate
    wins. GradcamError for a bad argument; ClipError with one line naming the file for anything
    that cannot be read as a clip."""
    _check_arguments(frames, max_voxels, fps)
    path = Path(path)
    try:
        if path.is_dir():
            return _folder(path, frames, max_voxels, fps)
        if clip_suffix(path) is None:
            raise ClipError(f"not a clip: give a {', '.join(CLIP_SUFFIXES)} file or a folder of numbered frames")
        if not path.is_file():
            raise ClipError("no such file")
        if path.stat().st_size == 0:
            raise ClipError("an empty file")
        return _video(path, frames, max_voxels, fps)
    except ClipError as error:
        if error.args[0].startswith("OpenCV cannot decode"):
            raise
        raise type(error)(f"{path}: {error.args[0]}") from None  # the reason (its tokens kept), named
    except PermissionError:
        raise ClipError(f"{path}: permission denied") from None
    except OSError as error:
        raise ClipError(f"{path}: cannot read: {error.strerror or one_line(error, 120)}") from None


# -- video files -------------------------------------------------------------------------------

def _open(path):
    """An opened VideoCapture of `path`, trying OpenCV's file backends in turn (its own MJPEG
    reader for .avi only), its warnings about a backend that fails kept quiet (its errors
    stay); ClipError when none opens it."""
    available = set(cv2.videoio_registry.getBackends())
    names = [n for n in _BACKENDS if n != "CAP_OPENCV_MJPEG" or clip_suffix(path) == ".avi"]
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(min(level, cv2.utils.logging.LOG_LEVEL_ERROR))
    try:
        for name in names:
            backend = getattr(cv2, name, None)
            if backend is None or backend not in available:
                continue
            capture = cv2.VideoCapture(str(path), backend)
            if capture.isOpened():
                return capture
            capture.release()
    finally:
        cv2.utils.logging.setLogLevel(level)
    raise ClipError(f"OpenCV cannot decode {path}: no video stream found in it (an unknown container or "
                    f"codec?)")


def _rgb(frame):
    if frame.dtype != np.uint8:
        raise ClipError(f"frames of type {frame.dtype}: 8-bit frames are read")
    if frame.ndim == 2:
        return np.repeat(frame[:, :, None], 3, axis=2)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def _decode(path, wanted, max_voxels, stated):
    """One pass over the video: every frame grabbed (decoded, not kept), those whose index is in
    `wanted` (None: all) retrieved and held, the pixels held checked against the limit as they
    come. Returns (held frames, frames counted). `stated`: the container's frame count, for the
    message (0: none)."""
    capture = _open(path)
    held, pixels, index = [], 0, 0
    try:
        while capture.grab():
            if wanted is None or index in wanted:
                ok, frame = capture.retrieve()
                if not ok or frame is None:
                    raise ClipError(f"OpenCV cannot decode {path}: frame {index} does not decode (codec?)")
                frame = _rgb(frame)
                if held and frame.shape != held[0].shape:
                    raise ClipError(f"its frames differ in size: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                                    f"the first {held[0].shape[1]}x{held[0].shape[0]} (width x height)")
                pixels += frame.shape[0] * frame.shape[1]
                if max_voxels is not None and pixels > max_voxels:
                    said = f"said {stated} frames" if stated > 0 else "stated no frame count"
                    raise ClipError(f"clip too large: {len(held) + 1} frames of {frame.shape[0]}x{frame.shape[1]} "
                                    f"(height x width) are {pixels:,} pixels, over the limit of {max_voxels:,} "
                                    f"({argument('max_voxels')}), found while decoding (its container {said})")
                held.append(frame)
            index += 1
    finally:
        capture.release()
    return held, index


def _video(path, frames, max_voxels, fps):
    capture = _open(path)
    try:
        stated = _whole(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        width = _whole(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = _whole(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        rate = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    rate = float(rate) if math.isfinite(rate) and rate > 0 else None if fps is None else float(fps)
    if stated > 0 and width > 0 and height > 0 and (frames is None or frames <= stated):
        check_size(stated if frames is None else frames, height, width, max_voxels)  # before decoding
    count = stated
    if frames is not None and frames > stated:  # no count stated, or fewer than asked: count them
        _, count = _decode(path, set(), max_voxels, stated)
    if count == 0 and frames is not None:
        raise ClipError(_no_frames(path))
    if frames is not None and frames > count:
        raise _too_many(frames, count)
    if frames is not None and stated != count and width > 0 and height > 0:
        check_size(frames, height, width, max_voxels)  # the frames counted: still before decoding any
    wanted = None if frames is None else sample_indices(count, frames)
    held, counted = _decode(path, None if wanted is None else set(wanted), max_voxels, stated)
    if counted == 0:
        raise ClipError(_no_frames(path))
    if frames is not None and counted != count:  # the stated count was wrong: sample the frames counted
        held = None
        if frames > counted:
            raise _too_many(frames, counted)
        wanted = sample_indices(counted, frames)
        held, counted = _decode(path, set(wanted), max_voxels, stated)
    indices = tuple(range(counted)) if wanted is None else tuple(wanted)
    if len(held) != len(indices):  # the file changed between passes
        raise ClipError(f"OpenCV cannot decode {path}: its frames changed while it was read")
    return Clip(np.stack(held), indices, _times(indices, rate), rate, str(path), "video", counted)


def _no_frames(path):
    return f"OpenCV cannot decode {path}: it opens, but no frame decodes (no frames, or a codec it lacks?)"


def _whole(value):
    return int(value) if math.isfinite(value) and value > 0 else 0


def _times(indices, fps):
    return None if fps is None else tuple(float(i) / fps for i in indices)


# -- frame folders -----------------------------------------------------------------------------

def _folder(folder, frames, max_voxels, fps):
    from gradcam_cli.files.headers import read_header

    found = numbered_frames(folder)
    if not found:
        raise ClipError(f"no numbered frames: give {', '.join(FRAME_SUFFIXES)} files whose names hold a "
                        f"number (frame1.png, frame2.png, ...)")
    if frames is not None and frames > len(found):
        raise _too_many(frames, len(found))
    names = [name for _, name in found]
    first = None  # (width, height, name) of the first frame whose header states its size
    for name in names:  # every frame's header, before any frame is decoded
        header = read_header(folder / name)
        if header is None or header.pixels is None:
            continue
        if first is None:
            first = (header.width, header.height, name)
        elif (header.width, header.height) != first[:2]:
            raise ClipError(f"its frames differ in size: {first[2]} is {first[0]}x{first[1]}, {name} is "
                            f"{header.width}x{header.height} (width x height)")
    indices = list(range(len(names))) if frames is None else sample_indices(len(names), frames)
    if first is not None:
        check_size(len(indices), first[1], first[0], max_voxels)
    held, pixels = [], 0
    for index in indices:
        name = names[index]
        try:
            rgb = load_rgb(folder / name)
        except ImageError as error:
            raise ClipError(f"frame {name}: {error.args[0]}") from None
        if held and rgb.shape != held[0].shape:
            raise ClipError(f"its frames differ in size: {names[indices[0]]} is {held[0].shape[1]}x"
                            f"{held[0].shape[0]}, {name} is {rgb.shape[1]}x{rgb.shape[0]} (width x height, "
                            f"as decoded)")
        pixels += rgb.shape[0] * rgb.shape[1]
        if max_voxels is not None and pixels > max_voxels:
            check_size(len(indices), rgb.shape[0], rgb.shape[1], max_voxels)
        held.append(rgb)
    return Clip(np.stack(held), tuple(indices), _times(indices, fps), None if fps is None else float(fps),
                str(folder), "frames", len(names), tuple(names[i] for i in indices))


def read_for_model(path, frames, time_axis, max_voxels=DEFAULT_MAX_VOXELS):
    """The Clip at `path` as a video model of `time_axis` frames (T, or None where free) takes it.

    frames: N (--frames) takes N frames evenly (sample_indices); N other than T is then resized
    over time to T on the way in, as any volume is to the model's input (explain.prepared).
    frames=None (the default) takes T frames evenly: the clip resampled to the model's time axis
    here, by the same rule; a clip of fewer than T frames gives every frame it has (stretched over
    time to T on the way in), and a model whose T is free every frame."""
    if frames is not None or time_axis is None:
        return read_clip(path, frames, max_voxels)
    try:
        return read_clip(path, int(time_axis), max_voxels)
    except TooFewFrames:
        return read_clip(path, None, max_voxels)


def model_inputs(loaded, items, names, frames):
    """The API's inputs for a model of volumes, as explain.prepared.volume_inputs gives them: for a
    video model (explain.prepared.takes_clips) each clip path (a video file, a folder of numbered
    frames) is first read by read_for_model as (T, H, W, 3) float32 RGB 0..255 and named by its
    file or folder name; arrays are taken as they are (a clip's (T, H, W, 3), RGB 0..255)."""
    from gradcam_cli.explain.prepared import takes_clips, volume_inputs

    if not takes_clips(loaded):
        return volume_inputs(loaded, items, names)
    arrays, found = [], []
    for index, item in enumerate(items):
        if isinstance(item, np.ndarray):
            arrays.append(item)
            found.append(f"clip{index}.npy")
            continue
        clip = read_for_model(item, frames, loaded.input_size[0])
        arrays.append(clip.array.astype(np.float32))
        found.append(Path(item).name)
    return volume_inputs(loaded, arrays, names if names is not None else found)
