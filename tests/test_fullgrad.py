"""FullGrad: the map against a hand computation with numpy on the tiny model, the full-gradient
completeness S(x) = grad_x S . x + sum of bias-gradients on models with pooling, batch
normalisation and a nested base model, and the no-bias warning; on TensorFlow and, in a
subprocess, on JAX."""

import importlib.util

import numpy as np
import pytest
from conftest import (
    conv3x3_same,
    conv3x3_same_transpose,
    gap_model,
    nested_model,
    run_on_jax,
    set_fixed_weights,
    tiny_model,
)

from gradcam_cli.explain.engine import Engine
from gradcam_cli.explain.methods import Context, fullgrad
from gradcam_cli.models.loading import describe


def loaded_for(model, size):
    return describe(model, model.name, (size, size), "none", None)


def images(count, size, seed=21, high=1.0):
    return np.random.default_rng(seed).uniform(0, high, (count, size, size, 3)).astype("float32")


def hand_tiny(model, image, cls):
    """The tiny model by hand: logits, d logit_c / d input, / d z1 ('target' before its ReLU),
    / d z2 ('post' before its ReLU), and the biases b1, b2, b3."""
    k1, b1, k2, b2, k3, b3 = [w.astype(np.float64) for w in model.get_weights()]
    x = image.astype(np.float64)
    z1 = conv3x3_same(x, k1, b1)
    z2 = np.maximum(z1, 0) @ k2[0, 0] + b2
    logits = np.maximum(z2, 0).reshape(-1) @ k3 + b3
    d_z2 = k3[:, cls].reshape(z2.shape) * (z2 > 0)
    d_z1 = (d_z2 @ k2[0, 0].T) * (z1 > 0)
    d_x = conv3x3_same_transpose(d_z1, k1)
    return logits, d_x, d_z1, d_z2, (b1, b2, b3)


def psi_sum(terms):
    """Per-channel min-max of (h, w, K) non-negative terms, summed over channels, by hand."""
    out = np.zeros(terms.shape[:2])
    for k in range(terms.shape[2]):
        channel = terms[:, :, k]
        span = channel.max() - channel.min()
        out += (channel - channel.min()) / span if span > 0 else 0.0
    return out


def check_tiny_fullgrad(keras):
    model = tiny_model(keras)
    engine = Engine(loaded_for(model, 8), ("target",), batch_size=3)
    x = images(3, 8)
    before = model.predict(x, verbose=0)
    result = engine.run(x, np.array([0, 2, -1]), needs=("activations",))
    maps = fullgrad.spatial_map(result, Context())
    assert maps.shape == (3, 8, 8)
    for i in range(3):
        logits, d_x, d_z1, d_z2, (b1, b2, b3) = hand_tiny(model, x[i], int(result.classes[i]))
        # every spatial term is at the input's 8x8: no resizing
        expected = psi_sum(np.abs(d_x * x[i])) + psi_sum(np.abs(d_z1 * b1)) + psi_sum(np.abs(d_z2 * b2))
        np.testing.assert_allclose(maps[i], expected - expected.min(), rtol=1e-5, atol=1e-5)
    # the gradients themselves, and the model untouched (the pre-activation views are views)
    computed = engine.layer_gradients(x, result.classes, [("target",), ("post",), ("pred",)])
    assert [path for path, _ in computed.layers] == [("target",), ("post",), ("pred",)]
    for i in range(3):
        logits, d_x, d_z1, d_z2, (b1, b2, b3) = hand_tiny(model, x[i], int(result.classes[i]))
        np.testing.assert_allclose(computed.input_gradients[i], d_x, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(computed.layers[0][1][i], d_z1, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(computed.layers[1][1][i], d_z2, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(computed.layers[2][1][i], np.eye(3)[result.classes[i]], atol=1e-6)
        np.testing.assert_allclose(computed.raw_outputs[i], logits, rtol=1e-4, atol=1e-4)
    assert model.get_layer("target").activation.__name__ == "relu"
    np.testing.assert_allclose(model.predict(x, verbose=0), before, rtol=1e-6)


def test_tiny_model_map_equals_hand_computation(keras):
    check_tiny_fullgrad(keras)


def check_completeness(keras):
    """For networks of ReLUs, max pooling, batch normalisation and linear layers the class
    score is exactly grad_x S . x + sum over bias layers of sum (dS/dz) b (Eq. 2)."""
    cases = ((gap_model(keras), 32, ("conv2",)), (nested_model(keras), 32, ("base", "b_out")))
    for model, size, target in cases:
        loaded = loaded_for(model, size)
        engine = Engine(loaded, target, batch_size=2)
        terms = fullgrad.bias_terms(loaded)
        x = images(2, size, high=2.0)
        computed = engine.layer_gradients(x, np.array([-1, 1]), [term.path for term in terms])
        bias = {term.path: term.bias for term in terms}
        for i in range(2):
            total = float((computed.input_gradients[i].astype(np.float64) * x[i]).sum())
            total += sum(float((g[i].astype(np.float64) * bias[path]).sum()) for path, g in computed.layers)
            score = engine.scores(x[i : i + 1])[0, computed.classes[i]]
            np.testing.assert_allclose(total, score, rtol=1e-4, atol=1e-4)
        result = engine.run(x, np.array([-1, 1]), needs=("activations",))
        maps = fullgrad.spatial_map(result, Context())
        assert maps.shape == (2, size, size) and np.isfinite(maps).all() and maps.min() == 0.0 and maps.max() > 0


def test_completeness_with_pooling_batch_normalisation_and_a_nested_model(keras):
    check_completeness(keras)


def test_bias_terms_of_a_nested_model_with_batch_normalisation(keras):
    model = nested_model(keras)
    terms = fullgrad.bias_terms(loaded_for(model, 32))
    assert [(t.path, t.spatial) for t in terms] == [(("base", "b_conv1"), True), (("base", "b_conv2"), True),
                                                     (("base", "b_bn"), True), (("pred",), False)]
    bn = model.get_layer("base").get_layer("b_bn")
    gamma, beta, mean, variance = [w.astype(np.float64) for w in bn.get_weights()]
    np.testing.assert_allclose(terms[2].bias, beta - mean * gamma / np.sqrt(variance + bn.epsilon), rtol=1e-6)
    assert fullgrad.bias_warning(loaded_for(model, 32)) is None


def test_the_resized_layer_term_by_hand(keras):
    """gap_model's conv2 (16x16, under max pooling) goes onto the 32x32 input: its gradient
    before the ReLU is W_kc / (h w) where z2 > 0, and its term is bilinearly resized."""
    from gradcam_cli.explain.methods.scorecam import bilinear

    model = gap_model(keras)
    engine = Engine(loaded_for(model, 32), ("conv2",), batch_size=2)
    x = images(2, 32, seed=4)
    pooled = keras.Model(model.input, model.get_layer("pool1").output).predict(x, verbose=0)
    k2, b2 = [w.astype(np.float64) for w in model.get_layer("conv2").get_weights()]
    kernel = model.get_layer("pred").get_weights()[0].astype(np.float64)
    computed = engine.layer_gradients(x, np.array([0, 2]), [("conv1",), ("conv2",)])
    for i, cls in enumerate((0, 2)):
        z2 = conv3x3_same(pooled[i].astype(np.float64), k2, b2)
        d_z2 = kernel[:, cls] / (16 * 16) * (z2 > 0)
        np.testing.assert_allclose(computed.layers[1][1][i], d_z2, rtol=1e-4, atol=1e-7)
    maps = fullgrad.fullgrad_maps(x, computed.input_gradients, [g for _, g in computed.layers],
                                  [model.get_layer("conv1").get_weights()[1], b2])
    for i in range(2):
        small = psi_sum(np.abs(computed.layers[1][1][i] * b2))
        expected = (psi_sum(np.abs(computed.input_gradients[i] * x[i]))
                    + psi_sum(np.abs(computed.layers[0][1][i] * model.get_layer("conv1").get_weights()[1]))
                    + bilinear(small[:, :, None].astype(np.float32), (32, 32))[:, :, 0])
        np.testing.assert_allclose(maps[i], expected, rtol=1e-5, atol=1e-5)


def no_bias_model(keras):
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", use_bias=False, name="target")(inputs)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(3, activation="softmax", use_bias=False, name="pred")(x)
    return set_fixed_weights(keras.Model(inputs, outputs, name="nobias"), seed=6)


def check_without_biases(keras):
    model = no_bias_model(keras)
    loaded = loaded_for(model, 8)
    assert fullgrad.bias_terms(loaded) == []
    assert fullgrad.bias_warning(loaded) == fullgrad.NO_BIAS_WARNING
    engine = Engine(loaded, ("target",), batch_size=2)
    x = images(2, 8)
    result = engine.run(x, np.array([0, 1]), needs=("activations",))
    gradients, scores = engine.input_gradients(x, result.classes)
    np.testing.assert_allclose((gradients * x).sum(axis=(1, 2, 3)), scores, rtol=1e-5, atol=1e-6)  # homogeneous
    expected = np.stack([psi_sum(np.abs(gradients[i] * x[i])) for i in range(2)])
    np.testing.assert_allclose(fullgrad.spatial_map(result, Context()), expected - expected.min(axis=(1, 2), keepdims=True),
                               rtol=1e-5, atol=1e-5)
    zero = tiny_model(keras)
    zero.set_weights([w if w.ndim > 1 else np.zeros_like(w) for w in zero.get_weights()])
    assert fullgrad.bias_warning(loaded_for(zero, 8)) == fullgrad.ZERO_BIAS_WARNING


def test_without_biases_fullgrad_is_the_input_gradient_term_and_says_so(keras):
    check_without_biases(keras)
    engine = Engine(loaded_for(nested_model(keras), 32), ("base", "b_out"), batch_size=1)
    x = images(1, 32)
    with pytest.raises(ValueError, match="nested model"):
        engine.layer_gradients(x, [0], [("base",)])
    with pytest.raises(ValueError, match="no layer 'base/nothing'"):
        engine.layer_gradients(x, [0], [("base", "nothing")])


def check_on_jax(keras):
    check_tiny_fullgrad(keras)
    check_completeness(keras)
    check_without_biases(keras)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_fullgrad_on_the_jax_backend():
    run_on_jax("test_fullgrad", "check_on_jax")
