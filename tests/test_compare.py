"""`gradcam compare`: figure geometry, captions, not-applicable cells, agreement with the method
commands, rank correlations, masks, the Grad-CAM variants, and the layers plot of --layers."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke_cli
from PIL import Image

from gradcam_cli.compare import layers as layer_plot
from gradcam_cli.evaluate import scenes
from gradcam_cli.evaluate.localization import rank_correlation
from gradcam_cli.explain import maps
from gradcam_cli.explain.maps import full_map
from gradcam_cli.explain.methods.gradcam import strongest_channel
from gradcam_cli.files import render
from gradcam_cli.files.outputs import is_output_name


def scene_files(folder, count=2, seed=1):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        scene = scenes.generate(i, seed=seed)
        path = folder / f"scene{i}.png"
        Image.fromarray(scene.image).save(path)
        paths.append(path)
    return paths


def expected_size(rows, columns, box=320, lines=2, gap=4, bar=render.COLORBAR_HEIGHT):
    font = max(11, min(20, box // 14))
    strip = lines * (font + 4) + 6
    return rows * (box + strip + gap) - gap + bar, columns * (box + gap) - gap


def test_grid_size_follows_rows_and_columns_and_inapplicable_cells_are_drawn(tmp_path):
    images = scene_files(tmp_path / "in")
    result = invoke_cli("compare", *images, "--models", "demo-vgg,demo-gap", "--methods", "gradcam,cam",
                     "--grid", "-o", tmp_path / "out", "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 2 and {r["outputs"]["compare"] for r in records} == {str(tmp_path / "out" / "grid.compare.png")}
    figure = np.asarray(Image.open(records[0]["outputs"]["compare"]))
    # 2 images x 2 models; input + 2 cells; a grid row's first caption names its image (3 lines)
    assert figure.shape == expected_size(rows=4, columns=3, lines=3) + (3,)
    assert [r["input"] for r in records] == [str(p) for p in images]
    vgg_cam = records[0]["rows"][0]["cells"][1]
    assert vgg_cam["applicable"] is False and "GlobalAveragePooling2D" in vgg_cam["reason"]
    assert records[0]["rows"][1]["cells"][1]["applicable"] is True  # demo-gap's head is GAP + Dense
    # the not-applicable cell: a grey box (with its label) where the map would be
    cell = figure[:320, 2 * 324 : 2 * 324 + 320]
    assert np.median(cell.reshape(-1, 3), axis=0).tolist() == [225, 225, 225] and (cell < 150).any()
    # every cell has a caption: dark text pixels in the strip beneath it
    for column in range(3):
        strip = figure[320 : 320 + 54, column * 324 : column * 324 + 320]
        assert (strip < 100).any(), column


def test_gradcam_cell_is_the_gradcam_commands_map_and_cam_correlates_perfectly(tmp_path):
    image = scene_files(tmp_path / "in", count=1)[0]
    compare = invoke_cli("compare", image, "--model", "demo-gap", "-o", tmp_path / "c", "--json")
    assert compare.returncode == 0, compare.stderr
    record = json.loads(compare.stdout)
    cells = {cell["method"]: cell for cell in record["rows"][0]["cells"]}
    # the default columns: the methods that apply to demo-gap (a plain chain, so dilated too)
    assert list(cells) == ["gradcam", "cam", "guided", "guided-gradcam", "dilated"]
    single = invoke_cli(image, "--model", "demo-gap", "-o", tmp_path / "g", "--json")
    assert single.returncode == 0, single.stderr
    mapped = json.loads(single.stdout)["maps"][0]
    assert cells["gradcam"]["stats"] == mapped["stats"]
    assert cells["gradcam"]["score"] == mapped["score"] and record["rows"][0]["class"] == mapped["class"]
    rho = {(p["a"], p["b"]): p["rho"] for p in record["rows"][0]["rank_correlation"]}
    assert rho[("gradcam", "cam")] == 1.0  # CAM = Grad-CAM x H*W: the same ranking everywhere
    assert len(rho) == 10  # every pair of the five cells
    assert rho[("gradcam", "dilated")] > 0.5
    assert cells["guided"]["stats"]["resolution"] == [64, 64]
    assert "layers" not in record["outputs"]  # one layer: no layers plot
    assert sorted(p.name for p in (tmp_path / "c").iterdir() if "layers" in p.name) == []


def test_masks_beside_images_give_eval_figures_and_are_not_inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    scene = scenes.generate(2, seed=1)
    Image.fromarray(scene.image).save(folder / "shape.png")
    Image.fromarray((scene.objects[0].mask * 255).astype(np.uint8)).save(folder / "shape.mask.png")
    result = invoke_cli("compare", folder, "--model", "demo-gap", "--methods", "gradcam", "-o", tmp_path / "out",
                     "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["input"] for r in records] == [str(folder / "shape.png")]
    figures = records[0]["rows"][0]["cells"][0]["eval"]
    assert set(figures) == {"pointing", "energy_in_box", "energy_in_mask", "box_iou"}
    assert 0 < figures["energy_in_mask"] <= figures["energy_in_box"]  # the mask lies inside its box
    assert figures["pointing"] is True and figures["energy_in_box"] > 0.3


def test_variants_columns_and_bad_names(tmp_path):
    image = scene_files(tmp_path / "in", count=1)[0]
    result = invoke_cli("compare", image, "--model", "demo-vgg", "--variants", "pool-mean,pool-max,argmax-channel,"
                     "relu-after-resize", "--layers", "block3_conv2,block4_conv2", "-o", tmp_path / "out", "--json")
    assert result.returncode == 0, result.stderr
    cells = json.loads(result.stdout)["rows"][0]["cells"]
    assert [(c["variant"], c["layer"]) for c in cells] == [
        (v, layer) for v in ("pool-mean", "pool-max", "argmax-channel", "relu-after-resize")
        for layer in ("block3_conv2", "block4_conv2")]
    assert [c["stats"]["resolution"] for c in cells[:2]] == [[16, 16], [8, 8]]
    figure = np.asarray(Image.open(json.loads(result.stdout)["outputs"]["compare"]))
    assert figure.shape[:2] == expected_size(rows=1, columns=9)
    # two layers: the layers plot beside the figure, drawn from the record's peaks and shares
    record = json.loads(result.stdout)
    plot = tmp_path / "out" / f"{Path(image).name}.layers.png"
    assert record["outputs"]["layers"] == str(plot) and is_output_name(plot.name)
    rgb = np.asarray(Image.open(image).convert("RGB"))
    drawn = layer_plot.render_layers([(Path(image).name, rgb, record)])
    assert np.array_equal(np.asarray(Image.open(plot).convert("RGB")), drawn)
    assert [label for label, _, _ in layer_plot.peak_items(record)] == [
        f"gradcam {v}@{layer}" for v in ("pool-mean", "pool-max", "argmax-channel", "relu-after-resize")
        for layer in ("block3_conv2", "block4_conv2")]
    assert [peak for _, peak, _ in layer_plot.peak_items(record)] == [tuple(c["stats"]["peak"]) for c in cells]
    for args, message in ((["--methods", "gradcam,bogus"], "--methods"), (["--variants", "pool-min"], "--variants")):
        bad = invoke_cli("compare", image, "--model", "demo-vgg", "-o", tmp_path / "out", *args)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr


def test_strongest_channel_and_relu_after_resize_by_hand():
    weights = np.array([[0.1, -2.0, 0.5], [3.0, 0.0, 2.9]])
    np.testing.assert_array_equal(strongest_channel(weights), [[0, 0, 1], [1, 0, 0]])
    small = np.array([[1.0, 1.0, 1.0], [1.0, -1000.0, 1.0], [1.0, 1.0, 1.0]], dtype=np.float32)
    before, _, _ = full_map(maps.relu(small), (0, 0, 12, 12), (12, 12))
    after, _, _ = full_map(small, (0, 0, 12, 12), (12, 12), relu_after_resize=True)
    assert np.all(after <= before + 1e-6) and after.min() == 0.0
    # with the ReLU after resizing, the negative point wipes out its neighbours
    assert (after == 0).sum() >= 16 and (before == 0).sum() <= 4 and before.min() < 0.5


def test_rank_correlation_by_hand():
    a = np.array([[0.0, 0.0], [1.0, 2.0]])
    b = np.array([[0.0, 0.5], [0.5, 3.0]])
    # average ranks: a -> 0.5, 0.5, 2, 3 ; b -> 0, 1.5, 1.5, 3
    ra, rb = np.array([0.5, 0.5, 2, 3]), np.array([0, 1.5, 1.5, 3])
    expected = np.corrcoef(ra, rb)[0, 1]
    assert rank_correlation(a, b) == pytest.approx(expected)
    assert np.isnan(rank_correlation(np.zeros((2, 2)), b))
