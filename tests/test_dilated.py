"""Dilated copies: the a trous network computes the original exactly, the no-pooling copy has
the expected architecture, conversions refuse what they cannot convert, and the command's outputs."""

import json
import re

import numpy as np
import pytest
from conftest import assert_records_close, invoke_cli, probabilities, set_fixed_weights
from PIL import Image

from gradcam_cli.evaluate import scenes as scene_maker
from gradcam_cli.explain import maps
from gradcam_cli.explain.batch import top_rank
from gradcam_cli.explain.engine import Engine
from gradcam_cli.explain.methods.gradcam import gradcam_weights
from gradcam_cli.models import dilated as dilated_module
from gradcam_cli.models import loading
from gradcam_cli.models.dilated import NotConvertible, dilated, dilated_copy
from gradcam_cli.models.layers import ATrousPooling2D, GridSubsample
from gradcam_cli.models.precision import activation_bytes


def feature(model, name, images):
    import keras

    return keras.Model(model.inputs, model.get_layer(name).output).predict(images, verbose=0)


def test_atrous_pooling_is_pooling_of_the_subgrid_and_edges_repeat(keras):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 12, 16, 3)).astype(np.float32)
    for kind, reduce in (("max", np.max), ("average", np.mean)):
        dense = np.asarray(ATrousPooling2D(2, dilation=(2, 4), kind=kind)(x))
        assert dense.shape == x.shape
        padded = np.pad(x, ((0, 0), (0, 2), (0, 4), (0, 0)), mode="edge")  # windows past the end repeat the edge
        by_hand = reduce(np.stack([padded[:, a * 2 : a * 2 + 12, b * 4 : b * 4 + 16] for a in (0, 1) for b in (0, 1)]),
                         axis=0)
        np.testing.assert_allclose(dense, by_hand, rtol=1e-6)
        # on the multiples of (4, 8): ordinary 2x2 pooling of the sub-grid of step (2, 4)
        sub = x[:, ::2, ::4]
        pooled = reduce(sub.reshape(2, 3, 2, 2, 2, 3), axis=(2, 4))
        np.testing.assert_allclose(dense[:, ::4, ::8], pooled, rtol=1e-6)
    grid = np.asarray(GridSubsample((4, 8))(x))
    np.testing.assert_array_equal(grid, x[:, ::4, ::8])
    assert GridSubsample(32).compute_output_shape((None, 224, 224, 512)) == (None, 7, 7, 512)
    with pytest.raises(ValueError, match="Received: kind='min'"):
        ATrousPooling2D(2, kind="min")


@pytest.fixture(scope="module")
def demo_vgg(keras):
    return loading.load("demo-vgg")


@pytest.fixture(scope="module")
def scenes():
    return np.stack([scene_maker.generate(i, seed=1).image for i in range(6)]).astype(np.float32) / 255.0


def test_exact_copy_of_demo_vgg_computes_the_original(demo_vgg, scenes):
    model = demo_vgg.model
    copy = dilated(model, "exact")
    np.testing.assert_allclose(copy.predict(scenes, verbose=0), model.predict(scenes, verbose=0), atol=1e-6)
    original, dense = feature(model, "block4_conv2", scenes), feature(copy, "block4_conv2", scenes)
    assert original.shape[1:3] == (8, 8) and dense.shape[1:3] == (64, 64)  # the input's resolution
    np.testing.assert_allclose(dense[:, ::8, ::8], original, rtol=1e-5, atol=1e-5)
    assert copy.count_params() == model.count_params()


def test_exact_gradcam_is_the_original_map_on_the_grid_at_full_resolution(demo_vgg, scenes):
    """The classifier reads the dense copy only on the grid, so its gradients are the original's
    there and zero between: channel weights are the original's times (8*8)/(64*64), and the dense
    map on every 8th pixel is the original map times that factor."""
    copy, target = dilated_copy(demo_vgg, "exact", ("block4_conv2",))
    maps_ = []
    for loaded, path in ((demo_vgg, ("block4_conv2",)), (copy, target)):
        result = Engine(loaded, path, batch_size=6).run(scenes, np.full(6, top_rank(1)))
        maps_.append(maps.relu(maps.weighted_sum(result.activations, gradcam_weights(result.activations,
                                                                                    result.gradients))))
    small, dense = maps_
    assert small.shape == (6, 8, 8) and dense.shape == (6, 64, 64)
    np.testing.assert_allclose(dense[:, ::8, ::8], small * (64 / 4096), rtol=1e-4, atol=1e-7)
    assert (dense > 0).mean() > 2 * (dense[:, ::8, ::8] > 0).mean() / 64  # filled between the grid points


def test_exact_copy_of_vgg16_with_a_weights_file(keras, tmp_path):
    keras.utils.set_random_seed(5)
    path = tmp_path / "random_vgg16.weights.h5"
    keras.applications.VGG16(weights=None).save_weights(path)
    original = loading.load("vgg16", weights=str(path))
    copy, target = dilated_copy(original, "exact", original.default_layer)
    assert target == ("block5_conv3",) and copy.default_layer != ("grid",)
    image = np.random.default_rng(2).uniform(-120, 130, (1, 224, 224, 3)).astype(np.float32)
    np.testing.assert_allclose(probabilities(copy, image), probabilities(original, image), rtol=1e-5, atol=1e-9)
    coarse, dense = feature(original.model, "block5_conv3", image), feature(copy.model, "block5_conv3", image)
    assert dense.shape == (1, 224, 224, 512) and np.abs(coarse).max() > 0
    np.testing.assert_allclose(dense[:, ::16, ::16], coarse, rtol=1e-4, atol=1e-5 * np.abs(coarse).max())


def test_seed_copy_of_vgg16_has_the_seeds_architecture(keras):
    vgg = keras.applications.VGG16(weights=None)
    before = [layer.get_config() for layer in vgg.layers]
    seed = dilated(vgg, "no-pooling")
    convs = [layer for layer in seed.layers if type(layer).__name__ == "Conv2D"]
    assert [layer.dilation_rate[0] for layer in convs] == [1, 1, 2, 2, 4, 4, 4, 8, 8, 8, 16, 16, 16]
    assert all(tuple(layer.output.shape[1:3]) == (224, 224) for layer in convs)
    assert convs[-1].name == "block5_conv3"
    pool = seed.get_layer("dilated_pool")
    assert tuple(pool.pool_size) == (32, 32) and tuple(pool.output.shape[1:]) == (7, 7, 512)
    assert [type(layer).__name__ for layer in seed.layers[-5:]] == ["MaxPooling2D", "Flatten"] + ["Dense"] * 3
    assert tuple(seed.get_layer("flatten").output.shape[1:]) == (25088,)
    assert seed.count_params() == vgg.count_params() == 138_357_544
    assert [layer.get_config() for layer in vgg.layers] == before  # the original is untouched
    for ours, theirs in zip(seed.get_layer("fc1").get_weights(), vgg.get_layer("fc1").get_weights()):
        np.testing.assert_array_equal(ours, theirs)


def test_conversion_refuses_what_it_cannot_convert(keras):
    layers = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    y = layers.Conv2D(4, 3, padding="same", name="b")(x)
    residual = keras.Model(inputs, layers.Dense(2)(layers.Flatten()(layers.Add(name="join")([x, y]))))
    strided = keras.Sequential([keras.Input((16, 16, 3)), layers.Conv2D(4, 3, strides=2, name="down"),
                                layers.Flatten(), layers.Dense(2)])
    overlapping = keras.Sequential([keras.Input((16, 16, 3)), layers.MaxPooling2D(3, strides=2, name="overlap"),
                                    layers.Flatten(), layers.Dense(2)])
    depthwise = keras.Sequential([keras.Input((16, 16, 3)), layers.DepthwiseConv2D(3, name="dw"),
                                  layers.Flatten(), layers.Dense(2)])
    for model, message in ((residual, "'join' (Add) takes 2 inputs"), (strided, "'down' is a strided convolution"),
                           (overlapping, "'overlap' pools with strides (2, 2) over (3, 3) windows"),
                           (depthwise, "'dw' (DepthwiseConv2D) cannot be converted")):
        with pytest.raises(NotConvertible, match=re.escape(message)):
            dilated(model)
    with pytest.raises(ValueError, match="Received: mode='fast'"):
        dilated(strided, "fast")


def test_nested_plain_model_converts_exactly(keras):
    layers = keras.layers
    base = keras.Sequential([keras.Input((32, 32, 3)), layers.Conv2D(4, 3, padding="same", activation="relu"),
                             layers.MaxPooling2D(2), layers.BatchNormalization(), layers.Conv2D(6, 3, padding="same"),
                             layers.AveragePooling2D(2)], name="base")
    inputs = keras.Input((32, 32, 3))
    outputs = layers.Dense(3)(layers.GlobalAveragePooling2D()(base(inputs)))
    model = set_fixed_weights(keras.Model(inputs, outputs), 4, scale=0.4)
    images = np.random.default_rng(3).normal(size=(3, 32, 32, 3)).astype(np.float32)
    copy = dilated(model)
    np.testing.assert_allclose(copy.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-5, atol=1e-6)


def scene_file(folder, index=0):
    path = folder / f"scene{index}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(scene_maker.generate(index, seed=1).image).save(path)
    return path


def test_dilated_command_writes_full_resolution_maps_and_both_predictions(tmp_path):
    image = scene_file(tmp_path / "in", 3)
    out = tmp_path / "out"
    exact = invoke_cli("dilated", image, "--model", "demo-vgg", "-o", out, "--save", "heatmap,raw", "--json")
    assert exact.returncode == 0, exact.stderr
    record = json.loads(exact.stdout)
    assert record["method"] == "dilated" and record["model"] == "demo-vgg (a trous)"
    assert record["reference_model"] == "demo-vgg" and record["seconds"] > 0
    for ours, theirs in zip(record["predictions"], record["reference_predictions"]):
        assert ours["class"] == theirs["class"] and abs(ours["probability"] - theirs["probability"]) < 1e-5
    entry = record["maps"][0]
    assert entry["stats"]["resolution"] == [64, 64]
    assert np.load(entry["outputs"]["raw"]).shape == (64, 64)
    assert entry["outputs"]["heatmap"] == str(out / "scene3.png.dilated.heatmap.png")
    seed = invoke_cli("dilated", image, "--model", "demo-vgg", "-o", out, "--mode", "no-pooling")
    assert seed.returncode == 0, seed.stderr
    assert seed.stdout.split() == [str(out / f"scene3.png.dilated-no-pooling.{kind}.png") for kind in ("heatmap", "overlay")]
    assert "top-5 predictions" in seed.stderr and "demo-vgg (no pooling)" in seed.stderr
    assert re.search(r"top-5 predictions, \d+\.\d\d s an image", seed.stderr)  # the per-image seconds


def test_dilated_compare_puts_three_maps_of_one_class_side_by_side(tmp_path):
    image = tmp_path / "in" / "wide.png"
    image.parent.mkdir()
    Image.fromarray(np.repeat(scene_maker.generate(5, seed=1).image, 2, axis=1)).save(image)  # 128x64
    result = invoke_cli("dilated", image, "--model", "demo-vgg", "-o", tmp_path / "out", "--compare", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    row = record["rows"][0]
    cells = row["cells"]
    assert [c["method"] for c in cells] == ["gradcam", "dilated-no-pooling", "dilated"]
    assert [c["stats"]["resolution"] for c in cells] == [[8, 8], [64, 64], [64, 64]]
    assert all(c["applicable"] for c in cells) and row["label"] == scene_maker.CLASS_NAMES[row["class"]]
    assert record["outputs"]["compare"] == str(tmp_path / "out" / "wide.png.dilated.compare.png")
    figure = np.asarray(Image.open(record["outputs"]["compare"]))
    assert figure.shape[1] == 4 * 320 + 3 * 4  # the input + 3 maps, each scaled to 320 wide
    # the exact map agrees with the original's far more than the no-pooling copy's does
    correlations = {(p["a"], p["b"]): p["rho"] for p in row["rank_correlation"]}
    exact = correlations[("gradcam@block4_conv2", "dilated@block4_conv2")]
    assert exact > 0.6 and exact > correlations[("gradcam@block4_conv2", "dilated-no-pooling@block4_conv2")]
    # resumed: its record file matches the source and the request, its stored record is emitted again
    again = invoke_cli("dilated", image, "--model", "demo-vgg", "-o", tmp_path / "out", "--compare", "--skip-existing",
                       "--json")
    assert again.returncode == 0, again.stderr
    assert_records_close(json.loads(again.stdout), record)
    assert "skipped 1 image(s) whose outputs exist" in again.stderr
    # another image of the same name is drawn, not skipped
    other = tmp_path / "other" / "wide.png"
    other.parent.mkdir()
    Image.fromarray(np.repeat(scene_maker.generate(6, seed=1).image, 2, axis=1)).save(other)
    drawn = invoke_cli("dilated", other, "--model", "demo-vgg", "-o", tmp_path / "out", "--compare", "--skip-existing",
                       "--json")
    assert drawn.returncode == 0 and "skipped" not in drawn.stderr
    assert json.loads(drawn.stdout)["input"] == str(other)


def test_dilated_refuses_residual_networks_in_one_line(tmp_path):
    image = scene_file(tmp_path / "in")
    result = invoke_cli("dilated", image, "--model", "resnet50", "--weights", "none", "-o", tmp_path / "out")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "the network branches" in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("Error")]) == 1


def test_batch_size_is_cut_to_the_activation_budget(demo_vgg, monkeypatch):
    from gradcam_cli.api import Explainer

    def fitted(method, requested):
        return Explainer(demo_vgg, method, layer="block4_conv2", batch_size=requested).build().engine.batch_size

    copy, _ = dilated_copy(demo_vgg, "exact", demo_vgg.default_layer)
    by_hand = 4 * sum(int(np.prod(info.shape)) for info in copy.layers if info.spatial)
    assert activation_bytes(copy) == by_hand
    # demo-vgg's copy: conv, conv, pool at 64x64 in each of 4 blocks (16, 32, 64, 64 channels), then
    # the 4x4x64 grid the classifier reads
    assert by_hand == 4 * (64 * 64 * 3 * (16 + 32 + 64 + 64) + 4 * 4 * 64)
    monkeypatch.setattr(dilated_module, "DILATED_MEMORY_BUDGET", 3.5 * by_hand)
    assert fitted("dilated", 8) == 3
    assert fitted("dilated", 2) == 2
    monkeypatch.setattr(dilated_module, "DILATED_MEMORY_BUDGET", 1)
    assert fitted("dilated-no-pooling", 8) == 1


def test_vgg19_converts_with_the_same_rule(keras):
    vgg19 = keras.applications.VGG19(weights=None)
    copy = dilated(vgg19)
    convs = [layer for layer in copy.layers if type(layer).__name__ == "Conv2D"]
    assert [layer.dilation_rate[0] for layer in convs] == [1, 1, 2, 2, 4, 4, 4, 4, 8, 8, 8, 8, 16, 16, 16, 16]
    assert tuple(copy.get_layer("block5_conv4").output.shape[1:]) == (224, 224, 512)
    assert tuple(copy.get_layer("block5_pool").output.shape[1:]) == (224, 224, 512)
    assert tuple(copy.get_layer("grid").output.shape[1:]) == (7, 7, 512)
    assert isinstance(copy.get_layer("block3_pool"), ATrousPooling2D) and copy.get_layer("block3_pool").dilation == (4, 4)
    assert copy.count_params() == vgg19.count_params()
