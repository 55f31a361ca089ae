"""Tile sheets (files/sheets.py) and a volume's sheet (files.montage.d3_tiles, written with the
overlay by files.volume_outputs): the layout a page crops by, tiles compared with slices drawn by
hand from planted volumes and maps, the file named and planned with the other outputs. No model:
maps are planted."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gradcam_cli.errors import GradcamError
from gradcam_cli.files import outputs, render, sheets, volume_outputs, writing
from gradcam_cli.files.inputs import Source
from gradcam_cli.files.montage import SHEET_SIDE, sheet_indices
from gradcam_cli.files.volumes import Volume

ALPHA = 0.4


def _tiles(count, height, width):
    """`count` tiles, tile i filled with the colour (i, 2i, 255 - i) and one marked pixel."""
    tiles = np.zeros((count, height, width, 3), dtype=np.uint8)
    for i in range(count):
        tiles[i] = (i, 2 * i, 255 - i)
        tiles[i, 0, 0] = (255, 255, 255)
    return tiles


def _read(path):
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.mode == "RGB"
        return np.asarray(picture)


@pytest.mark.parametrize("count, width, columns", [
    (16, 112, 8),  # 14 fit in 1600 px: 2 rows, the tiles spread evenly over them
    (64, 160, 10),  # 10 fit: 7 rows of up to 10
    (5, 10, 5),  # all in one row
    (3, 2000, 1),  # wider than the sheet: one a row
    (1, 50, 1),
    (11, 400, 4),  # 4 fit: 3 rows, 4 columns (4 + 4 + 3)
])
def test_columns_fill_the_width_then_spread_evenly_over_the_rows(count, width, columns):
    assert sheets.columns_for(count, width) == columns


def test_tiles_lie_row_major_without_gaps_and_unused_cells_are_black():
    tiles = _tiles(7, 5, 600)  # 2 fit in 1600 px: 4 rows of 2, the last cell unused
    picture, layout = sheets.tile_sheet(tiles, [f"k={i}" for i in range(7)], list(range(10, 17)), "d3")
    assert layout == {"count": 7, "columns": 2, "tile": [5, 600], "axis": "d3",
                      "labels": [f"k={i}" for i in range(7)], "indices": list(range(10, 17))}
    assert picture.shape == (4 * 5, 2 * 600, 3) and picture.dtype == np.uint8
    for i in range(7):
        x, y = (i % 2) * 600, (i // 2) * 5
        np.testing.assert_array_equal(picture[y : y + 5, x : x + 600], tiles[i])
        np.testing.assert_array_equal(sheets.tile(picture, layout, i), tiles[i])
    assert not picture[15:20, 600:1200].any()  # the unused cell of the last row


@pytest.mark.parametrize("tiles, labels, indices, axis, words", [
    (np.zeros((2, 4, 4), np.uint8), ["a", "b"], [0, 1], "d3", "(N, h, w, 3) uint8"),
    (np.zeros((2, 4, 4, 3), np.float32), ["a", "b"], [0, 1], "d3", "uint8"),
    (np.zeros((0, 4, 4, 3), np.uint8), [], [], "d3", "N at least 1"),
    (np.zeros((2, 4, 4, 3), np.uint8), ["a"], [0, 1], "d3", "a label and an index per tile"),
    (np.zeros((2, 4, 4, 3), np.uint8), ["a", "b"], [0], "frames", "a label and an index per tile"),
    (np.zeros((2, 4, 4, 3), np.uint8), ["a", "b"], [0, 1], "time", "axis is one of d3, frames"),
])
def test_what_is_no_sheet_is_refused_in_one_line(tiles, labels, indices, axis, words):
    with pytest.raises(GradcamError, match=None) as caught:
        sheets.tile_sheet(tiles, labels, indices, axis)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_sheet_indices_every_slice_up_to_64_then_bin_centres():
    assert sheet_indices(1) == [0] and sheet_indices(64) == list(range(64))
    chosen = sheet_indices(200)
    assert len(chosen) == 64 and chosen[0] == 1 and chosen[-1] == 198
    assert chosen == [int((k + 0.5) * 200 / 64) for k in range(64)]
    assert all(b > a for a, b in zip(chosen, chosen[1:]))


# -- a volume's sheet, through render_volume_map ------------------------------------------------


def _options(tmp_path, save=("heatmap", "overlay", "raw"), method="gradcam"):
    return writing.FileOptions(output_dir=tmp_path, method=method, save=save, volumes=True, alpha=ALPHA)


def _render(tmp_path, array, small_map, spacing=(1.0, 1.0, 1.0), save=("heatmap", "overlay", "raw"),
            method="gradcam", kind="npy"):
    options = _options(tmp_path, save, method)
    volume = Volume(array, np.eye(4), spacing, "scan.npy", kind)
    paths = writing.output_paths(Source(Path("scan.npy"), "scan.npy"), options, writing.PlannedMap(-1, None))
    return volume_outputs.render_volume_map("thing", array, small_map, 0, 2.0, 0.5, paths, options, volume)


def _grey(scan):
    """The montage's grey: the scan's 1st-99th percentiles to 0..255 (the whole small volume sampled),
    in float32 as the montage computes it."""
    low, high = (float(v) for v in np.percentile(scan.astype(np.float64), [1.0, 99.0]))
    scan = scan.astype(np.float32)
    return np.rint(np.clip((scan - np.float32(low)) / np.float32(high - low), 0.0, 1.0) * np.float32(255.0))


def _blend(grey, heat01):
    """(1 - alpha) * grey + alpha * the colormap's colour of the heat, in float32, rounded once."""
    colour = render.colorize(heat01.astype(np.float32), "jet").astype(np.float32)
    blended = np.float32(1 - ALPHA) * grey[..., None].astype(np.float32) + np.float32(ALPHA) * colour
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def test_a_volume_sheet_tile_k_is_slice_k_blended_by_hand(tmp_path):
    # slices of 160 x 80 voxels of 1 mm: the tile is the slice at its own size (no resizing)
    rng = np.random.default_rng(3)
    scan = rng.normal(100.0, 30.0, (160, 80, 5)).astype(np.float32)
    planted = np.zeros((160, 80, 5), dtype=np.float32)
    planted[40:60, 10:30, 1] = 1.0
    planted[100:120, 50:70, 3] = 4.0  # the peak, on slice 3
    planted[:, :, 4] = np.linspace(0.0, 2.0, 80)[None, :]
    entry = _render(tmp_path, scan[..., None], planted)
    stem = tmp_path / "scan.npy.gradcam"
    assert entry["outputs"]["sheet"] == f"{stem}.sheet.png"
    layout = entry["sheet"]
    assert layout == {"count": 5, "columns": 5, "tile": [160, 80], "axis": "d3",
                      "labels": ["k=0", "k=1", "k=2", "k=3", "k=4"], "indices": [0, 1, 2, 3, 4]}
    picture = _read(entry["outputs"]["sheet"])
    assert picture.shape == (160, 400, 3)
    grey = _grey(scan)
    for k in range(5):
        expected = _blend(grey[:, :, k], planted[:, :, k] / 4.0)  # one colour scale: the volume's peak
        np.testing.assert_array_equal(picture[:, k * 80 : (k + 1) * 80], expected)
    # slice 1's spot is half the heat of slice 3's: a cooler colour, not its own maximum's
    assert not np.array_equal(picture[50, 80 + 20], picture[110, 240 + 60])


def test_a_volume_sheet_has_the_voxel_sizes_aspect_and_constant_slices_stay_flat(tmp_path):
    # 4 x 8 voxels of 2 mm x 1 mm: 8 mm x 8 mm, a square tile; each slice and its map constant
    depth = 6
    scan = np.broadcast_to(np.arange(depth, dtype=np.float32) * 10.0, (4, 8, depth)).copy()
    heat = np.broadcast_to(np.array([0.0, 1.0, 2.0, 3.0, 4.0, 2.0], np.float32), (4, 8, depth)).copy()
    entry = _render(tmp_path, scan[..., None], heat, spacing=(2.0, 1.0, 1.0))
    layout = entry["sheet"]
    assert layout["tile"] == [SHEET_SIDE, SHEET_SIDE] and layout["count"] == depth
    picture = _read(entry["outputs"]["sheet"])
    grey = _grey(scan)
    for k in range(depth):
        tile = sheets.tile(picture, layout, k)
        expected = _blend(grey[:1, :1, k], heat[:1, :1, k] / 4.0)[0, 0]
        assert (tile == expected).all(), (k, tile[0, 0], expected)


def test_a_deep_volume_sheet_takes_64_slices_evenly(tmp_path):
    scan = np.random.default_rng(0).random((6, 6, 130, 1)).astype(np.float32)
    heat = np.zeros((6, 6, 130), np.float32)
    heat[:, :, 65] = 1.0
    entry = _render(tmp_path, scan, heat)
    layout = entry["sheet"]
    assert layout["count"] == 64 and layout["indices"] == sheet_indices(130)
    assert layout["labels"] == [f"k={k}" for k in sheet_indices(130)]
    picture = _read(entry["outputs"]["sheet"])
    rows = -(-64 // layout["columns"])
    assert picture.shape == (rows * layout["tile"][0], layout["columns"] * layout["tile"][1], 3)


def test_the_sheet_comes_with_the_overlay_only(tmp_path):
    scan = np.random.default_rng(1).random((8, 8, 3, 1)).astype(np.float32)
    heat = np.random.default_rng(2).random((8, 8, 3)).astype(np.float32)
    entry = _render(tmp_path, scan, heat, save=("heatmap", "raw"))
    assert set(entry["outputs"]) == {"heatmap", "raw"} and "sheet" not in entry
    assert not list(tmp_path.glob("*.sheet.png"))
    entry = _render(tmp_path, scan, heat, save=("overlay",))
    assert set(entry["outputs"]) == {"overlay", "sheet"}


def test_sheet_paths_are_planned_named_and_recognised(tmp_path):
    source = Source(Path("scan.nii.gz"), "scan.nii.gz")
    paths = {}
    for method, tag in (("gradcam", None), ("hirescam", None), ("gradcam", "class2")):
        options = _options(tmp_path, ("overlay", "raw"), method)
        planned = writing.PlannedMap(2 if tag else -1, tag)
        paths[(method, tag)] = writing.output_paths(source, options, planned)["sheet"]
        assert paths[(method, tag)] in writing.written_paths(source, options) or tag  # planned with the rest
    assert paths[("gradcam", None)] == tmp_path / "scan.nii.gz.gradcam.sheet.png"
    assert paths[("hirescam", None)] == tmp_path / "scan.nii.gz.hirescam.sheet.png"
    assert paths[("gradcam", "class2")] == tmp_path / "scan.nii.gz.gradcam.class2.sheet.png"
    # a model of images gets no sheet
    images = writing.FileOptions(output_dir=tmp_path, save=("overlay", "raw"))
    assert "sheet" not in writing.output_paths(source, images, writing.PlannedMap(-1, None))
    for name in ("scan.nii.gz.gradcam.sheet.png", "a.png.gradcam.class2.sheet.png"):
        assert outputs.is_output_name(name)
    assert not outputs.is_output_name("a.sheet.png") and not outputs.is_output_name("a.png.gradcam.sheet.npy")
    assert "sheet" not in outputs.KINDS  # no --save choice: it comes with the overlay


def test_two_methods_write_two_sheets(tmp_path):
    scan = np.random.default_rng(4).random((160, 80, 2, 1)).astype(np.float32)
    first, second = np.zeros((160, 80, 2), np.float32), np.zeros((160, 80, 2), np.float32)
    first[:80, :, 0], second[80:, :, 1] = 1.0, 1.0
    a = _render(tmp_path, scan, first, method="gradcam")
    b = _render(tmp_path, scan, second, method="layercam")
    assert a["outputs"]["sheet"] != b["outputs"]["sheet"]
    assert not np.array_equal(_read(a["outputs"]["sheet"]), _read(b["outputs"]["sheet"]))
    grey = _grey(scan[..., 0])
    np.testing.assert_array_equal(_read(a["outputs"]["sheet"])[:, :80], _blend(grey[:, :, 0], first[:, :, 0]))


def test_an_explanation_of_a_volume_saves_its_sheet(tmp_path):
    from gradcam_cli.files.explanation import Explanation

    scan = np.random.default_rng(5).random((160, 80, 3, 1)).astype(np.float32)
    small = np.zeros((160, 80, 3), np.float32)
    small[10:20, 10:20, 2] = 1.0
    explained = Explanation(image=scan, small_map=small, class_index=0, label="x", score=1.0, probability=1.0,
                            predictions=[], method="gradcam", layer="conv", name="scan.npy")
    written = explained.save(tmp_path, save=("overlay",))
    assert set(written) == {"overlay", "sheet"}
    picture = _read(written["sheet"])
    np.testing.assert_array_equal(picture[:, 160:240], _blend(_grey(scan[..., 0])[:, :, 2], small[:, :, 2]))
