"""Reading video clips (gradcam_cli/files/clips.py): video files through OpenCV and folders of
numbered frames, read as a video model's time axis receives them ((T, H, W, 3) uint8 RGB, with
the frames' indices and times), every clip measured before any frame is decoded, and refused in
one line naming the file. Every clip is written here, in tmp_path, with cv2.VideoWriter (a square
moving one step per frame) or as PNG files."""

import importlib.util
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from gradcam_cli.errors import GradcamError, ImageError
from gradcam_cli.files import clips
from gradcam_cli.files.clips import (
    CLIP_SUFFIXES,
    DEFAULT_MAX_VOXELS,
    Clip,
    ClipError,
    is_clip,
    numbered_frames,
    read_clip,
    sample_indices,
)
from gradcam_cli.files.images import DEFAULT_MAX_PIXELS

ROOT = Path(__file__).resolve().parents[1]
T, H, W, FPS = 12, 24, 32, 10.0
SIDE = 6  # the square's side; frame t: rows 9..14, columns 2t..2t+5


def _square_frame(t, colour=(255, 255, 255)):
    rgb = np.zeros((H, W, 3), dtype=np.uint8)
    rgb[9 : 9 + SIDE, 2 * t : 2 * t + SIDE] = colour
    return rgb


def _write(path, frames, fourcc="MJPG", fps=FPS):
    """Write RGB `frames` to `path` with OpenCV (given RGB, written BGR); skip where the codec
    cannot be written here."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        pytest.skip(f"this OpenCV cannot write {fourcc} to {path.suffix}")
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _moving(tmp_path, name="moving.avi", fourcc="MJPG", count=T):
    return _write(tmp_path / name, [_square_frame(t) for t in range(count)], fourcc)


def _left_columns(array):
    """The square's left column in each frame (lossy codecs: by threshold, not bytes)."""
    bright = array.max(axis=3) > 128
    return [int(np.flatnonzero(frame.any(axis=0))[0]) for frame in bright]


# -- sampling ----------------------------------------------------------------------------------

@pytest.mark.parametrize("count, n, expected", [
    (12, 4, [0, 3, 7, 11]),  # torchvision's rule (floor); rounding would give [0, 4, 7, 11]
    (12, 12, list(range(12))),
    (12, 1, [0]),
    (12, 2, [0, 11]),
    (16, 4, [0, 5, 10, 15]),
    (10, 3, [0, 4, 9]),
    (300, 8, [0, 42, 85, 128, 170, 213, 256, 299]),
    (1, 1, [0]),
])
def test_sample_indices(count, n, expected):
    assert sample_indices(count, n) == expected
    # The rule by hand: floor(i * (count - 1) / (n - 1)), exact in integers.
    assert expected == ([0] if n == 1 else [i * (count - 1) // (n - 1) for i in range(n)])


@pytest.mark.parametrize("count, n, message", [
    (12, 13, "cannot take 13 frames of 12"),
    (12, 0, "n must be a whole number of at least 1. Received: 0"),
    (0, 1, "count must be a whole number of at least 1. Received: 0"),
    (12, True, "n must be a whole number of at least 1. Received: True"),
    (12, 2.0, "n must be a whole number of at least 1. Received: 2.0"),
])
def test_sample_indices_refuses(count, n, message):
    with pytest.raises(GradcamError) as caught:
        sample_indices(count, n)
    assert str(caught.value) == message


# -- video files -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, fourcc", [("a.avi", "MJPG"), ("a.mp4", "mp4v"), ("a.mov", "mp4v"),
                                          ("a.webm", "VP80")])
def test_a_video_reads_every_frame_in_order(tmp_path, name, fourcc):
    path = _moving(tmp_path, name, fourcc)
    clip = read_clip(path)
    assert isinstance(clip, Clip)
    assert clip.array.shape == (T, H, W, 3) and clip.array.dtype == np.uint8
    assert clip.size == (H, W) and clip.frames == T and clip.count == T
    assert clip.fps == FPS and clip.kind == "video" and clip.source == str(path) and clip.files is None
    assert clip.indices == tuple(range(T))
    assert clip.times == pytest.approx([t / FPS for t in range(T)])
    assert _left_columns(clip.array) == [2 * t for t in range(T)]
    # The square's rows too, and the background dark away from it.
    rows = clip.array.max(axis=3).max(axis=2) > 128
    assert all(np.flatnonzero(r).tolist() == list(range(9, 9 + SIDE)) for r in rows)
    assert clip.array[:, :, W - 1].max() < 40


def test_sampling_takes_the_stated_frames_and_times(tmp_path):
    clip = read_clip(_moving(tmp_path), frames=4)
    assert clip.indices == (0, 3, 7, 11)
    assert clip.array.shape == (4, H, W, 3) and clip.count == T
    assert _left_columns(clip.array) == [0, 6, 14, 22]  # 2 x the indices
    assert clip.times == pytest.approx([0.0, 0.3, 0.7, 1.1])
    assert clip.record() == {"kind": "video", "frames": 4, "size": [H, W], "fps": FPS, "count": T,
                             "indices": [0, 3, 7, 11], "times": list(clip.times)}
    every = read_clip(_moving(tmp_path), frames=T)
    assert every.indices == tuple(range(T))


def test_bgr_becomes_rgb(tmp_path):
    for colour, name in (((255, 0, 0), "red.avi"), ((0, 0, 255), "blue.avi")):
        frame = np.zeros((H, W, 3), dtype=np.uint8)
        frame[:] = colour
        clip = read_clip(_write(tmp_path / name, [frame] * 3))
        mean = clip.array.reshape(-1, 3).mean(axis=0)
        strong = colour.index(255)
        assert mean[strong] > 200, (name, mean)
        assert all(mean[c] < 50 for c in range(3) if c != strong), (name, mean)


def test_the_sample_clip(tmp_path):
    spec = importlib.util.spec_from_file_location("make_sample_clip", ROOT / "scripts" / "make_sample_clip.py")
    made = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(made)
    clip = read_clip(ROOT / "sample_images" / "moving_square.avi")
    assert clip.array.shape == (made.FRAMES, made.HEIGHT, made.WIDTH, 3) and clip.fps == made.FPS
    assert _left_columns(clip.array) == [made.LEFT + made.STEP * t for t in range(made.FRAMES)]
    for t in range(made.FRAMES):  # Motion JPEG: close to the frames drawn, not equal
        difference = np.abs(clip.array[t].astype(int) - made.frame(t).astype(int))
        assert difference.mean() < 4, (t, difference.mean())
    # The script is deterministic: two runs (here, into tmp_path) write the same bytes. (The
    # shipped file's bytes are this OpenCV's only where its encoder is the one that wrote it.)
    made.ROOT = tmp_path
    written = []
    for name in ("once.avi", "again.avi"):
        made.OUT = tmp_path / name
        made.main()
        written.append(made.OUT.read_bytes())
    assert written[0] == written[1]
    assert _left_columns(read_clip(tmp_path / "once.avi").array) == _left_columns(clip.array)


# -- frame folders -----------------------------------------------------------------------------

def _folder(tmp_path, numbers, name="frames", pattern="frame{}.png", size=(H, W), seed=0):
    """PNG frames, created in shuffled order; frame number k holds the square at step k - 1 with
    k in its blue channel (lossless: exact bytes). Returns the folder and {number: array}."""
    folder = tmp_path / name
    folder.mkdir()
    arrays = {}
    order = list(numbers)
    random.Random(seed).shuffle(order)
    for number in order:
        rgb = np.zeros(size + (3,), dtype=np.uint8)
        rgb[9 : 9 + SIDE, 2 * (number - 1) : 2 * (number - 1) + SIDE, :2] = 255
        rgb[0, 0, 2] = number
        Image.fromarray(rgb).save(folder / pattern.format(number))
        arrays[number] = rgb
    return folder, arrays


def test_a_frame_folder_reads_in_numeric_order(tmp_path):
    folder, arrays = _folder(tmp_path, range(1, T + 1))
    # Ignored: other files, images without a number, masks, hidden files, subfolders.
    (folder / "notes.txt").write_text("frame 99")
    Image.new("RGB", (5, 5)).save(folder / "cover.png")
    Image.new("L", (W, H)).save(folder / "frame3.mask.png")
    Image.new("RGB", (5, 5)).save(folder / ".frame40.png")
    (folder / "frame50.png.d").mkdir()
    (folder / "frame60.png").mkdir()
    clip = read_clip(folder)
    assert clip.kind == "frames" and clip.source == str(folder) and clip.count == T
    assert clip.files == tuple(f"frame{k}.png" for k in range(1, T + 1))  # frame2 before frame10
    assert clip.indices == tuple(range(T)) and clip.times is None and clip.fps is None
    assert np.array_equal(clip.array, np.stack([arrays[k] for k in range(1, T + 1)]))
    sampled = read_clip(folder, frames=4, fps=6)
    assert sampled.indices == (0, 3, 7, 11)
    assert sampled.files == ("frame1.png", "frame4.png", "frame8.png", "frame12.png")
    assert np.array_equal(sampled.array, np.stack([arrays[k] for k in (1, 4, 8, 12)]))
    assert sampled.fps == 6.0 and sampled.times == pytest.approx([0, 0.5, 7 / 6, 11 / 6])


def test_frame_numbers_padded_or_with_gaps(tmp_path):
    folder, _ = _folder(tmp_path, [1, 2, 5, 10, 11], pattern="clip7_{:03d}.png")
    clip = read_clip(folder)  # gaps allowed: counted consecutively; the last number counts
    assert clip.files == ("clip7_001.png", "clip7_002.png", "clip7_005.png", "clip7_010.png", "clip7_011.png")
    assert clip.indices == (0, 1, 2, 3, 4)
    assert clip.array[:, 0, 0, 2].tolist() == [1, 2, 5, 10, 11]
    assert numbered_frames(folder)[2] == (5, "clip7_005.png")


def test_a_jpeg_frame_folder(tmp_path):
    folder = tmp_path / "jpegs"
    folder.mkdir()
    for k in range(1, 4):
        Image.fromarray(_square_frame(k)).save(folder / f"f{k}.JPG", quality=95)
    clip = read_clip(folder)
    assert clip.files == ("f1.JPG", "f2.JPG", "f3.JPG")
    assert _left_columns(clip.array) == [2, 4, 6]


# -- refusals ----------------------------------------------------------------------------------

def _refusal(path, **options):
    with pytest.raises(ClipError) as caught:
        read_clip(path, **options)
    message = str(caught.value)
    assert "\n" not in message
    assert isinstance(caught.value, ImageError)
    return message


def test_video_refusals(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(bytes(random.Random(1).randrange(256) for _ in range(4000)))
    assert _refusal(garbage) == (f"OpenCV cannot decode {garbage}: no video stream found in it "
                                 f"(an unknown container or codec?)")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert _refusal(empty) == f"{empty}: an empty file"
    writer = cv2.VideoWriter(str(tmp_path / "none.avi"), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (W, H))
    writer.release()  # a container of no frames
    none = tmp_path / "none.avi"
    expected = f"OpenCV cannot decode {none}: it opens, but no frame decodes (no frames, or a codec it lacks?)"
    assert _refusal(none) == expected
    assert _refusal(none, frames=2) == expected
    moving = _moving(tmp_path)
    assert _refusal(moving, frames=50) == f"{moving}: frames=50 asked, but the clip has 12 frames"
    missing = tmp_path / "missing.mp4"
    assert _refusal(missing) == f"{missing}: no such file"
    text = tmp_path / "notes.txt"
    text.write_text("x")
    assert _refusal(text) == (f"{text}: not a clip: give a .mp4, .avi, .mov, .webm file or a folder of "
                              f"numbered frames")


@pytest.mark.parametrize("options, message", [
    ({"frames": 0}, "frames must be a whole number of at least 1 or None. Received: 0"),
    ({"frames": -3}, "frames must be a whole number of at least 1 or None. Received: -3"),
    ({"frames": True}, "frames must be a whole number of at least 1 or None. Received: True"),
    ({"frames": 4.0}, "frames must be a whole number of at least 1 or None. Received: 4.0"),
    ({"max_voxels": 0}, "max_voxels must be a whole number of at least 1 or None. Received: 0"),
    ({"fps": 0}, "fps must be a positive number or None. Received: 0"),
    ({"fps": float("nan")}, "fps must be a positive number or None. Received: nan"),
])
def test_bad_arguments_are_refused_before_the_file(tmp_path, options, message):
    with pytest.raises(GradcamError) as caught:
        read_clip(tmp_path / "never_opened.mp4", **options)
    assert not isinstance(caught.value, ImageError)  # the call is wrong, not the file
    assert str(caught.value) == message


def test_the_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    assert DEFAULT_MAX_VOXELS == DEFAULT_MAX_PIXELS
    assert read_clip.__defaults__[1] == DEFAULT_MAX_PIXELS
    moving = _moving(tmp_path)
    folder, _ = _folder(tmp_path, range(1, T + 1))

    def never(*args, **kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(clips, "_decode", never)
    monkeypatch.setattr(clips, "load_rgb", never)
    limit = 4 * H * W - 1
    assert _refusal(moving, max_voxels=limit) == (
        f"{moving}: clip too large: 12x24x32 (frames x height x width) is 9,216 pixels, over the limit "
        f"of 3,071 (max_voxels)")
    assert _refusal(moving, frames=4, max_voxels=limit) == (
        f"{moving}: clip too large: 4x24x32 (frames x height x width) is 3,072 pixels, over the limit "
        f"of 3,071 (max_voxels)")
    assert _refusal(folder, frames=4, max_voxels=limit) == (
        f"{folder}: clip too large: 4x24x32 (frames x height x width) is 3,072 pixels, over the limit "
        f"of 3,071 (max_voxels)")
    # The command line spells the argument as its option.
    with pytest.raises(ClipError) as caught:
        read_clip(moving, max_voxels=limit)
    assert caught.value.worded(lambda name, py, cmd: "--max-pixels").endswith("(--max-pixels)")


def test_the_limit_counts_the_frames_taken(tmp_path):
    clip = read_clip(_moving(tmp_path), frames=4, max_voxels=4 * H * W)  # 12 frames would not fit
    assert clip.indices == (0, 3, 7, 11)
    folder, _ = _folder(tmp_path, range(1, T + 1))
    assert read_clip(folder, frames=4, max_voxels=4 * H * W).frames == 4
    assert read_clip(folder, max_voxels=None).frames == T


class _Stating:
    """A VideoCapture whose container states `count` frames (0: none), counting retrieve()s."""

    retrieved = 0

    def __init__(self, capture, count, rate=None):
        self.capture, self.count, self.rate = capture, count, rate

    def get(self, prop):
        if prop == cv2.CAP_PROP_FPS and self.rate is not None:
            return self.rate
        return float(self.count) if prop == cv2.CAP_PROP_FRAME_COUNT else self.capture.get(prop)

    def retrieve(self):
        type(self).retrieved += 1
        return self.capture.retrieve()

    def __getattr__(self, name):
        return getattr(self.capture, name)


@pytest.mark.parametrize("stated", [0, -1, 5, 30])
def test_a_wrong_frame_count_is_counted(tmp_path, monkeypatch, stated):
    real_open = clips._open
    monkeypatch.setattr(clips, "_open", lambda path: _Stating(real_open(path), stated))
    moving = _moving(tmp_path)
    every = read_clip(moving)
    assert every.indices == tuple(range(T)) and every.count == T
    assert _left_columns(every.array) == [2 * t for t in range(T)]
    sampled = read_clip(moving, frames=4)  # sampled over the 12 frames found, not the count stated
    assert sampled.indices == (0, 3, 7, 11) and sampled.count == T
    assert _left_columns(sampled.array) == [0, 6, 14, 22]
    assert read_clip(moving, frames=8).indices == (0, 1, 3, 4, 6, 7, 9, 11)
    assert _refusal(moving, frames=13) == f"{moving}: frames=13 asked, but the clip has 12 frames"


@pytest.mark.parametrize("rate", [0.0, -1.0, float("nan")])
def test_a_container_without_a_frame_rate(tmp_path, monkeypatch, rate):
    real_open = clips._open
    monkeypatch.setattr(clips, "_open", lambda path: _Stating(real_open(path), T, rate))
    moving = _moving(tmp_path)
    clip = read_clip(moving, frames=4)
    assert clip.fps is None and clip.times is None and clip.indices == (0, 3, 7, 11)
    given = read_clip(moving, frames=4, fps=4)  # the rate given where the container states none
    assert given.fps == 4.0 and given.times == (0.0, 0.75, 1.75, 2.75)
    monkeypatch.setattr(clips, "_open", real_open)
    assert read_clip(moving, frames=4, fps=4).fps == FPS  # the container's own rate wins


def test_no_count_stated_stops_at_the_limit_while_decoding(tmp_path, monkeypatch):
    real_open = clips._open
    _Stating.retrieved = 0
    monkeypatch.setattr(clips, "_open", lambda path: _Stating(real_open(path), 0))
    moving = _moving(tmp_path)
    limit = 5 * H * W
    assert _refusal(moving, max_voxels=limit) == (
        f"{moving}: clip too large: 6 frames of 24x32 (height x width) are 4,608 pixels, over the limit "
        f"of 3,840 (max_voxels), found while decoding (its container stated no frame count)")
    assert _Stating.retrieved == 6  # never more than the limit held, and one frame more decoded


def test_frame_folder_refusals(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "cover.png").write_bytes(b"")
    (empty / "notes12.txt").write_text("x")
    assert _refusal(empty) == (f"{empty}: no numbered frames: give .png, .jpg, .jpeg files whose names hold a "
                               f"number (frame1.png, frame2.png, ...)")
    twice, _ = _folder(tmp_path, [1, 2], name="twice")
    Image.new("RGB", (W, H)).save(twice / "frame01.png")
    assert _refusal(twice) == f"{twice}: two frames numbered 1: frame01.png and frame1.png"
    mixed, _ = _folder(tmp_path, [1, 2, 3], name="mixed")
    Image.new("RGB", (W + 1, H)).save(mixed / "frame2.png")
    assert _refusal(mixed) == (f"{mixed}: its frames differ in size: frame1.png is 32x24, frame2.png is 33x24 "
                               f"(width x height)")
    few, _ = _folder(tmp_path, [1, 2, 3], name="few")
    assert _refusal(few, frames=4) == f"{few}: frames=4 asked, but the clip has 3 frames"
    broken, _ = _folder(tmp_path, [1, 2], name="broken")
    (broken / "frame3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    message = _refusal(broken)
    assert message.startswith(f"{broken}: frame frame3.png: cannot decode")


# -- is_clip -----------------------------------------------------------------------------------

def test_is_clip(tmp_path):
    moving = _moving(tmp_path, "Moving.AVI")
    folder, _ = _folder(tmp_path, [1, 2])
    plain = tmp_path / "plain"
    plain.mkdir()
    Image.new("RGB", (4, 4)).save(plain / "cat.png")
    assert is_clip(moving) and is_clip(str(moving))
    for suffix in CLIP_SUFFIXES:
        (tmp_path / f"x{suffix}").write_bytes(b"")
        assert is_clip(tmp_path / f"x{suffix}")
    assert not is_clip(folder)  # a folder of images is an image folder unless asked
    assert is_clip(folder, folders=True)
    assert not is_clip(plain, folders=True)
    assert not is_clip(plain / "cat.png")
    assert not is_clip(tmp_path / "missing.mp4")
    (tmp_path / ".mp4").write_bytes(b"")
    assert not is_clip(tmp_path / ".mp4")
