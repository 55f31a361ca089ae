"""The engine and Grad-CAM against hand computations with numpy on tiny fixed-weight models."""

import numpy as np
import pytest
from conftest import conv3x3_same, gap_model, nested_model, tiny_model

from gradcam_cli.explain import maps
from gradcam_cli.explain.batch import top_rank
from gradcam_cli.explain.engine import Engine
from gradcam_cli.explain.methods.gradcam import gradcam_weights
from gradcam_cli.models.loading import describe


def loaded_for(model, size=8):
    return describe(model, model.name, (size, size), "none", None)


def hand_gradcam_tiny(model, image, cls):
    """Grad-CAM of the tiny model at 'target', by hand: forward pass, logit gradient, Eq. 1-2."""
    k1, b1, k2, b2, k3, b3 = [w.astype(np.float64) for w in model.get_weights()]
    a = np.maximum(conv3x3_same(image.astype(np.float64), k1, b1), 0)  # target activations
    b_pre = a @ k2[0, 0] + b2
    b = np.maximum(b_pre, 0)
    logits = b.reshape(-1) @ k3 + b3
    d_b = k3[:, cls].reshape(b.shape)  # d logit_c / d B
    d_a = (d_b * (b_pre > 0)) @ k2[0, 0].T  # back through ReLU and the 1x1 conv
    alpha = d_a.mean(axis=(0, 1))
    return a, d_a, np.maximum(a @ alpha, 0), logits


@pytest.fixture
def images():
    return np.random.default_rng(7).uniform(0, 1, (3, 8, 8, 3)).astype("float32")


def test_gradcam_equals_hand_computation(keras, images):
    model = tiny_model(keras)
    engine = Engine(loaded_for(model), ("target",), batch_size=3)
    for cls in range(3):
        result = engine.run(images, np.full(3, cls))
        weights = gradcam_weights(result.activations, result.gradients)
        cams = maps.relu(maps.weighted_sum(result.activations, weights))
        for i in range(3):
            a, d_a, cam, logits = hand_gradcam_tiny(model, images[i], cls)
            np.testing.assert_allclose(result.activations[i], a, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(result.gradients[i], d_a, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(cams[i], cam, rtol=1e-4, atol=1e-5)
            # raw outputs are the logits, before the model's softmax
            np.testing.assert_allclose(result.raw_outputs[i], logits, rtol=1e-4, atol=1e-4)
        assert list(result.classes) == [cls] * 3


def test_top_rank_targets_follow_the_scores(keras, images):
    model = tiny_model(keras)
    engine = Engine(loaded_for(model), ("target",), batch_size=3)
    order = None
    for rank in (1, 2, 3):
        result = engine.run(images, np.full(3, top_rank(rank)))
        order = np.argsort(-result.raw_outputs, axis=1)
        np.testing.assert_array_equal(result.classes, order[:, rank - 1])
        _, d_a, _, _ = hand_gradcam_tiny(model, images[0], int(order[0, rank - 1]))
        np.testing.assert_allclose(result.gradients[0], d_a, rtol=1e-4, atol=1e-5)


def test_batch_gives_the_same_maps_as_single_images(keras):
    """Gradients are pooled per sample: a batch of different images must not mix them."""
    model = gap_model(keras)
    loaded = describe(model, "gap", (32, 32), "none", None)
    images = np.random.default_rng(3).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    batched = Engine(loaded, ("conv2",), batch_size=4).run(images, np.full(4, top_rank(1)))
    single = Engine(loaded, ("conv2",), batch_size=1)
    for i in range(4):
        one = single.run(images[i : i + 1], np.array([top_rank(1)]))
        np.testing.assert_allclose(batched.gradients[i], one.gradients[0], rtol=1e-5, atol=1e-7)
        assert batched.classes[i] == one.classes[0]
    # a short last batch is padded and gives the same numbers
    padded = Engine(loaded, ("conv2",), batch_size=8).run(images[:3], np.full(3, top_rank(1)))
    np.testing.assert_allclose(padded.gradients, batched.gradients[:3], rtol=1e-5, atol=1e-7)


def test_gap_dense_gradcam_is_cam_up_to_1_over_hw(keras):
    """With GAP + Dense and the logit, dy_c/dA_ijk = W_kc / (h w): Grad-CAM = CAM / (h w)."""
    model = gap_model(keras, activation="softmax")
    loaded = describe(model, "gap", (32, 32), "none", None)
    images = np.random.default_rng(4).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    result = Engine(loaded, ("conv2",), batch_size=2).run(images, np.array([0, 2]))
    kernel = model.get_layer("pred").get_weights()[0]
    h, w = result.activations.shape[1:3]
    for i, cls in enumerate((0, 2)):
        expected = np.broadcast_to(kernel[:, cls] / (h * w), result.gradients[i].shape)
        np.testing.assert_allclose(result.gradients[i], expected, rtol=1e-5, atol=1e-8)


def test_nested_base_model_gradients_by_hand(keras):
    """A fine-tuned Sequential([base, GAP, Dense]): target inside the nested base, before its BN."""
    model = nested_model(keras)
    loaded = describe(model, "nested", (32, 32), "none", None)
    assert loaded.default_layer == ("base", "b_out")
    images = np.random.default_rng(5).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    result = Engine(loaded, ("base", "b_conv2"), batch_size=2).run(images, np.array([1, 0]))

    base = model.get_layer("base")
    conv2 = keras.Model(base.input, base.get_layer("b_conv2").output)
    expected_a = conv2.predict(images, verbose=0)
    np.testing.assert_allclose(result.activations, expected_a, rtol=1e-4, atol=1e-5)
    gamma, beta, mean, var = base.get_layer("b_bn").get_weights()
    epsilon = base.get_layer("b_bn").epsilon
    scale = gamma / np.sqrt(var + epsilon)
    assert np.isfinite(scale).all() and (var > 0).all()
    bn_out = (expected_a - mean) * scale + beta
    kernel = model.get_layer("pred").get_weights()[0]
    h, w = expected_a.shape[1:3]
    for i, cls in enumerate((1, 0)):
        expected = kernel[:, cls] / (h * w) * (bn_out[i] > 0) * scale
        assert np.abs(expected).max() > 0 and ((bn_out[i] > 0).mean() not in (0.0, 1.0))
        np.testing.assert_allclose(result.gradients[i], expected, rtol=1e-4, atol=1e-7, equal_nan=False)


def test_binary_sigmoid_model_class_zero_is_the_negated_logit(keras):
    model = gap_model(keras, classes=1, activation="sigmoid")
    loaded = describe(model, "binary", (32, 32), "none", None)
    assert loaded.head.kind == "binary" and loaded.num_classes == 2
    images = np.random.default_rng(6).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    engine = Engine(loaded, ("conv2",), batch_size=2)
    one = engine.run(images, np.array([1, 1]))
    zero = engine.run(images, np.array([0, 0]))
    np.testing.assert_allclose(zero.gradients, -one.gradients, rtol=1e-6, atol=1e-9)
    probabilities = loaded.head.probabilities(one.raw_outputs)
    expected = model.predict(images, verbose=0)[:, 0]
    np.testing.assert_allclose(probabilities[:, 1], expected, rtol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    top = engine.run(images, np.array([top_rank(1)] * 2))
    np.testing.assert_array_equal(top.classes, (expected > 0.5).astype(int))


def test_users_model_is_not_changed_and_a_second_run_agrees(keras, images):
    model = tiny_model(keras, softmax=True)
    before = [w.copy() for w in model.get_weights()]
    probabilities_before = model.predict(images, verbose=0)
    first = Engine(loaded_for(model), ("target",), batch_size=3).run(images, np.full(3, -1))
    second = Engine(loaded_for(model), ("target",), batch_size=3).run(images, np.full(3, -1))
    np.testing.assert_array_equal(first.gradients, second.gradients)
    assert model.get_layer("pred").activation.__name__ == "softmax"
    for w, w0 in zip(model.get_weights(), before):
        np.testing.assert_array_equal(w, w0)
    np.testing.assert_allclose(model.predict(images, verbose=0), probabilities_before, rtol=1e-6)
    np.testing.assert_allclose(model.predict(images, verbose=0).sum(axis=1), 1.0, rtol=1e-5)


def test_all_negative_weights_give_an_empty_map_not_nan(keras):
    model = gap_model(keras, activation=None)
    kernel, bias = model.get_layer("pred").get_weights()
    model.get_layer("pred").set_weights([-np.abs(kernel), bias])
    loaded = describe(model, "neg", (32, 32), "none", None)
    images = np.random.default_rng(8).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    result = Engine(loaded, ("conv2",), batch_size=1).run(images, np.array([0]))
    cam = maps.relu(maps.weighted_sum(result.activations, gradcam_weights(result.activations, result.gradients)))
    assert cam.max() == 0.0
    normalised, empty = maps.normalise(maps.upsample(cam[0], (0, 0, 50, 40), (40, 50)))
    assert empty and normalised.shape == (40, 50) and np.isfinite(normalised).all() and normalised.max() == 0


def test_max_pooling_variant(keras, images):
    model = tiny_model(keras)
    result = Engine(loaded_for(model), ("target",), batch_size=3).run(images, np.full(3, 1))
    np.testing.assert_allclose(gradcam_weights(result.activations, result.gradients, pool="max"),
                               result.gradients.max(axis=(1, 2)))
    with pytest.raises(ValueError, match="pool"):
        gradcam_weights(result.activations, result.gradients, pool="median")


def test_out_of_range_targets_are_refused(keras, images):
    engine = Engine(loaded_for(tiny_model(keras)), ("target",), batch_size=3)
    with pytest.raises(ValueError, match="below 3"):
        engine.run(images, np.array([0, 1, 3]))
