"""What a run writes for a clip (files/clip_outputs.py through files.writing.image_events): animated
overlay and heatmap PNGs opened frame by frame and compared with blends computed by hand from
planted maps, the sheet of frames, the raw map, the record's `clip` and `volume` blocks, NIfTI
refused, resuming with the sheet. Clips are files.volumes.Volume objects built by hand (kind
'clip', its files.clips.Clip); no model: the maps are planted."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from gradcam_cli.errors import GradcamError
from gradcam_cli.files import clip_outputs, outputs, render, sheets, writing
from gradcam_cli.files.clips import Clip
from gradcam_cli.files.inputs import Source
from gradcam_cli.files.volume_outputs import check_nifti
from gradcam_cli.files.volumes import Volume

ALPHA = 0.4
T, H, W = 5, 12, 16


def make_clip(frames, indices=None, fps=25.0, count=None):
    """A Volume of kind 'clip' as files.clips.read_clip's caller makes it (the contract)."""
    frames = np.asarray(frames, dtype=np.uint8)
    indices = tuple(range(len(frames))) if indices is None else tuple(indices)
    times = None if fps is None else tuple(k / fps for k in indices)
    clip = Clip(frames, indices, times, fps, "walk.mp4", "video", count or (indices[-1] + 1))
    return Volume(frames.astype(np.float32), np.eye(4), (1.0, 1.0, 1.0), "walk.mp4", "clip", clip=clip)


def frames_and_map(seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8)
    planted = np.zeros((T, H, W), np.float32)
    planted[0, 2:5, 3:7] = 1.0
    planted[3, 6:10, 9:14] = 2.0  # the peak: taken frame 3
    planted[4] = np.linspace(0.0, 1.5, W)[None, :]
    return frames, planted


def options_for(tmp_path, save=("heatmap", "overlay", "raw"), method="gradcam", records=False, request=None):
    return writing.FileOptions(output_dir=tmp_path, method=method, save=save, volumes=True, alpha=ALPHA,
                               records=records, request=request)


def run(tmp_path, volume, small_map, options):
    """image_events for one clip, with a stand-in model and a planted map: the events."""
    loaded = SimpleNamespace(name="clipnet", precision="float32", output=SimpleNamespace(name="scores"),
                             colour="rgb", label=lambda c: f"action{c}", warnings=())
    batch = SimpleNamespace(probabilities=np.array([[0.25, 0.75]]), scores=np.array([[0.5, 2.0]]), details=None,
                            classes=np.array([1]), small_maps=np.asarray(small_map)[None],
                            input_gradients=None)
    computed = writing.Computed([(writing.PlannedMap(-1, None), batch)], 0.01)
    source_path = tmp_path / "walk.mp4"
    if not source_path.exists():
        source_path.write_bytes(b"not read here")
    source = Source(source_path, "walk.mp4")
    return source, writing.image_events(loaded, source, volume, None, 0, computed, options, "conv3d")


def by_hand_overlay(frame, heat01):
    colour = render.colorize(heat01.astype(np.float32), "jet").astype(np.float32)
    blended = np.float32(1 - ALPHA) * frame.astype(np.float32) + np.float32(ALPHA) * colour
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def read_frames(path):
    """An APNG's frames (T, H, W, 3), durations (ms), and whether it is animated, with its loop."""
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        frames, durations = [], []
        for t in range(picture.n_frames):
            picture.seek(t)
            frames.append(np.asarray(picture.convert("RGB")))
            durations.append(picture.info["duration"])
        return np.stack(frames), durations, picture.is_animated, picture.info.get("loop")


def test_overlay_and_heatmap_are_animated_frame_by_frame_on_one_colour_scale(tmp_path):
    frames, planted = frames_and_map()
    volume = make_clip(frames, indices=(0, 3, 6, 9, 12), fps=25.0)
    _, events = run(tmp_path, volume, planted, options_for(tmp_path))
    (kind, _, record), = events
    assert kind == "result"
    written = record["maps"][0]["outputs"]
    stem = tmp_path / "walk.mp4.gradcam"
    assert written == {"heatmap": f"{stem}.heatmap.png", "overlay": f"{stem}.overlay.png",
                       "sheet": f"{stem}.sheet.png", "raw": f"{stem}.raw.npy"}
    overlay, durations, animated, loop = read_frames(written["overlay"])
    assert animated and loop == 0 and overlay.shape == (T, H, W, 3)
    assert durations == pytest.approx([40.0] * T, abs=0.01)  # 1000 / 25 fps
    heatmap, heat_durations, heat_animated, _ = read_frames(written["heatmap"])
    assert heat_animated and heat_durations == durations
    for t in range(T):
        heat01 = planted[t] / 2.0  # the whole clip's maximum: frame 0's spot is drawn at half the peak's heat
        np.testing.assert_array_equal(overlay[t], by_hand_overlay(frames[t], heat01))
        np.testing.assert_array_equal(heatmap[t], render.colorize(heat01, "jet"))
    raw = np.load(written["raw"])
    assert raw.dtype == np.float32 and raw.shape == (T, H, W)
    np.testing.assert_array_equal(raw, planted)


def test_the_sheet_is_the_strip_of_overlay_frames_labelled_with_their_times(tmp_path):
    frames, planted = frames_and_map(1)
    volume = make_clip(frames, indices=(0, 3, 6, 9, 12), fps=25.0)
    _, ((_, _, record),) = run(tmp_path, volume, planted, options_for(tmp_path, save=("overlay",)))
    entry = record["maps"][0]
    assert set(entry["outputs"]) == {"overlay", "sheet"}
    assert entry["sheet"] == {"count": T, "columns": T, "tile": [H, W], "axis": "frames",
                              "labels": ["frame 0 \u00b7 0.00 s", "frame 3 \u00b7 0.12 s", "frame 6 \u00b7 0.24 s",
                                         "frame 9 \u00b7 0.36 s", "frame 12 \u00b7 0.48 s"],
                              "indices": [0, 3, 6, 9, 12]}
    with Image.open(entry["outputs"]["sheet"]) as picture:
        assert not getattr(picture, "is_animated", False)
        sheet = np.asarray(picture.convert("RGB"))
    assert sheet.shape == (H, T * W, 3)
    overlay, _, _, _ = read_frames(entry["outputs"]["overlay"])
    for t in range(T):  # crop tile t where a page does
        x = (t % entry["sheet"]["columns"]) * W
        np.testing.assert_array_equal(sheet[:H, x : x + W], overlay[t])
        np.testing.assert_array_equal(sheets.tile(sheet, entry["sheet"], t),
                                      by_hand_overlay(frames[t], planted[t] / 2.0))


def test_big_frames_make_shrunk_tiles_and_many_frames_wrap(tmp_path):
    count = 12
    frames = np.full((count, 300, 600, 3), 90, np.uint8)
    heat = np.zeros((count, 300, 600), np.float32)
    heat[:, 100:200, 200:400] = np.arange(1, count + 1, dtype=np.float32)[:, None, None]
    volume = make_clip(frames, fps=None)
    _, ((_, _, record),) = run(tmp_path, volume, heat, options_for(tmp_path, save=("overlay",)))
    layout = record["maps"][0]["sheet"]
    assert layout["tile"] == [128, 256] and layout["count"] == count
    assert layout["columns"] == 6  # 6 of 256 px fit in 1600: 2 rows of 6
    assert layout["labels"] == [f"frame {k}" for k in range(count)]  # no fps: no times
    sheet = np.asarray(Image.open(record["maps"][0]["outputs"]["sheet"]).convert("RGB"))
    assert sheet.shape == (2 * 128, 6 * 256, 3)
    # the tile's centre: frame t's heat t + 1 of 12, blended on the grey 90
    for t in range(count):
        centre = sheets.tile(sheet, layout, t)[64, 128]
        expected = by_hand_overlay(np.full((1, 1, 3), 90, np.uint8), np.full((1, 1), (t + 1) / count))[0, 0]
        np.testing.assert_array_equal(centre, expected)


def test_identical_frames_are_all_kept_and_last_100_ms_without_an_fps(tmp_path):
    frames = np.full((4, 6, 8, 3), 30, np.uint8)
    volume = make_clip(frames, fps=None)
    _, events = run(tmp_path, volume, np.zeros((4, 6, 8), np.float32), options_for(tmp_path))
    kinds = [kind for kind, _, _ in events]
    assert kinds == ["empty", "result"]
    record = events[-1][2]
    for kind in ("overlay", "heatmap"):
        pictures, durations, animated, _ = read_frames(record["maps"][0]["outputs"][kind])
        assert animated and len(pictures) == 4 and durations == pytest.approx([100.0] * 4)
        assert (pictures == pictures[0]).all()
    assert record["clip"]["peak_frame"] is None and record["clip"]["peak_time"] is None


def test_the_record_keeps_the_volume_block_and_gets_the_clip_block(tmp_path):
    frames, planted = frames_and_map(2)
    volume = make_clip(frames, indices=(0, 3, 6, 9, 12), fps=25.0, count=14)
    _, ((_, _, record),) = run(tmp_path, volume, planted, options_for(tmp_path))
    assert record["clip"] == {"kind": "video", "frames": T, "size": [H, W], "fps": 25.0, "count": 14,
                              "indices": [0, 3, 6, 9, 12], "times": [0.0, 0.12, 0.24, 0.36, 0.48],
                              "peak_frame": 9, "peak_time": pytest.approx(0.36)}  # taken frame 3 is frame 9
    assert record["volume"]["kind"] == "clip" and record["volume"]["shape"] == [T, H, W]
    assert record["volume"]["peak_voxel"] == [3, 6, 9] and record["volume"]["peak_world_mm"] is None
    assert record["maps"][0]["stats"]["peak_voxel"] == [3, 6, 9]
    assert "image_size" not in record and record["maps"][0]["class"] == 1


def test_a_clips_nifti_is_refused_in_one_line_and_nothing_is_written(tmp_path):
    frames, planted = frames_and_map()
    volume = make_clip(frames)
    _, events = run(tmp_path, volume, planted, options_for(tmp_path, save=("overlay", "raw", "nifti")))
    (kind, _, reason), = events
    assert kind == "unreadable" and "\n" not in reason
    assert "a clip" in reason and "has none" in reason and "save raw instead" in reason
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walk.mp4"]
    with pytest.raises(GradcamError, match="a clip"):
        check_nifti("clip", ("nifti",))
    check_nifti("clip", ("raw", "overlay"))  # no NIfTI asked: nothing said


def test_skip_existing_knows_the_sheet(tmp_path):
    from gradcam_cli.files.writer import resumable

    frames, planted = frames_and_map()
    volume = make_clip(frames)
    options = options_for(tmp_path, save=("overlay", "raw"), records=True, request="same request")
    source, events = run(tmp_path, volume, planted, options)
    assert events[-1][0] == "result"
    sheet = Path(events[-1][2]["maps"][0]["outputs"]["sheet"])
    assert sheet in writing.written_paths(source, options)
    todo, done = resumable([source], options)
    assert todo == [] and list(done) == [0]
    assert done[0].record["maps"][0]["outputs"]["sheet"] == str(sheet)
    sheet.unlink()  # a missing sheet: done again
    todo, done = resumable([source], options)
    assert todo == [source] and done == {}


def test_two_methods_and_two_classes_do_not_overwrite(tmp_path):
    frames, planted = frames_and_map()
    volume = make_clip(frames)
    written = []
    for method, other in (("gradcam", planted), ("hirescam", planted[::-1].copy())):
        _, events = run(tmp_path, volume, other, options_for(tmp_path, save=("overlay", "heatmap"), method=method))
        written.append(events[-1][2]["maps"][0]["outputs"])
    assert all(set(w) == {"overlay", "heatmap", "sheet"} for w in written)
    names = [path for w in written for path in w.values()]
    assert len(set(names)) == 6 and all(Path(p).is_file() for p in names)
    first, _, _, _ = read_frames(written[0]["overlay"])
    second, _, _, _ = read_frames(written[1]["overlay"])
    assert not np.array_equal(first, second)
    assert all(outputs.is_output_name(Path(p).name) for p in names)


def test_write_apng_one_frame_is_a_still_png_and_bad_frames_are_refused(tmp_path):
    still = outputs.write_apng(tmp_path / "a.png", np.full((1, 3, 4, 3), 7, np.uint8), 40.0)
    with Image.open(still) as picture:
        assert not getattr(picture, "is_animated", False)
        assert (np.asarray(picture.convert("RGB")) == 7).all()
    for bad in (np.zeros((2, 3, 4), np.uint8), np.zeros((2, 3, 4, 3), np.float32), np.zeros((0, 3, 4, 3), np.uint8)):
        with pytest.raises(ValueError, match="frames are"):
            outputs.write_apng(tmp_path / "b.png", bad, 40.0)
    assert not list(tmp_path.glob(".*.part")) and not (tmp_path / "b.png").exists()


def test_frame_durations_follow_a_fractional_fps(tmp_path):
    frames, planted = frames_and_map()
    volume = make_clip(frames, fps=30.0)
    assert clip_outputs.frame_ms(volume) == pytest.approx(1000 / 30)
    _, ((_, _, record),) = run(tmp_path, volume, planted, options_for(tmp_path, save=("overlay",)))
    _, durations, _, _ = read_frames(record["maps"][0]["outputs"]["overlay"])
    assert durations == pytest.approx([1000 / 30] * T, abs=0.01)
