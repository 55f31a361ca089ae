"""--precision mixed-bfloat16: the convolutional trunk computes in bfloat16, the head and the
maps stay float32, and the maps agree with float32 ones to bfloat16's accuracy."""

import json

import numpy as np
import pytest
from conftest import invoke_cli, nested_model

from gradcam_cli.errors import GradcamError
from gradcam_cli.evaluate import scenes as scene_maker
from gradcam_cli.explain.batch import top_rank
from gradcam_cli.explain.compute import compute_maps
from gradcam_cli.explain.engine import Engine
from gradcam_cli.files.images import prepare
from gradcam_cli.models import loading
from gradcam_cli.models.dilated import dilated_copy
from gradcam_cli.models.precision import PRECISIONS, activation_bytes, set_precision


def scenes(size, count=4, seed=11):
    return [scene_maker.generate(i, seed, size=size).image for i in range(count)]


def agreement(exact, approximate):
    """(largest difference relative to the largest value, correlation) of two arrays."""
    scale = np.abs(exact).max()
    assert scale > 0
    return (np.abs(exact - approximate).max() / scale,
            np.corrcoef(exact.ravel(), approximate.ravel())[0, 1])


def maps_at(precision, method="gradcam", count=4):
    loaded = loading.load("demo-vgg", precision=precision)
    inputs, _ = prepare(loaded, scenes(loaded.input_size[0], count))
    engine = Engine(loaded, loaded.default_layer, batch_size=count)
    return loaded, compute_maps(loaded, engine, inputs, np.full(count, top_rank(1)), method=method)


def test_trunk_computes_in_bfloat16_and_the_head_in_float32(keras):
    loaded = loading.load("demo-vgg", precision="mixed-bfloat16")
    dtypes = {info.path[-1]: (info.layer.compute_dtype, info.spatial) for info in loaded.layers}
    trunk = [name for name, (_, spatial) in dtypes.items() if spatial]
    head = [name for name, (_, spatial) in dtypes.items() if not spatial]
    assert "block1_conv1" in trunk and head  # demo-vgg: conv blocks, then Flatten/Dense
    assert all(dtypes[name][0] == "bfloat16" for name in trunk)
    assert all(dtypes[name][0] == "float32" for name in head)
    assert all(v.dtype == "float32" for v in loaded.model.trainable_variables)  # weights stay float32
    assert loaded.precision == "mixed-bfloat16"
    # activations are held at 2 bytes, so a dilated batch fits twice the images
    plain = loading.load("demo-vgg")
    assert activation_bytes(plain) == 2 * activation_bytes(loaded)
    with pytest.raises(GradcamError, match="unknown precision"):
        set_precision(plain, "float16")


def test_bfloat16_maps_agree_with_float32(keras):
    _, exact = maps_at("float32")
    _, approximate = maps_at("mixed-bfloat16")
    assert approximate.small_maps.dtype == np.float32 and approximate.scores.dtype == np.float32
    np.testing.assert_array_equal(exact.classes, approximate.classes)
    largest, correlation = agreement(exact.small_maps, approximate.small_maps)
    # bfloat16 keeps 8 significant bits (relative rounding 2^-9 per operation)
    assert largest < 0.05 and correlation > 0.999
    assert largest > 0  # it did compute in another precision
    # scores: the head is float32, fed by a bfloat16 trunk
    assert agreement(exact.scores, approximate.scores)[0] < 0.05


def test_bfloat16_guided_gradients_agree_with_float32(keras):
    _, exact = maps_at("float32", method="guided", count=2)
    _, approximate = maps_at("mixed-bfloat16", method="guided", count=2)
    assert approximate.input_gradients.dtype == np.float32
    largest, correlation = agreement(exact.input_gradients, approximate.input_gradients)
    assert 0 < largest < 0.25 and correlation > 0.99


def test_nested_models_and_dilated_copies_take_the_precision(keras):
    loaded = loading.describe(nested_model(keras), "nested", (32, 32), "none", None)
    set_precision(loaded, "mixed-bfloat16")
    base = loaded.model.get_layer("base")
    assert [base.get_layer(n).compute_dtype for n in ("b_conv1", "b_pool", "b_conv2", "b_bn", "b_out")] == \
        ["bfloat16"] * 5
    assert loaded.model.get_layer("pred").compute_dtype == "float32"
    # bytes by hand: 32x32x8 (conv1), 16x16x8 (pool), 16x16x16 x3 (conv2, bn, out); the nested
    # model's own output is b_out's, not counted twice
    assert activation_bytes(loaded) == 2 * (32 * 32 * 8 + 16 * 16 * 8 + 3 * 16 * 16 * 16)
    images = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    result = Engine(loaded, ("base", "b_out"), batch_size=2).run(images, np.full(2, top_rank(1)))
    assert result.activations.dtype == np.float32 and np.abs(result.gradients).max() > 0

    vgg = loading.load("demo-vgg", precision="mixed-bfloat16")
    copy, target = dilated_copy(vgg, "exact", vgg.default_layer)
    assert copy.precision == "mixed-bfloat16"
    spatial = [info.layer for info in copy.layers if info.spatial]
    kinds = {type(layer).__name__ for layer in spatial}
    assert {"Conv2D", "ATrousPooling2D", "GridSubsample"} <= kinds
    assert all(layer.compute_dtype == "bfloat16" for layer in spatial)
    assert vgg.model.get_layer("block1_conv1").compute_dtype == "bfloat16"


def test_cli_precision_option(tmp_path):
    image = tmp_path / "scene.png"
    from PIL import Image

    Image.fromarray(scenes(64, 1)[0]).save(image)
    outputs = {}
    for precision in ("float32", "mixed-bfloat16"):
        result = invoke_cli(image, "--model", "demo-vgg", "-o", tmp_path / precision, "--json", "--save", "raw",
                         "--precision", precision)
        assert result.returncode == 0, result.stderr
        record = json.loads(result.stdout)
        assert record["precision"] == precision
        outputs[precision] = np.load(record["maps"][0]["outputs"]["raw"])
    largest, correlation = agreement(outputs["float32"], outputs["mixed-bfloat16"])
    assert largest < 0.05 and correlation > 0.999
    bad = invoke_cli(image, "--model", "demo-vgg", "-o", tmp_path / "x", "--precision", "float16")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr

    # compare: every cell, the dilated copy's too, at the row's precision
    cells = {}
    for precision in ("float32", "mixed-bfloat16"):
        result = invoke_cli("compare", image, "--model", "demo-vgg", "-o", tmp_path / f"c{precision}", "--json",
                         "--methods", "gradcam,dilated", "--precision", precision)
        assert result.returncode == 0, result.stderr
        record = json.loads(result.stdout)["rows"][0]
        assert record["precision"] == precision
        cells[precision] = (record["class"], record["cells"])
    assert cells["float32"][0] == cells["mixed-bfloat16"][0]  # the same class explained
    assert [c["method"] for c in cells["float32"][1]] == ["gradcam", "dilated"]
    for exact, approximate in zip(cells["float32"][1], cells["mixed-bfloat16"][1]):
        assert exact["method"] == approximate["method"]
        assert abs(exact["stats"]["raw_max"] - approximate["stats"]["raw_max"]) < 0.05 * exact["stats"]["raw_max"]
        assert exact["stats"]["raw_max"] != approximate["stats"]["raw_max"]


def test_the_command_offers_every_precision():
    from gradcam_cli import cli

    for command in (cli.gradcam_command, cli.compare_command):
        option = next(p for p in command.params if p.name == "precision")
        assert list(option.type.choices) == list(PRECISIONS)
