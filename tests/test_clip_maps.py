"""Clips through the volume path: synthetic clips (gradcam_cli.evaluate.clip_scenes), the shipped video
demos (demo-clip: Conv3D; demo-clip-frames: TimeDistributed Conv2D on each frame's foreground), their
Grad-CAM maps per frame, --frames, and what each kind of model refuses."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import random_batch_norm

from gradcam_cli.errors import GradcamError
from gradcam_cli.evaluate import clip_scenes
from gradcam_cli.files import clips

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_images" / "moving_square.avi"


@pytest.fixture(scope="module")
def clip_model():
    from gradcam_cli import load_model

    return load_model("demo-clip")


@pytest.fixture(scope="module")
def frames_model():
    from gradcam_cli import load_model

    return load_model("demo-clip-frames")


def test_scenes_are_seeded_and_only_motion_differs():
    first, again = clip_scenes.generate(3, seed=2), clip_scenes.generate(3, seed=2)
    assert first.clip.tobytes() == again.clip.tobytes() and first.clip.shape == (8, 32, 32, 3)
    for index in range(20):
        scene = clip_scenes.generate(index, seed=0)
        assert scene.label == ("moving" if index % 2 else "still")
        if scene.label == "still":
            assert not scene.moving.any() and (scene.still == scene.still[0]).all()
            continue
        # the moving square: the same size each frame, SPEED pixels a step, never touching the still one
        centres = [np.argwhere(m).mean(axis=0) for m in scene.moving]
        steps = np.abs(np.diff(centres, axis=0))
        assert set(np.unique(steps)) <= {0.0, float(clip_scenes.SPEED)} and steps.sum() > 0
        assert not (scene.moving & scene.still).any() and len(set(m.sum() for m in scene.moving)) == 1


def _in_box(box, y, x):
    """Whether pixel (y, x) is in box (top, left, bottom, right), grown by a pixel for the bilinear upsampling."""
    top, left, bottom, right = box
    return top - 1 <= y < bottom + 1 and left - 1 <= x < right + 1


def _hits(explanation, scene):
    """Of the clip's frames, how many have their map's peak inside the moving square's box (grown by a
    pixel for the bilinear upsampling), and how many on the still square."""
    inside = still = 0
    for t, frame in enumerate(explanation.map):
        y, x = np.unravel_index(np.argmax(frame), frame.shape)
        inside += _in_box(scene.boxes[t], y, x)
        still += bool(scene.still[t, y, x])
    return inside, still


def test_demo_clip_maps_peak_on_the_moving_square(clip_model):
    """Grad-CAM of "moving" on held-out moving clips (seed 2): per frame, the map's peak falls in the
    moving square's box in most frames; chance (a peak anywhere) is the box's area, at most 9x9 of
    32x32 pixels, under 8%; the still square, of the same look, is almost never the peak."""
    from gradcam_cli import Explainer

    explainer = Explainer(clip_model, "gradcam")
    scenes = [clip_scenes.generate(i, seed=2) for i in range(1, 40, 2)]
    found = explainer([s.clip.astype(np.float32) for s in scenes], classes="moving")
    assert all(e.map.shape == (8, 32, 32) for e in found)
    counts = np.array([_hits(e, s) for e, s in zip(found, scenes)])
    frames = 8 * len(scenes)
    assert counts[:, 0].sum() / frames > 0.6, counts
    assert counts[:, 1].sum() / frames < 0.05
    assert np.mean([e.label == "moving" for e in found]) > 0.9  # and the clips are seen as moving


def test_timedistributed_maps_peak_on_the_moving_square_in_each_frame(frames_model):
    """demo-clip-frames, Grad-CAM at frames3_conv (a TimeDistributed Conv2D's (T, h, w, K) output): the
    peak of frame t's map lies in the moving square's box at frame t (grown by a pixel, as _hits
    counts) in a clear majority of frames, where chance (a peak anywhere) is the grown box's share
    of the frame, under 8% for every clip here; the peak is not left behind on the square's path,
    and the still square, of the same look, is almost never the peak. (Fed by frame differences
    alone, the model before peaked where the square had been: in its box in a quarter of the frames.)"""
    from gradcam_cli import Explainer

    assert frames_model.default_layer and "frames3_conv" in str(frames_model.default_layer)
    explainer = Explainer(frames_model, "gradcam")
    scenes = [clip_scenes.generate(i, seed=2) for i in range(1, 40, 2)]
    found = explainer([s.clip.astype(np.float32) for s in scenes], classes="moving")
    assert all(e.map.shape == (8, 32, 32) for e in found)
    chance = [(bottom - top + 2) * (right - left + 2) / (32 * 32) for s in scenes for top, left, bottom, right in
              s.boxes]
    assert max(chance) < 0.08
    counts = np.array([_hits(e, s) for e, s in zip(found, scenes)])
    frames = 8 * len(scenes)
    in_box = counts[:, 0].sum() / frames
    assert in_box > 0.7 and in_box > 8 * np.mean(chance), (in_box, np.mean(chance))
    behind = 0  # peaks in the box of an earlier frame and not in this frame's: the map trailing the square
    for explanation, scene in zip(found, scenes):
        for t in range(1, 8):
            peak = np.unravel_index(np.argmax(explanation.map[t]), (32, 32))
            behind += any(_in_box(b, *peak) for b in scene.boxes[:t]) and not _in_box(scene.boxes[t], *peak)
    assert behind / (7 * len(scenes)) < 0.1, behind
    assert counts[:, 1].sum() / frames < 0.05
    assert np.mean([e.label == "moving" for e in found]) > 0.9


def test_fold_batch_norm_keeps_the_gate_of_demo_clip_frames(keras):
    """Folding demo-clip-frames: its TimeDistributed convolutions take their batch norms, its
    motion_gate (a bias-free 1x1 convolution with no batch norm of its own) is copied; the same
    function either way, and the gate is zero where a clip does not change (a still clip: no map)."""
    from gradcam_cli.models import demo

    keras.utils.set_random_seed(5)
    trained = demo.demo_clip_frames(input_size=(4, 8, 8), batch_norm=True)
    rng = np.random.default_rng(5)
    random_batch_norm(trained, rng)
    trained.get_layer("motion_gate").set_weights([rng.uniform(0.5, 2, (1, 1, 3, 1))])
    plain = demo.fold_batch_norm(trained, demo.demo_clip_frames(input_size=(4, 8, 8)))
    clips_in = rng.uniform(0, 1, (3, 4, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(plain.predict(clips_in, verbose=0), trained.predict(clips_in, verbose=0),
                               rtol=1e-4, atol=1e-6)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)
    np.testing.assert_array_equal(plain.get_layer("motion_gate").get_weights()[0],
                                  trained.get_layer("motion_gate").get_weights()[0])
    gate = keras.Model(plain.input, plain.get_layer("motion_gate").output)
    still = np.repeat(clips_in[:1, :1], 4, axis=1)
    assert np.abs(gate.predict(still, verbose=0)).max() < 1e-6 and gate.predict(clips_in, verbose=0).max() > 0


def test_clip_path_through_the_api_at_its_own_size_and_frames(clip_model):
    """The sample clip (16 frames of 48x64) by path: the model's 8 frames by default, the maps at the
    clip's own frame size; frames=12 gives 12 (the indices read_clip takes), resized over time to 8 and back."""
    from gradcam_cli import Explainer

    default = Explainer(clip_model, "gradcam")(str(SAMPLE))[0]
    assert default.map.shape == (8, 48, 64)
    twelve = Explainer(clip_model, "gradcam", frames=12)(SAMPLE)[0]
    assert twelve.map.shape == (12, 48, 64)
    assert clips.read_for_model(SAMPLE, 12, 8).indices == tuple(clips.sample_indices(16, 12))
    assert clips.read_for_model(SAMPLE, None, 8).indices == (0, 2, 4, 6, 8, 10, 12, 15)  # floor(linspace(0, 15, 8))
    with pytest.raises(GradcamError, match="frames"):
        Explainer(clip_model, "gradcam", frames=0)


def test_a_short_clip_gives_every_frame_by_default(tmp_path):
    for t in range(5):
        cv2.imwrite(str(tmp_path / f"f{t}.png"), np.full((24, 24, 3), 40 * t, np.uint8))
    assert clips.read_for_model(tmp_path, None, 8).indices == (0, 1, 2, 3, 4)
    with pytest.raises(clips.TooFewFrames):
        clips.read_for_model(tmp_path, 8, 8)


def test_stream_reads_a_clip_as_a_clip_volume():
    """files.stream's reader for a video model: a Volume of kind 'clip', RGB 0..255 float32, the Clip kept;
    --frames (FileOptions.details['frames']) reaches read_clip."""
    from types import SimpleNamespace

    from gradcam_cli.files.inputs import Source
    from gradcam_cli.files.stream import _load_volume

    loaded = SimpleNamespace(name="demo-clip", input_size=(8, 32, 32), channels=3)
    options = SimpleNamespace(max_voxels=None, details={"frames": 5}, save=("overlay",), window=None)
    _, volume, reason = _load_volume(loaded, options)(Source(SAMPLE, SAMPLE.name))
    assert reason is None and volume.kind == "clip" and volume.array.shape == (5, 48, 64, 3)
    assert volume.array.dtype == np.float32 and volume.array.max() > 200
    assert volume.clip.indices == tuple(clips.sample_indices(16, 5)) and np.array_equal(volume.affine, np.eye(4))


def _run(*arguments):
    """The command in-process (conftest.invoke_cli: TensorFlow already loaded), from the repository."""
    from conftest import invoke_cli

    return invoke_cli(*map(str, arguments), cwd=ROOT)


def test_cli_refuses_across_kinds_in_one_line_and_goes_on(tmp_path):
    """A clip to an image model and an image to a video model: each refused in one line, saying what the
    model takes; the other input of the batch is done; exit 1."""
    image = ROOT / "sample_images" / "synthetic_square.png"
    result = _run("gradcam", "--model", "demo-gap", SAMPLE, image, "-o", tmp_path / "a", "--quiet")
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if "moving_square.avi" in line]
    assert len(lines) == 1 and "takes images" in lines[0] and "video" in lines[0]
    assert list((tmp_path / "a").glob("synthetic_square.png.gradcam.*"))
    result = _run("gradcam", "--model", "demo-clip", image, SAMPLE, "-o", tmp_path / "b", "--json", "--quiet")
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if "synthetic_square.png" in line]
    assert len(lines) == 1 and "takes video clips" in lines[0]
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [Path(r["input"]).name for r in records if "maps" in r] == ["moving_square.avi"]


def test_cli_sample_clip_with_json_and_raw(tmp_path):
    """The sample clip end to end: the frames the reader takes reach the record, the animated
    overlay has one frame per frame taken, the sheet's tiles are those frames, the raw map is
    (T, H, W), and the summary counts clips."""
    from PIL import Image

    result = _run("gradcam", "--model", "demo-clip", SAMPLE, "-o", tmp_path, "--json", "--save", "raw,overlay")
    assert result.returncode == 0, result.stderr
    assert "1 clip(s) explained, 0 failed" in result.stderr
    record = json.loads(result.stdout.splitlines()[0])
    taken = clips.read_clip(SAMPLE, frames=8)
    assert record["clip"]["indices"] == list(taken.indices) and record["clip"]["frames"] == 8
    assert record["clip"]["peak_frame"] in taken.indices
    entry = record["maps"][0]
    raw = np.load(entry["outputs"]["raw"])
    assert raw.shape == (8, 48, 64)
    assert record["clip"]["peak_frame"] == taken.indices[int(np.unravel_index(raw.argmax(), raw.shape)[0])]
    with Image.open(entry["outputs"]["overlay"]) as overlay:
        assert overlay.is_animated and overlay.n_frames == 8 and overlay.size == (64, 48)
    assert entry["sheet"]["count"] == 8 and entry["sheet"]["indices"] == list(taken.indices)
    with Image.open(entry["outputs"]["sheet"]) as sheet:
        columns, (h, w) = entry["sheet"]["columns"], entry["sheet"]["tile"]
        assert sheet.size == (columns * w, -(-8 // columns) * h)


def test_cli_frames_option(tmp_path):
    result = _run("gradcam", "--model", "demo-clip", SAMPLE, "-o", tmp_path, "--frames", "0")
    assert result.returncode == 2 and "--frames" in result.stderr
    assert "linspace" in _run("gradcam", "--help").stdout.replace("\n", " ")
    result = _run("gradcam", "--model", "demo-clip", SAMPLE, "-o", tmp_path, "--json", "--frames", "12",
                  "--save", "raw", "--quiet")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0]).get("frames") == 12
    assert np.load(next(tmp_path.glob("*.raw.npy"))).shape == (12, 48, 64)


def test_a_folder_of_numbered_frames_is_one_clip_for_a_video_model(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    reader = clips.read_clip(SAMPLE)
    for t, frame in enumerate(reader.array):
        cv2.imwrite(str(folder / f"frame{t:02d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    result = _run("gradcam", "--model", "demo-clip", folder, "-o", tmp_path / "out", "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    assert len([line for line in result.stdout.splitlines() if line.strip()]) == 1
    result = _run("gradcam", "--model", "demo-gap", folder, "-o", tmp_path / "images", "--json", "--quiet")
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 16  # for an image model: 16 images
