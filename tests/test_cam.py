"""CAM: the classifier head is found or refused by name, and with GAP + Dense and the logit,
Grad-CAM at that layer equals CAM divided by H*W (Selvaraju et al. 2017, Sec. 3.1)."""

import json

import numpy as np
import pytest
from conftest import gap_model, invoke_cli, nested_model, run_cli, write_image

from gradcam_cli.explain import maps
from gradcam_cli.explain.batch import top_rank
from gradcam_cli.explain.engine import Engine
from gradcam_cli.explain.methods.cam import cam_weights
from gradcam_cli.explain.methods.gradcam import gradcam_weights
from gradcam_cli.models import heads, loading


def _loaded(keras, model, size):
    return loading.describe(model, model.name, (size, size), "none", None)


def test_cam_weights_pick_each_images_class_column():
    kernel = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(cam_weights(kernel, [2, 0]), [[2, 5, 8, 11], [0, 3, 6, 9]])


def test_classifier_found_in_gap_nested_and_1x1_conv_heads(keras):
    model = gap_model(keras)
    kernel, bias = heads.cam_classifier(_loaded(keras, model, 32).layers, ("conv2",))
    np.testing.assert_array_equal(kernel, model.get_layer("pred").get_weights()[0])
    nested = nested_model(keras)
    kernel, _ = heads.cam_classifier(_loaded(keras, nested, 32).layers, ("base", "b_out"))
    np.testing.assert_array_equal(kernel, nested.get_layer("pred").get_weights()[0])
    mobilenet = loading.load("mobilenet", weights="none")  # GAP, Dropout, 1x1 Conv, Reshape
    kernel, _ = heads.cam_classifier(mobilenet.layers, mobilenet.default_layer)
    conv = mobilenet.model.get_layer("conv_preds").get_weights()[0]
    assert kernel.shape == (1024, 1000)
    np.testing.assert_array_equal(kernel, conv[0, 0])


@pytest.mark.parametrize("model,layer,found", [
    ("vgg16", "block5_conv3", "MaxPooling2D, Flatten, Dense, Dense, Dense"),
    ("demo-vgg", "block4_conv2", "MaxPooling2D, Flatten, Dense, Dropout, Dense"),
    ("resnet50", "conv5_block2_out", "Conv2D"),
])
def test_other_heads_are_refused_by_name(keras, model, layer, found):
    loaded = loading.load(model, weights="none")
    with pytest.raises(ValueError, match="after it come " + found):
        heads.cam_classifier(loaded.layers, loaded.target_layer(layer))


@pytest.mark.parametrize("name", ["resnet50", "mobilenetv2", "demo-gap", "nested"])
def test_gradcam_equals_cam_over_hw(keras, name):
    if name == "nested":
        loaded = _loaded(keras, nested_model(keras), 32)
    else:
        loaded = loading.load(name, weights="none" if name != "demo-gap" else None)
    size = loaded.input_size
    images = np.random.default_rng(1).uniform(0, 1, (2, *size, 3)).astype("float32")
    kernel, _ = heads.cam_classifier(loaded.layers, loaded.default_layer)
    result = Engine(loaded, loaded.default_layer, batch_size=2).run(images, np.array([top_rank(1), 1]))
    h, w = result.activations.shape[1:3]
    grad_map = maps.weighted_sum(result.activations, gradcam_weights(result.activations, result.gradients))
    cam_map = maps.weighted_sum(result.activations, cam_weights(kernel, result.classes))
    for i in range(2):
        assert np.corrcoef(grad_map[i].ravel(), cam_map[i].ravel())[0, 1] > 0.9999
        np.testing.assert_allclose(grad_map[i] * h * w, cam_map[i], rtol=1e-3, atol=1e-4 * np.abs(cam_map[i]).max())


def test_cam_command(tmp_path):
    image = write_image(tmp_path / "s.png", (96, 64), seed=3)
    result = invoke_cli("cam", image, "--model", "demo-gap", "-o", tmp_path / "o", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["method"] == "cam" and record["layer"] == "block3_conv2"
    assert record["maps"][0]["outputs"]["overlay"] == str(tmp_path / "o" / "s.png.cam.overlay.png")
    refused = invoke_cli("cam", image, "--model", "demo-vgg", "-o", tmp_path / "v")
    assert refused.returncode == 2 and "use `gradcam gradcam`" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "v").exists()
    eval_refused = invoke_cli("eval", "--model", "demo-vgg", "--methods", "cam", "-n", "4", "--pairs", "0")
    assert eval_refused.returncode == 2 and "--methods cam" in eval_refused.stderr
    assert run_cli("cam", "--help").returncode == 0


def test_cam_on_a_fine_tuned_mobilenetv2_saved_as_h5(keras, tmp_path):
    """The fine-tuning pattern with MobileNetV2: Sequential([base, GAP, Dropout, Dense(3)]) in a .h5."""
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 96, 3))
    model = keras.Sequential([keras.Input((96, 96, 3)), base, keras.layers.GlobalAveragePooling2D(name="gap"),
                              keras.layers.Dropout(0.2), keras.layers.Dense(3, activation="softmax", name="pred")])
    model.save(tmp_path / "finetuned.h5")
    image = write_image(tmp_path / "p.png", (120, 100), seed=4)
    result = invoke_cli("cam", image, "--model", tmp_path / "finetuned.h5", "--preprocess", "mobilenetv2",
                     "-o", tmp_path / "o", "--json", "--save", "raw")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["layer"].endswith("/out_relu") and record["method"] == "cam"
    raw = np.load(tmp_path / "o" / "p.png.cam.raw.npy")
    assert raw.shape == (100, 120) and raw.min() >= 0
