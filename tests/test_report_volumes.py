"""The report's volumes and clips: a map's tile sheet (`sheet` block: count, columns, tile [h, w],
axis, labels, indices, per the clips contract) becomes the page's slice scrubber or frame player,
a clip's fps its playing speed; a record without a sheet shows as before.

Records are built by hand in the contract's shape (that of a real `gradcam scan.nii.gz --model
demo-volume --json` record, with the sheet output and block added): sheets whose tiles are each
one known colour, so that a page showing tile i can be checked by a pixel. The page itself is
opened in Chromium by tests/test_report_browser.py, with these builders.
"""

import json
from pathlib import Path

import numpy as np
from conftest import invoke_cli
from PIL import Image
from test_report import page_data

from gradcam_cli.report import write_report
from gradcam_cli.report.content import DEFAULT_FPS, sheet_layout

# Distinct, saturated colours: tile i of a test sheet is TILE_COLOURS[i], unused cells black.
TILE_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)]
MONTAGE_COLOUR = (40, 40, 160)


def sheet_picture(path, count, columns, tile):
    """A sheet PNG: `count` tiles of `tile` (h, w), `columns` a row, row-major, no gaps, tile i
    filled with TILE_COLOURS[i], unused cells of the last row black."""
    h, w = tile
    rows = -(-count // columns)
    pixels = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i in range(count):
        pixels[(i // columns) * h:(i // columns + 1) * h, (i % columns) * w:(i % columns + 1) * w] = TILE_COLOURS[i]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def plain(path, colour, size=(96, 64)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def animated(path, colours, fps, size=(48, 40)):
    """An animated PNG (as the files side writes a clip's overlay): one frame per colour."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [Image.new("RGB", size, colour) for colour in colours]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0)
    return path


def _map(out, name, outputs, sheet, peak):
    return {"class": 0, "label": "sphere", "score": 3.32, "probability": 0.999, "outputs": outputs, "sheet": sheet,
            "stats": {"empty": False, "raw_max": 0.078, "raw_mean": 0.0088, "resolution": [8, 8, 6], "mean": 0.12,
                      "area_above_half": 0.05, "peak_voxel": peak, "peak_world_mm": [-8.4, -9.6, 49.2]}}


def volume_record(folder, count=7, columns=3, tile=(20, 30), indices=None, name="scan.nii.gz", peak=(13, 14, 14)):
    """A demo-volume record as `gradcam scan.nii.gz --model demo-volume --json` prints it, with the
    contract's sheet: slices `indices` (default 0, 4, 8, ...) along d3, labels "k=I"."""
    out = folder / "out"
    indices = list(range(0, 4 * count, 4)) if indices is None else indices
    outputs = {"heatmap": str(plain(out / f"{name}.gradcam.heatmap.png", (200, 60, 20))),
               "overlay": str(plain(out / f"{name}.gradcam.overlay.png", MONTAGE_COLOUR)),
               "sheet": str(sheet_picture(out / f"{name}.gradcam.sheet.png", count, columns, tile))}
    sheet = {"count": count, "columns": columns, "tile": list(tile), "axis": "d3",
             "labels": [f"k={k}" for k in indices], "indices": indices}
    source = folder / "images" / name
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(b"not read by the report")
    return {"input": str(source), "model": "demo-volume", "method": "gradcam", "layer": "block3_conv",
            "precision": "float32", "output": "predictions", "channels": "luminance",
            "predictions": [{"class": 0, "label": "sphere", "probability": 0.999427},
                            {"class": 1, "label": "cube", "probability": 0.000573}],
            "maps": [_map(out, name, outputs, sheet, list(peak))], "seconds": 1.45,
            "volume": {"kind": "nifti", "shape": [32, 32, 4 * count], "channels": 1, "spacing": [1.5, 1.5, 2.5],
                       "affine": np.eye(4).tolist(), "peak_voxel": list(peak), "peak_world_mm": [-8.4, -9.6, 49.2],
                       "window": None}}


def clip_record(folder, count=5, columns=4, tile=(24, 32), fps=8.0, name="walk.mp4", peak_frame=None):
    """A clip's record per the contract: an animated overlay, a sheet of every taken frame (axis
    "frames", labels "frame I · T s"), the clip block (fps None: the record has none) and the
    volume block of kind 'clip'."""
    record = volume_record(folder, name=name)  # its fields, its files overwritten below
    out = folder / "out"
    for path in record["maps"][0]["outputs"].values():
        Path(path).unlink()
    indices = [3 * k for k in range(count)]
    seconds = [index / (fps or 30.0) for index in indices]
    outputs = {"heatmap": str(animated(out / f"{name}.gradcam.heatmap.png", TILE_COLOURS[count:0:-1],
                                       fps or DEFAULT_FPS)),
               "overlay": str(animated(out / f"{name}.gradcam.overlay.png", TILE_COLOURS[:count], fps or DEFAULT_FPS)),
               "sheet": str(sheet_picture(out / f"{name}.gradcam.sheet.png", count, columns, tile))}
    sheet = {"count": count, "columns": columns, "tile": list(tile), "axis": "frames",
             "labels": [f"frame {i} · {t:.2f} s" for i, t in zip(indices, seconds)], "indices": indices}
    source = plain(folder / "images" / f"{name}.png", (90, 90, 90))  # stands for the clip (not read)
    source = source.rename(source.with_suffix(""))
    peak_frame = indices[-1] if peak_frame is None else peak_frame
    record.update(input=str(source), model="demo-video", channels="rgb", seconds=0.8,
                  maps=[_map(out, name, outputs, sheet, [count - 1, 10, 12])],
                  volume={"kind": "clip", "shape": [count, tile[0], tile[1]], "channels": 3,
                          "spacing": [1.0, 1.0, 1.0], "affine": np.eye(4).tolist()},
                  clip={"kind": "video", "frames": 3 * count, "size": [tile[1], tile[0]], "fps": fps, "count": count,
                        "indices": indices, "times": seconds, "peak_frame": peak_frame,
                        "peak_time": seconds[indices.index(peak_frame)]})
    return record


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def _thumbnail_colour(report, entry_map):
    with Image.open(report / entry_map["thumb"]) as image:
        return np.asarray(image.convert("RGB"), np.float32).reshape(-1, 3).mean(axis=0)


# --- the page's data -------------------------------------------------------------------------------


def test_volume_map_gets_its_sheet_layout_and_opens_at_the_peak_slice(tmp_path):
    record = volume_record(tmp_path)  # slices 0, 4, ..., 24; the peak voxel's third index 14: nearest is 12 (tile 3)
    written = write_report([record], tmp_path / "report")
    assert (written.images, written.maps, written.missing) == (1, 1, 0)
    entry = page_data(written.index)["images"][0]
    assert entry["size"] == [32, 32, 28]  # the volume's shape: a volume record has no image_size
    sheet = entry["maps"][0]["sheet"]
    assert sheet == {"count": 7, "columns": 3, "tile": [20, 30], "axis": "d3", "indices": [0, 4, 8, 12, 16, 20, 24],
                     "labels": ["k=0", "k=4", "k=8", "k=12", "k=16", "k=20", "k=24"], "start": 3}
    assert set(entry["maps"][0]["files"]) == {"heatmap", "overlay", "sheet"}
    assert "clip" not in entry
    # the grid's thumbnail is the montage's (the overlay), not the sheet's
    assert np.abs(_thumbnail_colour(tmp_path / "report", entry["maps"][0]) - MONTAGE_COLOUR).max() < 6


def test_clip_gets_its_fps_and_the_animated_overlay_its_first_frame_as_thumbnail(tmp_path):
    written = write_report([clip_record(tmp_path, fps=12.5)], tmp_path / "report")
    entry = page_data(written.index)["images"][0]
    assert entry["clip"] == {"fps": 12.5, "assumed": False, "count": 5} and entry["volume"] == "clip"
    assert entry["size"] == [5, 24, 32]
    sheet = entry["maps"][0]["sheet"]
    assert sheet["axis"] == "frames" and sheet["start"] == 4  # the peak frame, 12, is the last taken
    assert sheet["labels"][1] == "frame 3 · 0.24 s"
    assert np.abs(_thumbnail_colour(tmp_path / "report", entry["maps"][0]) - TILE_COLOURS[0]).max() < 6


def test_clip_without_fps_plays_at_the_default(tmp_path):
    record = clip_record(tmp_path, fps=None)
    entry = page_data(write_report([record], tmp_path / "report").index)["images"][0]
    assert entry["clip"] == {"fps": DEFAULT_FPS, "assumed": True, "count": 5} and DEFAULT_FPS == 10.0


def test_record_without_a_sheet_shows_as_before(tmp_path):
    """An older run's volume record (no sheet output, no layout) and one whose sheet file is there
    without a layout: no scrubber; the sheet, when there, is a plain picture among the files."""
    older = volume_record(tmp_path, name="old.nii.gz")
    del older["maps"][0]["sheet"]
    older["maps"][0]["outputs"].pop("sheet")
    bare = volume_record(tmp_path, name="bare.nii.gz")
    bare["maps"][0]["sheet"] = {"count": 0, "columns": 3, "tile": [20, 30]}  # not a layout
    data = page_data(write_report([older, bare], tmp_path / "report").index)
    assert [sorted(image["maps"][0]["files"]) for image in data["images"]] == [
        ["heatmap", "overlay"], ["heatmap", "overlay", "sheet"]]
    assert all("sheet" not in image["maps"][0] for image in data["images"])


def test_a_missing_sheet_file_is_reported_and_gets_no_scrubber(tmp_path):
    record = volume_record(tmp_path)
    record["maps"][0]["outputs"]["sheet"] = str(tmp_path / "gone.sheet.png")
    written = write_report([record], tmp_path / "report")
    entry_map = page_data(written.index)["images"][0]["maps"][0]
    assert written.missing == 1 and entry_map["missing"] == ["sheet"] and "sheet" not in entry_map


def test_sheet_layout_checks_the_contract_and_fills_labels():
    good = {"count": 3, "columns": 2, "tile": [8, 12], "axis": "frames", "labels": ["a"], "indices": [5, 6, 7]}
    assert sheet_layout(good)["labels"] == ["a", "frame 6", "frame 7"]
    assert sheet_layout(dict(good, axis="d3", labels=None, indices=[1, 2]))["labels"] == ["d3 0", "d3 1", "d3 2"]
    assert sheet_layout(dict(good, labels=["a", "b", "c", "d"]))["labels"] == ["a", "b", "c"]
    for bad in ({"count": 0}, {"columns": True}, {"tile": [8]}, {"tile": [8, 0]}, {"tile": "8x12"},
                {"count": 10**6}, {"columns": 2.0}):
        assert sheet_layout(dict(good, **bad)) is None, bad
    assert sheet_layout(None) is None and sheet_layout([1, 2]) is None


def test_report_command_reads_volume_and_clip_lines(tmp_path):
    results = write_jsonl(tmp_path / "results.jsonl", [volume_record(tmp_path), clip_record(tmp_path)])
    result = invoke_cli("report", str(results), "-o", str(tmp_path / "report"))
    assert result.returncode == 0, result.stderr
    data = page_data(tmp_path / "report" / "index.html")
    assert [image["maps"][0]["sheet"]["axis"] for image in data["images"]] == ["d3", "frames"]
