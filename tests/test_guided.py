"""Guided backpropagation, deconvnet and Guided Grad-CAM against a hand-written numpy backward
pass; the ReLUs Keras models use; the model left untouched; rendering and the command."""

import json

import numpy as np
import pytest
from conftest import conv3x3_same_transpose, invoke_cli, set_fixed_weights
from PIL import Image

from gradcam_cli.evaluate import scenes
from gradcam_cli.explain import maps
from gradcam_cli.explain.engine import Engine
from gradcam_cli.explain.maps import saliency
from gradcam_cli.explain.methods.guided import guided_gradcam
from gradcam_cli.files import render
from gradcam_cli.models import backprop_relus
from gradcam_cli.models.loading import describe
from gradcam_cli.models.preprocess import MODES, preprocess, pullback

SIZE = 6


def relu_net(keras, seed=4):
    """6x6x2 -> Conv3x3(3, fused relu) -> MaxPool 2 -> Conv3x3(4, linear) -> ReLU(max_value=6)
    -> Flatten -> Dense(5) -> Activation('relu') -> Dense(3, softmax): a ReLU of each kind."""
    layers = keras.layers
    inputs = keras.Input((SIZE, SIZE, 2))
    x = layers.Conv2D(3, 3, padding="same", activation="relu", name="c1")(inputs)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Conv2D(4, 3, padding="same", name="c2")(x)
    x = layers.ReLU(max_value=6.0, name="r2")(x)
    x = layers.Flatten(name="flat")(x)
    x = layers.Dense(5, name="d1")(x)
    x = layers.Activation("relu", name="a1")(x)
    outputs = layers.Dense(3, activation="softmax", name="pred")(x)
    return set_fixed_weights(keras.Model(inputs, outputs, name="relunet"), seed, scale=0.8)


def conv_same(x, kernel, bias):
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros(x.shape[:2] + (kernel.shape[3],))
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[i, j] = np.tensordot(padded[i : i + 3, j : j + 3], kernel, axes=3) + bias
    return out


def backward_relu(grad, pre, mode, top=np.inf):
    passes = (pre > 0) & (pre < top)  # the forward derivative of min(max(z, 0), top)
    if mode == "plain":
        return grad * passes
    if mode == "guided":
        return grad * passes * (grad > 0)
    return np.maximum(grad, 0)  # deconvnet: whatever the forward input was


def hand_input_gradient(model, image, cls, mode):
    """d logit_cls / d image by hand, through the net's ReLUs the `mode` way (plain, guided,
    deconvnet), max pooling passing back to each window's maximum."""
    k1, b1, k2, b2, w3, b3, w4, b4 = [w.astype(np.float64) for w in model.get_weights()]
    z1 = conv_same(image.astype(np.float64), k1, b1)
    y1 = np.maximum(z1, 0)
    windows = y1.reshape(3, 2, 3, 2, 3).transpose(0, 2, 4, 1, 3).reshape(3, 3, 3, 4)
    pooled, switch = windows.max(axis=-1), windows.argmax(axis=-1)
    z2 = conv_same(pooled, k2, b2)
    flat = np.clip(z2, 0, 6).reshape(-1)
    z3 = flat @ w3 + b3
    g_z3 = backward_relu(w4[:, cls], z3, mode)
    g_z2 = backward_relu((w3 @ g_z3).reshape(z2.shape), z2, mode, top=6.0)
    g_pooled = conv3x3_same_transpose(g_z2, k2)
    g_windows = np.zeros(windows.shape)
    np.put_along_axis(g_windows, switch[..., None], g_pooled[..., None], axis=-1)
    g_y1 = g_windows.reshape(3, 3, 3, 2, 2).transpose(0, 3, 1, 4, 2).reshape(y1.shape)
    g_z1 = backward_relu(g_y1, z1, mode)
    return conv3x3_same_transpose(g_z1, k1), (z1, z2, z3)


@pytest.fixture(scope="module")
def net(keras):
    model = relu_net(keras)
    images = np.random.default_rng(11).uniform(0, 4, (4, SIZE, SIZE, 2)).astype("float32")
    return model, images


def test_the_hand_backward_pass_is_the_true_gradient(keras, net):
    import tensorflow as tf

    model, images = net
    logits_model = keras.Model(model.input, model.get_layer("a1").output @ model.get_layer("pred").kernel
                               + model.get_layer("pred").bias)
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(logits_model(x)[:, 1])
    expected = tape.gradient(total, x).numpy()
    for i in range(len(images)):
        np.testing.assert_allclose(hand_input_gradient(model, images[i], 1, "plain")[0], expected[i],
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", backprop_relus.MODES)
def test_input_gradients_equal_the_hand_backward_pass(keras, net, mode):
    model, images = net
    engine = Engine(describe(model, model.name, (SIZE, SIZE), "none", None), ("c2",), batch_size=4)
    for cls in range(3):
        result = engine.run(images, np.full(4, cls), backprop=mode)
        assert result.input_gradients.shape == images.shape
        for i in range(len(images)):
            expected, (z1, z2, z3) = hand_input_gradient(model, images[i], cls, mode)
            np.testing.assert_allclose(result.input_gradients[i], expected, rtol=1e-4, atol=1e-5)
    # the inputs exercise every case: ReLUs on and off, ReLU6 saturated
    assert (z2 > 6).any() and (z2 < 0).any() and (z1 < 0).any() and (z3 < 0).any() and (z3 > 0).any()
    plain = hand_input_gradient(model, images[0], 0, "plain")[0]
    assert not np.allclose(hand_input_gradient(model, images[0], 0, mode)[0], plain)


def test_guided_leaves_the_model_and_later_runs_as_they_were(keras, net):
    model, images = net
    weights = [w.copy() for w in model.get_weights()]
    activations = {layer.name: layer.activation for layer in model.layers if hasattr(layer, "activation")}
    before = model.predict(images, verbose=0)
    loaded = describe(model, model.name, (SIZE, SIZE), "none", None)
    plain = Engine(loaded, ("c2",), batch_size=4).run(images, np.zeros(4))
    engine = Engine(loaded, ("c2",), batch_size=4)
    first = engine.run(images, np.zeros(4), backprop="deconvnet")
    second = engine.run(images, np.zeros(4), backprop="deconvnet")
    third = Engine(loaded, ("c2",), batch_size=4).run(images, np.zeros(4), backprop="deconvnet")
    np.testing.assert_array_equal(first.input_gradients, second.input_gradients)
    np.testing.assert_allclose(first.input_gradients, third.input_gradients, rtol=1e-6, atol=1e-7)
    after = Engine(loaded, ("c2",), batch_size=4).run(images, np.zeros(4))
    np.testing.assert_allclose(after.gradients, plain.gradients, rtol=1e-6)  # no guided ReLU left behind
    np.testing.assert_array_equal(first.gradients, plain.gradients)
    for old, new in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert {layer.name: layer.activation for layer in model.layers if hasattr(layer, "activation")} == activations
    np.testing.assert_allclose(model.predict(images, verbose=0), before, rtol=1e-6)


def test_relus_are_found_in_every_form_and_others_named(keras):
    layers = keras.layers
    table = [
        (layers.Conv2D(2, 3, activation="relu"), "fused", None),
        (layers.Conv2D(2, 3, activation="relu6"), "fused", None),
        (layers.DepthwiseConv2D(3, activation="relu"), "fused", None),
        (layers.Dense(2, activation="relu"), "fused", None),
        (layers.ReLU(), "layer", None),
        (layers.ReLU(max_value=6.0), "layer", None),
        (layers.Activation("relu"), "layer", None),
        (layers.Activation("relu6"), "layer", None),
        (layers.ReLU(negative_slope=0.1), None, "leaky_relu"),
        (layers.LeakyReLU(), None, "leakyrelu"),
        (layers.Activation("swish"), None, "silu"),
        (layers.Conv2D(2, 3, activation="gelu"), None, "gelu"),
        (layers.Dense(2), None, None),
        (layers.BatchNormalization(), None, None),
        (layers.MaxPooling2D(), None, None),
    ]
    for layer, kind, other in table:
        assert backprop_relus.relu_kind(layer) == kind, layer
        assert backprop_relus.other_activation(layer) == other, layer
        assert (backprop_relus.relu_call(layer, "guided") is None) == (kind is None)
    with pytest.raises(ValueError, match="Received: mode='backprop'"):
        backprop_relus.relu_call(layers.ReLU(), "backprop")


@pytest.mark.parametrize("name, relus, others", [
    ("MobileNetV2", ("ReLU", 35), {}),  # ReLU(max_value=6) layers
    ("ResNet50", ("Activation", 49), {}),  # Activation('relu')
    ("EfficientNetB0", ("ReLU", 0), {"silu": 49, "sigmoid": 16}),  # no ReLU: swish and SE gates
])
def test_census_of_keras_applications(keras, name, relus, others):
    model = getattr(keras.applications, name)(weights=None, input_shape=(96, 96, 3))
    loaded = describe(model, name, (96, 96), "none", None)
    counted = backprop_relus.census(loaded.layers, loaded.final_path)
    kind, count = relus
    by_config = [layer for layer in model.layers if type(layer).__name__ == kind
                 and layer.get_config().get("activation", "relu") in ("relu", "relu6")
                 and not layer.get_config().get("negative_slope")]
    assert len(counted.relu_paths) == len(by_config) == count
    assert counted.others == others


def test_guided_gradcam_is_zero_where_the_map_is_zero_and_the_gradient_where_it_peaks():
    rng = np.random.default_rng(0)
    gradient = rng.normal(size=(16, 16, 3)).astype(np.float32)
    small = np.zeros((4, 4), np.float32)
    small[1, 2] = 2.0
    product = guided_gradcam(gradient, small)
    upsampled = maps.upsample(small, (0, 0, 16, 16), (16, 16))
    assert (upsampled == 0).any() and (upsampled > 0).any()
    assert np.all(product[upsampled == 0] == 0)
    peak = np.unravel_index(np.argmax(upsampled), upsampled.shape)
    np.testing.assert_allclose(product[peak], gradient[peak], rtol=1e-6)
    assert not guided_gradcam(gradient, np.zeros((4, 4), np.float32)).any()
    np.testing.assert_array_equal(saliency(np.array([[[1.0, -3.0, 2.0]]])), [[3.0]])


def test_gradient_images_are_centred_at_grey_with_a_tenth_per_deviation():
    gradient = np.array([[1.0, -1.0], [2.0, 0.0]])  # root mean square: sqrt(6 / 4)
    rms = np.sqrt(1.5)
    expected = 0.5 + 0.1 * gradient / rms
    np.testing.assert_allclose(render.gradient_image(gradient), expected, rtol=1e-6)
    assert render.gradient_image(np.array([[0.0, 100.0], [0.0, 0.0]]))[0, 1] == 0.7  # +2 deviations
    clipped = render.gradient_image(np.r_[np.zeros(99), 1e3].reshape(10, 10))
    assert clipped.max() == 1.0 and clipped.min() == 0.5  # 10 deviations: clipped at white
    flat = render.gradient_image(np.zeros((3, 3, 3)))
    assert flat.shape == (3, 3, 3) and np.all(flat == 0.5)
    assert np.all(render.gradient_image(np.full((2, 2), np.nan)) == 0.5)
    np.testing.assert_allclose(render.gray(np.array([[[3.0, 0.0, -6.0]]])), [[-1.0]])


@pytest.mark.parametrize("mode", sorted(MODES))
def test_pullback_is_the_chain_rule_of_preprocessing(mode):
    """<pullback(g), dx> = <g, f(x + dx) - f(x)> for every preprocessing f (all affine)."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 255, (2, 4, 5, 3)).astype(np.float32)
    dx = rng.normal(0, 1, x.shape).astype(np.float32)
    g = rng.normal(0, 1, x.shape).astype(np.float32)
    change = preprocess(x + dx, mode).astype(np.float64) - preprocess(x, mode)
    for i in range(2):
        np.testing.assert_allclose(np.sum(pullback(g, mode)[i] * dx[i]), np.sum(g[i] * change[i]), rtol=2e-3)


def test_resize_into_box_fills_outside_and_averages_when_shrinking():
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    shrunk = maps.resize_into_box(image, (0, 0, 2, 2), (2, 2))
    np.testing.assert_allclose(shrunk, image.reshape(2, 2, 2, 2).mean(axis=(1, 3)))
    colour = maps.resize_into_box(np.ones((4, 4, 3), np.float32), (1, 0, 3, 2), (2, 4), fill=0.5)
    assert colour.shape == (2, 4, 3)
    assert np.all(colour[:, 1:3] == 1.0) and np.all(colour[:, 0] == 0.5) and np.all(colour[:, 3] == 0.5)
    one = maps.resize_into_box(np.ones((4, 4, 1), np.float32), (0, 0, 8, 8), (8, 8))
    assert one.shape == (8, 8, 1)


def scene_file(folder, index=0, seed=1):
    """A generated scene at the demo models' input size (64x64), so image and model sizes agree."""
    path = folder / f"scene{index}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(scenes.generate(index, seed=seed).image).save(path)
    return path


def test_guided_command_writes_each_kind_consistently(tmp_path):
    image = scene_file(tmp_path / "in")
    out = tmp_path / "out"
    result = invoke_cli("guided", image, "--model", "demo-gap", "-o", out, "--json",
                     "--save", "gradient,gradient-gray,gradcam,gradcam-gray,heatmap,raw")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["method"] == "guided" and record["backprop"] == {
        "mode": "guided", "relu_layers": 6, "other_activations": {}}
    entry = record["maps"][0]
    assert set(entry["outputs"]) == {"gradient", "gradient-gray", "gradcam", "gradcam-gray", "heatmap", "raw",
                                     "gradient-raw", "gradcam-raw"}
    assert entry["outputs"]["gradcam"] == str(out / "scene0.png.guided.gradcam.png")
    heat = np.load(entry["outputs"]["raw"])
    gradient = np.load(entry["outputs"]["gradient-raw"])
    product = np.load(entry["outputs"]["gradcam-raw"])
    assert heat.shape == (64, 64) and gradient.shape == product.shape == (64, 64, 3)
    # Guided Grad-CAM is zero wherever Grad-CAM is zero, and is the gradient times the map
    assert (heat == 0).any() and np.all(product[heat == 0] == 0)
    np.testing.assert_allclose(product, gradient * (heat / heat.max())[..., None], rtol=1e-5, atol=1e-12)
    assert entry["gradient"]["rms"] == pytest.approx(float(np.sqrt(np.mean(gradient.astype(np.float64) ** 2))))
    colour = np.asarray(Image.open(entry["outputs"]["gradient"]))
    grey = np.asarray(Image.open(entry["outputs"]["gradient-gray"]))
    assert colour.shape == (64, 64, 3) and grey.shape == (64, 64)
    np.testing.assert_array_equal(colour, render.to_uint8(render.gradient_image(gradient)))
    np.testing.assert_array_equal(grey, render.to_uint8(render.gradient_image(gradient.mean(axis=-1))))
    # the explained class is the object's, and its saliency peaks on the object
    scene = scenes.generate(0, seed=1)
    assert entry["class"] == scene.objects[0].class_index
    y, x = np.unravel_index(np.argmax(saliency(product)), (64, 64))
    assert scene.objects[0].mask[max(0, y - 3) : y + 4, max(0, x - 3) : x + 4].any()


def test_deconvnet_mode_names_its_outputs_and_resizes_onto_the_image(tmp_path):
    image = tmp_path / "wide.png"
    Image.fromarray(np.repeat(scenes.generate(2, seed=1).image, 2, axis=1)).save(image)  # 128x64
    out = tmp_path / "out"
    result = invoke_cli("guided", image, "--model", "demo-vgg", "--mode", "deconvnet", "-o", out, "-q")
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir() if not p.name.endswith(".record.json"))
    assert names == sorted(f"wide.png.deconvnet.{kind}.png" for kind in
                           ("gradient", "gradient-gray", "gradcam", "gradcam-gray", "heatmap", "overlay"))
    assert (out / "wide.png.deconvnet.record.json").is_file()
    assert sorted(result.stdout.split()) == [str(out / name) for name in names]
    for name in names:
        assert Image.open(out / name).size == (128, 64)


def test_guided_says_which_activations_it_leaves_alone(tmp_path, keras):
    layers = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = layers.Conv2D(4, 3, activation="swish", name="conv_swish")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    path = tmp_path / "mixed.keras"
    set_fixed_weights(keras.Model(inputs, outputs), 3).save(path)
    image = scene_file(tmp_path / "in")
    result = invoke_cli("guided", image, "--model", path, "-o", tmp_path / "out", "--layer", "conv")
    assert result.returncode == 0, result.stderr
    assert "modifies the model's 1 ReLU layer(s) only; these keep their plain gradient: silu x1" in result.stderr
    wrong = invoke_cli("gradcam", image, "--model", path, "-o", tmp_path / "out", "--save", "heatmap,gradient")
    assert wrong.returncode == 2 and "choose from heatmap, overlay, raw, comma-separated" in wrong.stderr
    assert "Traceback" not in wrong.stderr and len(wrong.stderr.strip().splitlines()) <= 3
