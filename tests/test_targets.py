"""Targets beyond one class (explain/targets.py): each checked against a hand computation on a
tiny model with fixed weights, the refusals in one line, and the targets through the command."""

import json

import cv2
import keras
import numpy as np
import pytest
from click.testing import CliRunner
from keras import layers

from gradcam_cli import Explainer, load_model
from gradcam_cli.cli import main
from gradcam_cli.explain.targets import TargetError, parse

RNG = np.random.RandomState(7)
W1 = RNG.normal(size=(1, 1, 3, 2)).astype(np.float32)  # the feature layer "feat": 1x1, 3 -> 2
B1 = np.array([0.3, -0.1], np.float32)


def _features(x):
    return np.einsum("bhwc,ck->bhwk", x, W1[0, 0]) + B1


def tiny_segmenter(w2, b2):
    """4x4x3 -> feat (1x1 conv, 2 channels, linear) -> seg (1x1 conv, 3 classes, softmax)."""
    inputs = keras.Input((4, 4, 3))
    feat = layers.Conv2D(2, 1, name="feat")(inputs)
    out = layers.Conv2D(3, 1, activation="softmax", name="seg")(feat)
    model = keras.Model(inputs, out)
    model.get_layer("feat").set_weights([W1, B1])
    model.get_layer("seg").set_weights([w2.reshape(1, 1, 2, 3), b2])
    return model


def tiny_vector_model(units=3, normalise=False):
    """4x4x3 -> feat -> GAP -> Dense(units) [-> UnitNormalization]."""
    inputs = keras.Input((4, 4, 3))
    feat = layers.Conv2D(2, 1, name="feat")(inputs)
    x = layers.Dense(units, name="dense")(layers.GlobalAveragePooling2D()(feat))
    if normalise:
        x = layers.UnitNormalization(name="unit")(x)
    model = keras.Model(inputs, x)
    model.get_layer("feat").set_weights([W1, B1])
    return model


W2 = RNG.normal(size=(2, 3)).astype(np.float32)
B2 = np.array([0.0, 0.2, -0.3], np.float32)
IMAGES = RNG.uniform(0, 255, size=(2, 4, 4, 3)).astype(np.uint8)


def _result(model, target, layer="feat", images=IMAGES):
    explainer = Explainer(load_model(model), "gradcam", layer=layer, target=target, batch_size=4)
    ready = explainer.build()
    inputs, _ = explainer.prepare(list(images))
    codes = np.full(len(images), ready.target.code)
    return ready, ready.engine.run(inputs, codes), inputs


def _gradcam(activations, gradients):
    weights = gradients.mean(axis=(1, 2))
    return np.maximum((activations * weights[:, None, None, :]).sum(-1), 0)


def test_segment_predicted_mask_sums_the_class_logits_where_it_is_predicted():
    ready, result, inputs = _result(tiny_segmenter(W2, B2), "segment:1")
    a = _features(inputs)
    logits = a @ W2 + B2
    inside = (logits.argmax(-1) == 1)
    assert inside.any() and not inside.all()  # the region is a part of the image
    np.testing.assert_allclose(result.activations, a, rtol=1e-5, atol=1e-5)
    expected_value = (logits[..., 1] * inside).sum(axis=(1, 2))
    np.testing.assert_allclose(ready.loaded.head.scores(result.raw_outputs)[:, 1], expected_value, rtol=1e-5)
    expected_gradients = inside[..., None] * W2[:, 1]  # d/dA of sum over the mask of A W2[:, 1] + b
    np.testing.assert_allclose(result.gradients, expected_gradients, rtol=1e-5, atol=1e-6)
    maps = Explainer(ready.loaded, "gradcam", layer="feat", target="segment:1").maps(list(IMAGES))
    np.testing.assert_allclose(maps.batch.small_maps, _gradcam(a, expected_gradients), rtol=1e-4, atol=1e-5)
    assert [d["target_pixels"] for d in maps.batch.details] == inside.sum(axis=(1, 2)).tolist()


def test_segment_mask_file_is_resized_to_the_output_grid(tmp_path):
    mask = np.zeros((40, 40), np.uint8)
    mask[:20, 20:] = 255  # the top-right quarter: cells (0..1, 2..3) of the 4x4 grid
    mask[39, 0] = 255  # one pixel of a cell: less than half of it, outside
    path = tmp_path / "mask.png"
    cv2.imwrite(str(path), mask)
    ready, result, inputs = _result(tiny_segmenter(W2, B2), f"segment:2:{path}")
    inside = np.zeros((4, 4), bool)
    inside[:2, 2:] = True
    logits = _features(inputs) @ W2 + B2
    np.testing.assert_allclose(ready.loaded.head.scores(result.raw_outputs)[:, 2],
                               (logits[..., 2] * inside).sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(result.gradients, np.broadcast_to(inside[None, :, :, None] * W2[:, 2], (2, 4, 4, 2)),
                               rtol=1e-5, atol=1e-6)
    assert ready.target.describe(1.0, {"target_pixels": 4}) == {"kind": "segment", "spec": f"segment:2:{path}", "class": 2, "label": "2", "mask": str(path), "cells": 4, "value": 1.0}


def test_cosine_similarity_and_its_gradient():
    model = tiny_vector_model(3, normalise=True)
    dense = np.asarray(model.get_layer("dense").kernel), np.asarray(model.get_layer("dense").bias)
    reference = np.array([0.5, -1.0, 2.0], np.float32)
    path = _save(reference)
    for kind, sign in (("similar", 1.0), ("dissimilar", -1.0)):
        ready, result, inputs = _result(model, f"{kind}:{path}")
        a = _features(inputs)
        v = a.mean(axis=(1, 2)) @ dense[0] + dense[1]  # before the normalisation
        unit_v = v / np.linalg.norm(v, axis=1, keepdims=True)
        unit_r = reference / np.linalg.norm(reference)
        cosine = unit_v @ unit_r
        value = ready.loaded.head.scores(result.raw_outputs)[:, 0]
        np.testing.assert_allclose(value, cosine if kind == "similar" else 1 - cosine, rtol=1e-5, atol=1e-6)
        # d cos / d v = (r^ - cos v^) / |v|, then back through Dense and the average over the 16 cells
        dv = (unit_r - cosine[:, None] * unit_v) / np.linalg.norm(v, axis=1, keepdims=True)
        da = sign * (dv @ dense[0].T) / 16.0
        np.testing.assert_allclose(result.gradients, np.broadcast_to(da[:, None, None, :], a.shape), rtol=1e-4,
                                   atol=1e-6)


def test_a_reference_image_is_embedded_by_the_model_itself(tmp_path):
    model = tiny_vector_model(3, normalise=True)
    path = tmp_path / "ref.png"
    cv2.imwrite(str(path), cv2.cvtColor(IMAGES[0], cv2.COLOR_RGB2BGR))
    ready, result, _ = _result(model, f"similar:{path}")
    np.testing.assert_allclose(ready.loaded.head.scores(result.raw_outputs)[0, 0], 1.0, rtol=1e-5)
    assert ready.loaded.head.scores(result.raw_outputs)[1, 0] < 1.0 - 1e-4


def test_a_regression_unit_and_its_decrease():
    model = tiny_vector_model(3)
    kernel = np.asarray(model.get_layer("dense").kernel)
    for spec, sign in (("output:2", 1.0), ("output:2:decrease", -1.0)):
        ready, result, inputs = _result(model, spec)
        a = _features(inputs)
        out = a.mean(axis=(1, 2)) @ kernel + np.asarray(model.get_layer("dense").bias)
        np.testing.assert_allclose(ready.loaded.head.scores(result.raw_outputs)[:, 2], sign * out[:, 2], rtol=1e-5)
        np.testing.assert_allclose(result.gradients, np.broadcast_to(sign * kernel[:, 2] / 16.0, a.shape),
                                   rtol=1e-5, atol=1e-7)
        assert result.classes.tolist() == [2, 2]


def test_a_callable_target_through_the_api():
    from keras import ops

    model = tiny_vector_model(3)
    kernel = np.asarray(model.get_layer("dense").kernel)

    def margin(outputs):
        return outputs[:, 0] - ops.max(outputs[:, 1:], axis=-1) * 0 - outputs[:, 1]

    explainer = Explainer(load_model(model), "gradcam", layer="feat", target=margin)
    maps = explainer.maps(list(IMAGES))
    inputs, _ = explainer.prepare(list(IMAGES))
    a = _features(inputs)
    gradients = np.broadcast_to((kernel[:, 0] - kernel[:, 1]) / 16.0, a.shape)
    np.testing.assert_allclose(maps.batch.small_maps, _gradcam(a, gradients), rtol=1e-4, atol=1e-6)
    explanations = explainer(list(IMAGES))
    assert [e.class_index for e in explanations] == [0, 0]
    assert [e.target["spec"] for e in explanations] == ["callable:margin"] * 2
    assert explanations[0].target["value"] == pytest.approx(explanations[0].score, rel=1e-5)


def _save(vector, folder=None):
    import tempfile
    from pathlib import Path

    folder = Path(folder or tempfile.mkdtemp())
    path = folder / "reference.npy"
    np.save(path, np.asarray(vector, np.float32))
    return path


@pytest.mark.parametrize("spec, message", [
    ("pixel:3", "unknown target kind 'pixel'"),
    ("segment", "segment targets are written segment:CLASS[:MASK.png]"),
    ("output:x", "output targets are written output:INDEX[:decrease]"),
])
def test_bad_specs(spec, message):
    with pytest.raises(TargetError) as caught:
        parse(spec)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_refusals_each_in_one_line(tmp_path):
    segmenter, vectors = load_model(tiny_segmenter(W2, B2)), load_model(tiny_vector_model(3, normalise=True))
    classifier = load_model(tiny_vector_model(3))
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.zeros((8, 8), np.uint8))
    cases = [
        (segmenter, None, "class targets do not fit its output (None, 4, 4, 3), a map (batch, height, width, "
                          "classes): use --target segment:CLASS[:MASK.png]"),
        (vectors, None, "this looks like an embedding model"),
        (classifier, "segment:1", "segment targets do not fit its output (None, 3)"),
        (classifier, "output:3", "has 3 output unit(s)"),
        (segmenter, "segment:7", "class 7 is out of range"),
        (segmenter, f"segment:1:{blank}", "covers no cell of the output's 4x4 grid"),
        (vectors, f"similar:{_save(np.ones(5), tmp_path)}", "has 5 values; functional"),
        (vectors, f"similar:{tmp_path / 'missing.png'}", "is not a file"),
    ]
    for loaded, spec, message in cases:
        with pytest.raises(ValueError) as caught:
            Explainer(loaded, "gradcam", layer="feat", target=spec).build()
        assert message in str(caught.value), (spec, str(caught.value))
        assert "\n" not in str(caught.value)
    # an explicit class target reads the embedding as classes
    assert Explainer(vectors, "gradcam", layer="feat", target="class:1").maps(list(IMAGES)).batch.classes.tolist() == [1, 1]
    with pytest.raises(ValueError, match="finercam explains classes"):
        Explainer(segmenter, "finercam", layer="feat", target="segment:1").build()


def test_the_command_with_targets(tmp_path):
    segmenter = tmp_path / "seg.keras"
    tiny_segmenter(W2, B2).save(segmenter)
    images = []
    for i, rgb in enumerate(IMAGES):
        images.append(str(tmp_path / f"im{i}.png"))
        big = cv2.resize(rgb, (12, 12), interpolation=cv2.INTER_NEAREST)  # the model sees the 4x4 image again
        cv2.imwrite(images[-1], cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    predicted = (_features(IMAGES.astype(np.float32)) @ W2 + B2).argmax(-1)
    assert all((predicted == 1).any(axis=(1, 2)))  # class 1 is somewhere in both
    runner = CliRunner()
    refused = runner.invoke(main, ["--model", str(segmenter), *images, "-o", str(tmp_path / "out")])
    assert refused.exit_code == 2 and "use --target segment:CLASS" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    both = runner.invoke(main, ["--model", str(segmenter), *images, "--class", "1", "--target", "segment:1"])
    assert both.exit_code == 2 and "give --class or --target, not both" in both.output
    run = runner.invoke(main, ["--model", str(segmenter), *images, "-o", str(tmp_path / "out"), "--layer", "feat",
                               "--target", "segment:1", "--json"])
    assert run.exit_code == 0, run.output
    records = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(records) == 2 and "predictions" not in records[0]
    entry = records[0]["maps"][0]
    assert entry["target"]["kind"] == "segment" and entry["target"]["class"] == 1
    assert entry["target"]["mask"] == "predicted" and entry["target"]["cells"] > 0
    assert entry["outputs"]["overlay"].endswith("im0.png.gradcam.segment-1.overlay.png")
    overlay = cv2.imread(entry["outputs"]["overlay"])
    assert overlay.shape == (12, 12, 3)


def test_a_class_never_predicted_fails_that_image_alone(tmp_path):
    model = tiny_segmenter(W2, np.array([0.0, 0.0, -1e4], np.float32))  # class 2 never wins
    path = tmp_path / "seg.keras"
    model.save(path)
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), IMAGES[0])
    run = CliRunner().invoke(main, ["--model", str(path), str(image), "-o", str(tmp_path / "out"), "--layer", "feat",
                                    "--target", "segment:2", "--quiet"])
    assert run.exit_code == 1
    lines = [line for line in run.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "nothing in this image is predicted as 2" in lines[0], run.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_seg_eigen_cam_against_numpy():
    """Seg-Eigen-CAM: the first principal component (by the covariance's eigenvector here, not an
    SVD) of |g| A centred over the positions, flipped when |min| > |max|, then the ReLU."""
    explainer = Explainer(load_model(tiny_segmenter(W2, B2)), "segeigencam", layer="feat", target="segment:1")
    maps = explainer.maps(list(IMAGES))
    inputs, _ = explainer.prepare(list(IMAGES))
    a = _features(inputs).astype(np.float64)
    logits = a @ W2 + B2
    g = (logits.argmax(-1) == 1)[..., None] * W2[:, 1]
    for i in range(len(IMAGES)):
        x = (np.abs(g[i]) * a[i]).reshape(16, 2)
        centred = x - x.mean(axis=0)
        values, vectors = np.linalg.eigh(centred.T @ centred)
        projection = centred @ vectors[:, np.argmax(values)]
        if abs(projection.min()) > abs(projection.max()):
            projection = -projection
        assert abs(projection.min()) != abs(projection.max())
        np.testing.assert_allclose(maps.batch.small_maps[i], np.maximum(projection, 0).reshape(4, 4), rtol=1e-4,
                                   atol=1e-5)


@pytest.mark.parametrize("kind", ["segmenter", "embedding"])
def test_a_unet_and_an_embedding_model_through_every_command(tmp_path, kind):
    """gradcam, compare, eval --measures deletion and --report on a U-Net-like segmenter and on
    an embedding model, each with its own target; the files opened and read."""
    if kind == "segmenter":
        model, target = tiny_segmenter(W2, B2), "segment:1"
    else:
        model = tiny_vector_model(3, normalise=True)
        target = f"similar:{_save([0.5, -1.0, 2.0], tmp_path)}"
    path = tmp_path / f"{kind}.keras"
    model.save(path)
    images = []
    for i, rgb in enumerate(IMAGES):
        images.append(str(tmp_path / f"im{i}.png"))
        cv2.imwrite(images[-1], cv2.cvtColor(cv2.resize(rgb, (12, 12), interpolation=cv2.INTER_NEAREST),
                                             cv2.COLOR_RGB2BGR))
    runner, common = CliRunner(), ["--model", str(path), "--target", target]
    run = runner.invoke(main, ["gradcam", *images, *common, "--layer", "feat", "-o", str(tmp_path / "maps"), "--json",
                               "--report", str(tmp_path / "report")])
    assert run.exit_code == 0, run.output
    records = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert [r["maps"][0]["target"]["spec"] for r in records] == [target] * 2
    page = (tmp_path / "report" / "index.html").read_text()
    assert f"[{target}]" in page  # the report's label carries the target
    compared = runner.invoke(main, ["compare", images[0], *common, "--methods", "gradcam,segeigencam",
                                    "--layers", "feat", "-o", str(tmp_path / "cmp"), "--json"])
    assert compared.exit_code == 0, compared.output
    record = json.loads(compared.stdout.splitlines()[0])
    assert record["rows"][0]["target"]["spec"] == target
    assert all(cell["applicable"] for cell in record["rows"][0]["cells"])
    figure = cv2.imread(str(tmp_path / "cmp" / f"im0.png.{parse(target).tag}.compare.png"))
    assert figure is not None and figure.shape[1] > figure.shape[0]
    evaluated = runner.invoke(main, ["eval", *images, *common, "--layer", "feat", "--measures", "deletion",
                                     "--methods", "gradcam", "-o", str(tmp_path / "eval"), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads([line for line in evaluated.stdout.splitlines() if line.startswith("{")][0])
    assert report["faithfulness"]["scored"] == "target value"
    curve = report["methods"]["gradcam"]["deletion_curve"]
    values = Explainer(load_model(str(path)), "gradcam", layer="feat", target=target).maps(images).batch
    # the curve starts from the target's own value on the unchanged images (their mean)
    assert curve[0] == pytest.approx(float(values.scores[:, values.classes[0]].mean()), rel=1e-4)
    assert cv2.imread(str(tmp_path / "eval" / "eval.curves.png")) is not None


def _hub_segmenters():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    resnet = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16, 16],
        stackwise_num_blocks=[1, 1, 1], stackwise_num_strides=[1, 2, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(64, 64, 3))
    deeplab = keras_hub.models.DeepLabV3ImageSegmenter(backbone=keras_hub.models.DeepLabV3Backbone(
        image_encoder=resnet, spatial_pyramid_pooling_key="P3", upsampling_size=2, dilation_rates=[1, 2],
        low_level_feature_key="P2", projection_filters=8, image_shape=(64, 64, 3)), num_classes=3)
    mit = keras_hub.models.MiTBackbone(
        layerwise_depths=[1, 1], num_layers=2, layerwise_num_heads=[1, 2], layerwise_sr_ratios=[2, 1],
        max_drop_path_rate=0.0, layerwise_patch_sizes=[7, 3], layerwise_strides=[4, 2], image_shape=(64, 64, 3),
        hidden_dims=[8, 16])
    segformer = keras_hub.models.SegFormerImageSegmenter(
        backbone=keras_hub.models.SegFormerBackbone(image_encoder=mit, projection_filters=8), num_classes=3)
    # the coarsest layer each output is computed from: DeepLabV3's pyramid pooling at 1/8 (not the
    # encoder's unused 1/16 stage), SegFormer's decoder projection of its last (1/8) stage
    return [(deeplab, ("deep_lab_v3_backbone", "spatial_pyramid_pooling")), (segformer, ("seg_former_backbone",))]


def test_keras_hub_segmenters_from_their_constructors():
    from gradcam_cli.models.graph import select_output
    from gradcam_cli.models.target_layers import feeding

    rgb = RNG.uniform(0, 255, size=(64, 64, 3)).astype(np.uint8)
    for model, inside in _hub_segmenters():
        loaded = load_model(model)
        assert loaded.output_kind == "map"
        default = loaded.default_layer
        assert default[: len(inside)] == inside, default
        info = next(i for i in loaded.layers if i.path == default)
        assert info.shape[:2] == (8, 8)
        assert default in feeding(model, select_output(model, None)) or default[:-1] in feeding(
            model, select_output(model, None))
        probabilities = model.predict(np.asarray([rgb], np.float32), verbose=0)[0]
        predicted = probabilities.argmax(-1)
        chosen = int(np.bincount(predicted.ravel()).argmax())
        maps = Explainer(loaded, "gradcam", target=f"segment:{chosen}").maps([rgb])
        assert maps.batch.details[0]["target_pixels"] == int((predicted == chosen).sum())
        assert maps.batch.small_maps.shape == (1, 8, 8)
        # the gradient reaches the bottleneck (a random model's Grad-CAM may be negative everywhere)
        assert np.isfinite(maps.batch.weighted_sums).all() and np.abs(maps.batch.weighted_sums).max() > 0
        # the forward pass is predict's: a subclassed layer without `training` (DeepLabV3's pyramid
        # pooling) still runs its batch normalisation in inference mode
        explainer = Explainer(loaded, "gradcam", target=f"segment:{chosen}")
        inputs, _ = explainer.prepare([rgb])
        scores = explainer.build().engine.raw_outputs(inputs)
        assert np.abs(scores - model.predict(inputs, verbose=0)).max() < 1e-3
        with pytest.raises(ValueError, match="use --target segment:CLASS"):
            Explainer(loaded, "gradcam").build()


def tiny_detector():
    """4x4x3 -> feat (1x1 conv, 2 channels) -> per cell a box (x0 y0 x1 y1, linear in the features
    around 0.5 0.5 2.5 2.5) and 3 class scores (softmax): 16 boxes."""
    inputs = keras.Input((4, 4, 3))
    feat = layers.Conv2D(2, 1, name="feat")(inputs)
    boxes = layers.Reshape((16, 4), name="boxes")(layers.Conv2D(4, 1, name="box_head")(feat))
    scores = layers.Reshape((16, 3), name="scores")(layers.Conv2D(3, 1, activation="softmax", name="cls")(feat))
    model = keras.Model(inputs, [boxes, scores])
    model.get_layer("feat").set_weights([W1, B1])
    rng = np.random.RandomState(3)
    model.get_layer("box_head").set_weights([rng.normal(scale=0.001, size=(1, 1, 2, 4)).astype(np.float32),
                                             np.array([0.5, 0.5, 2.5, 2.5], np.float32)])
    model.get_layer("cls").set_weights([rng.normal(scale=0.03, size=(1, 1, 2, 3)).astype(np.float32), np.zeros(3, np.float32)])
    return model


def _box_rule(features, model, given, wanted):
    """pytorch-grad-cam's FasterRCNNBoxScoreTarget in numpy, from the features of one image (4, 4, 2)."""
    kernel, bias = (np.asarray(w, np.float64) for w in model.get_layer("box_head").get_weights())
    boxes = (features.reshape(16, 2) @ kernel[0, 0] + bias)
    logits = features.reshape(16, 2) @ np.asarray(model.get_layer("cls").get_weights()[0], np.float64)[0, 0]
    scores = np.exp(logits - logits.max(-1, keepdims=True))
    scores /= scores.sum(-1, keepdims=True)
    x0, y0 = np.maximum(boxes[:, 0], given[0]), np.maximum(boxes[:, 1], given[1])
    x1, y1 = np.minimum(boxes[:, 2], given[2]), np.minimum(boxes[:, 3], given[3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) + (given[2] - given[0]) * (given[3] - given[1]) - inter
    iou = inter / union
    eligible = scores.argmax(-1) == wanted
    j = int(np.argmax(np.where(eligible, iou, -1)))
    return (iou[j] + scores[j, wanted] if eligible[j] and iou[j] >= 0.5 else 0.0), j, iou[j]


def test_the_box_rule_matches_the_box_of_highest_iou_among_its_class():
    model = tiny_detector()
    loaded = load_model(model)
    assert loaded.output_kind == "detections" and loaded.output.name == "boxes,scores"
    image = np.repeat(np.repeat(IMAGES[0], 2, axis=0), 2, axis=1)  # 8x8: the box is carried onto the 4x4 view
    given_on_image = (0.8, 1.2, 5.2, 4.8)
    given = tuple(v / 2 for v in given_on_image)
    explainer = Explainer(loaded, "gradcam", layer="feat", target="box:" + ",".join(map(str, given_on_image)) + ":0")
    inputs, _ = explainer.prepare([image])
    features = _features(inputs)[0].astype(np.float64)
    value, matched, iou = _box_rule(features, model, given, 0)
    assert iou >= 0.5
    maps = explainer.maps([image])
    details = maps.batch.details[0]
    assert details["target_box_index"] == matched
    assert details["target_iou"] == pytest.approx(iou, rel=1e-4)
    np.testing.assert_allclose(details["target_box"], np.asarray(
        model.predict(inputs, verbose=0)[0][0, matched], np.float64) * 2, atol=0.006)  # the image's pixels, 2 decimals
    np.testing.assert_allclose(maps.batch.scores[0, 0], value, rtol=1e-5)
    # the gradient of IoU + score through the matched box, against central differences of the rule
    epsilon, numeric = 1e-4, np.zeros_like(features)
    for index in np.ndindex(features.shape):
        step = np.zeros_like(features)
        step[index] = epsilon
        numeric[index] = (_box_rule(features + step, model, given, 0)[0]
                          - _box_rule(features - step, model, given, 0)[0]) / (2 * epsilon)
    weights = numeric.mean(axis=(0, 1))
    np.testing.assert_allclose(maps.batch.small_maps[0], np.maximum((features * weights).sum(-1), 0), rtol=1e-3,
                               atol=1e-5)


def test_a_box_no_predicted_box_matches_fails_its_image_in_one_line(tmp_path):
    path = tmp_path / "detector.keras"
    tiny_detector().save(path)
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), IMAGES[0])
    runner = CliRunner()
    far = runner.invoke(main, ["--model", str(path), str(image), "-o", str(tmp_path / "out"), "--layer", "feat",
                               "--target", "box:3.5,3.5,4,4", "--quiet"])
    assert far.exit_code == 1 and "no predicted box overlaps 3.5,3.5,4,4 by IoU 0.5 or more" in far.output
    assert len([line for line in far.output.splitlines() if line.strip()]) == 1
    run = runner.invoke(main, ["--model", str(path), str(image), "-o", str(tmp_path / "out"), "--layer", "feat",
                               "--target", "box:0.5,0.5,2.5,2.5", "--json"])
    assert run.exit_code == 0, run.output
    entry = json.loads(run.stdout.splitlines()[0])["maps"][0]
    assert entry["target"]["kind"] == "box" and entry["target"]["iou"] > 0.9
    assert entry["outputs"]["overlay"].endswith("a.png.gradcam.box-0.5-0.5-2.5-2.5.overlay.png")
    refused = runner.invoke(main, ["--model", str(path), str(image), "-o", str(tmp_path / "out")])
    assert refused.exit_code == 2 and "use --target box:X0,Y0,X1,Y1[:CLASS]" in refused.output


def test_keras_hub_retinanet_through_its_own_anchor_decoding():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    resnet = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16, 16, 16],
        stackwise_num_blocks=[1, 1, 1, 1], stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(64, 64, 3))
    backbone = keras_hub.models.RetinaNetBackbone(image_encoder=resnet, min_level=3, max_level=4, use_p5=False,
                                                  image_shape=(64, 64, 3))
    detector = keras_hub.models.RetinaNetObjectDetector(backbone=backbone, num_classes=3, bounding_box_format="xyxy",
                                                        pre_logits_num_conv_layers=1)
    head = detector.get_layer("box_head")  # small deltas: boxes near their anchors, not a random model's exp(huge)
    head.set_weights([w * 1e-3 for w in head.get_weights()])
    loaded = load_model(detector)
    assert loaded.output_kind == "detections"
    rgb = RNG.uniform(0, 255, size=(64, 64, 3)).astype(np.uint8)
    explainer = Explainer(loaded, "gradcam", target="box:0,0,8,8")
    inputs, _ = explainer.prepare([rgb])
    raw = np.asarray(loaded.forward(inputs, loaded.logits_rewrite))[0]  # (N, 4 + 3): our decoding
    outputs = detector(inputs, training=False)
    kept = detector.decode_predictions(outputs, inputs)  # the detector's own, after suppression
    compared = 0
    for box, confidence, label in zip(*(np.asarray(kept[k])[0] for k in ("boxes", "confidence", "labels"))):
        if label < 0 or not np.isfinite(box).all():
            continue
        compared += 1
        j = int(np.abs(raw[:, :4] - box).max(axis=1).argmin())
        np.testing.assert_allclose(raw[j, :4], box, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(raw[j, 4 + label], confidence, rtol=1e-4)
    assert compared > 0
    # a box the model predicts, asked for with its class: matched with IoU 1
    inside = (raw[:, 0] < raw[:, 2]) & (raw[:, 1] < raw[:, 3])
    j = int(np.flatnonzero(inside)[np.argmax(raw[inside, 4])])
    box = raw[j, :4]
    spec = "box:" + ",".join(f"{v:.4f}" for v in box) + f":{int(np.argmax(raw[j, 4:]))}"
    maps = Explainer(loaded, "gradcam", target=spec).maps([rgb])
    assert maps.batch.details[0]["target_iou"] == pytest.approx(1.0, abs=1e-3)
    assert np.isfinite(maps.batch.weighted_sums).all()


def test_faithfulness_scores_a_box_target_on_each_images_view(tmp_path):
    """eval --measures deletion with a box target: images of two sizes, each scored with the box
    carried onto its own view; the curve starts from the mean of the targets' values."""
    path = tmp_path / "detector.keras"
    tiny_detector().save(path)
    images = []
    for scale in (1, 2):
        images.append(str(tmp_path / f"x{scale}.png"))
        rgb = np.repeat(np.repeat(IMAGES[0], scale, axis=0), scale, axis=1)
        cv2.imwrite(images[-1], cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    evaluated = CliRunner().invoke(main, ["eval", *images, "--model", str(path), "--layer", "feat", "--target",
                                          "box:0.5,0.5,2.5,2.5", "--measures", "deletion,confidence", "--methods",
                                          "gradcam", "-o", str(tmp_path / "eval"), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads([line for line in evaluated.stdout.splitlines() if line.startswith("{")][0])
    found = Explainer(load_model(str(path)), "gradcam", layer="feat", target="box:0.5,0.5,2.5,2.5").maps(images)
    values = found.batch.scores[:, 0]
    assert values[0] > 0 and values[1] != pytest.approx(values[0])  # the same box covers 1/4 of the larger view
    assert report["methods"]["gradcam"]["deletion_curve"][0] == pytest.approx(float(values.mean()), rel=1e-4)
    assert report["methods"]["gradcam"]["images"] == 2


def test_concepts_of_a_segmenter_are_named_by_the_classes_its_map_predicts():
    """gradcam concepts on a segmenter: each concept's classes are its map's class shares, the
    softmax of the concept vector through the 1x1 classifier by hand (a constant map)."""
    from gradcam_cli.explain.concepts import factorize

    explainer = Explainer(load_model(tiny_segmenter(W2, B2)), "eigencam", layer="feat", target="segment:0")
    found = factorize(explainer, list(IMAGES), k=2, top_classes=3)
    for vector, top in zip(found.concepts.vectors, found.concepts.top_classes):
        logits = vector @ W2 + B2
        expected = np.exp(logits - logits.max())
        expected /= expected.sum()
        assert [c for c, _, _ in top] == list(np.argsort(-expected, kind="stable"))
        np.testing.assert_allclose([p for _, _, p in top], np.sort(expected)[::-1], rtol=1e-4, atol=1e-7)
