"""SmoothGrad and Integrated Gradients against hand computations with numpy (plain input
gradients of the class score), their batching and determinism; and the scoring step's memory
budget (Engine.raw_outputs chunks). On TensorFlow and, in a subprocess, on JAX."""

import importlib.util

import numpy as np
import pytest
from conftest import conv3x3_same_transpose, run_on_jax, set_fixed_weights, tiny_model
from test_fullgrad import hand_tiny

from gradcam_cli.explain.engine import Engine
from gradcam_cli.explain.methods import Context, integrated_gradients, smoothgrad
from gradcam_cli.explain.methods import input_attribution as attribution
from gradcam_cli.models.loading import describe
from gradcam_cli.models.precision import activation_bytes


def loaded_for(model, size=8):
    return describe(model, model.name, (size, size), "none", None)


def images(count=3, seed=31):
    return np.random.default_rng(seed).uniform(0, 1, (count, 8, 8, 3)).astype("float32")


def linear_model(keras, seed=7):
    """8x8x3 -> Conv3x3(4) 'target' (no activation) -> Flatten -> Dense(3, softmax): linear in
    its input once read before the softmax."""
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="target")(inputs)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(3, activation="softmax", name="pred")(x)
    return set_fixed_weights(keras.Model(inputs, outputs, name="linear"), seed)


def smooth_model(keras, seed=8):
    """8x8x3 -> Conv3x3(4, tanh) 'target' -> GAP -> Dense(3, softmax): a smooth path integrand."""
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="tanh", name="target")(inputs)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(3, activation="softmax", name="pred")(x)
    return set_fixed_weights(keras.Model(inputs, outputs, name="smooth"), seed, scale=1.0)


def check_plain_and_smoothgrad_by_hand(keras):
    model = tiny_model(keras)
    engine = Engine(loaded_for(model), ("target",), batch_size=2)
    x = images()
    classes = np.array([0, 2, 1])
    # the plain input gradient, in run() and in input_gradients()
    result = engine.run(x[:2], classes[:2], backprop="plain")
    gradients, scores = engine.input_gradients(x, classes)
    for i in range(3):
        logits, d_x, *_ = hand_tiny(model, x[i], classes[i])
        np.testing.assert_allclose(gradients[i], d_x, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(scores[i], logits[classes[i]], rtol=1e-5, atol=1e-5)
        if i < 2:
            np.testing.assert_allclose(result.input_gradients[i], d_x, rtol=1e-4, atol=1e-5)
    # SmoothGrad with no noise is the plain gradient
    np.testing.assert_allclose(attribution.smoothgrad(engine, x, classes, samples=3, noise=0.0), gradients,
                               rtol=1e-6, atol=1e-7)
    # SmoothGrad by hand: the same noise (image_rng), sigma = noise (max - min), the mean gradient
    smooth = attribution.smoothgrad(engine, x, classes, samples=5, noise=0.2, seed=4)
    for i in range(3):
        rng = attribution.image_rng(x[i], 4)
        sigma = np.float32(0.2 * (float(x[i].max()) - float(x[i].min())))
        copies = [x[i] + sigma * rng.standard_normal(x[i].shape, dtype=np.float32) for _ in range(5)]
        expected = np.mean([hand_tiny(model, copy, classes[i])[1] for copy in copies], axis=0)
        np.testing.assert_allclose(smooth[i], expected, rtol=1e-4, atol=1e-5)


def test_plain_gradients_and_smoothgrad_equal_hand_computation(keras):
    check_plain_and_smoothgrad_by_hand(keras)


def test_smoothgrad_batches_are_their_images_and_seeds_repeat(keras):
    loaded = loaded_for(tiny_model(keras))
    x = images(3)
    classes = np.array([1, 1, 0])
    three = Engine(loaded, ("target",), batch_size=3)
    batched = attribution.smoothgrad(three, x, classes, samples=4, seed=9)
    two = Engine(loaded, ("target",), batch_size=2)  # other chunk boundaries, padding
    for i in range(3):
        alone = attribution.smoothgrad(two, x[i : i + 1], classes[i : i + 1], samples=4, seed=9)
        np.testing.assert_allclose(alone[0], batched[i], rtol=1e-5, atol=1e-7)
    reordered = attribution.smoothgrad(three, x[::-1], classes[::-1], samples=4, seed=9)
    np.testing.assert_allclose(reordered[::-1], batched, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(attribution.smoothgrad(three, x, classes, samples=4, seed=9), batched)
    assert not np.allclose(attribution.smoothgrad(three, x, classes, samples=4, seed=10), batched)
    assert three.traces["input"] == 1  # 12 noisy copies, 4 chunks, one compiled shape
    for bad in ({"samples": 0}, {"noise": -0.1}, {"seed": -1}):
        with pytest.raises(ValueError):
            attribution.smoothgrad(three, x, classes, **{"samples": 2, **bad})


def check_integrated_gradients_on_a_linear_model(keras):
    """Exact: the gradient is constant, IG = (x - x') G, the residual is float rounding."""
    model = linear_model(keras)
    engine = Engine(loaded_for(model), ("target",), batch_size=4)
    k1, b1, k3, b3 = [w.astype(np.float64) for w in model.get_weights()]
    x = images()
    classes = np.array([2, 0, 1])
    baseline = np.full((8, 8, 3), 0.25, np.float32)
    for rule in attribution.RULES:
        for start in (None, baseline):
            attributions, residuals = attribution.integrated_gradients(engine, x, classes, steps=3, baseline=start,
                                                                       rule=rule)
            for i, cls in enumerate(classes):
                constant = conv3x3_same_transpose(k3[:, cls].reshape(8, 8, 4), k1)
                origin = 0.0 if start is None else baseline
                np.testing.assert_allclose(attributions[i], (x[i] - origin) * constant, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(residuals, 0.0, atol=1e-5)


def test_integrated_gradients_on_a_linear_model_are_exact(keras):
    check_integrated_gradients_on_a_linear_model(keras)


def test_integrated_gradients_completeness_improves_with_steps(keras):
    model = smooth_model(keras)
    engine = Engine(loaded_for(model), ("target",), batch_size=5)
    x = images(2) * 2
    classes = np.array([0, 2])
    scores = engine.scores(x)[np.arange(2), classes] - engine.scores(np.zeros_like(x))[np.arange(2), classes]
    errors = []
    for steps in (1, 4, 16, 64):
        attributions, residuals = attribution.integrated_gradients(engine, x, classes, steps=steps)
        np.testing.assert_allclose(attributions.sum(axis=(1, 2, 3)) - scores, residuals, rtol=1e-3, atol=1e-5)
        errors.append(np.abs(residuals).max())
    assert errors[0] > 1e-3 * np.abs(scores).max()  # the path is curved: one step is not enough
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[3] < 1e-3 * np.abs(scores).max()
    # the map: attributions summed over colours, so map.sum() - residual = S(x) - S(x')
    result = engine.run(x, classes, needs=("activations",))
    heat, details = integrated_gradients.spatial_map(result, Context(options=integrated_gradients.METHOD.values({"steps": 64})))
    assert [d["steps"] for d in details] == [64] * len(classes)
    np.testing.assert_allclose(heat.sum(axis=(1, 2)) - residuals, scores, rtol=1e-4, atol=1e-5)
    assert smoothgrad.spatial_map(result, Context(options=smoothgrad.METHOD.values({"samples": 2}))).shape == (2, 8, 8)
    with pytest.raises(ValueError, match="rule"):
        attribution.riemann_nodes(4, "simpson")


def check_scoring_budget(keras):
    """The forward-only scoring step's chunks follow the memory budget; results do not, and
    each engine compiles two scoring shapes at most (full chunks, and batches for the rest)."""
    model = tiny_model(keras)
    loaded = loaded_for(model)
    x = images(7)
    per_image = activation_bytes(loaded)
    tight = Engine(loaded, ("target",), batch_size=2, memory_budget=3 * per_image + 1)
    roomy = Engine(loaded, ("target",), batch_size=2)
    smallest = Engine(loaded, ("target",), batch_size=2, memory_budget=1)
    assert (tight.scoring_chunk, smallest.scoring_chunk) == (3, 1)
    assert roomy.scoring_chunk == min(2**30 // per_image, 256)
    expected = model.predict(x, verbose=0)
    for engine in (tight, roomy, smallest):
        for count in (7, 2, 1):
            np.testing.assert_allclose(engine.probabilities(x[:count]), expected[:count], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(engine.raw_outputs(x), roomy.raw_outputs(x), rtol=1e-5, atol=1e-6)
        assert engine.traces["scores"] <= 2
    assert roomy.traces["scores"] == 1  # 7 images, fewer than a chunk: batches of 2 only
    with pytest.raises(ValueError, match="memory_budget"):
        Engine(loaded, ("target",), batch_size=2, memory_budget=0)


def test_scoring_chunks_follow_the_memory_budget(keras):
    check_scoring_budget(keras)


def check_on_jax(keras):
    check_plain_and_smoothgrad_by_hand(keras)
    check_integrated_gradients_on_a_linear_model(keras)
    check_scoring_budget(keras)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_input_attribution_on_the_jax_backend():
    run_on_jax("test_input_attribution", "check_on_jax")
