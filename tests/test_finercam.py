"""Finer-CAM against a hand computation with numpy: the compared classes (nearest scores), the
gradient of the softmax-weighted score difference, the Grad-CAM rule on it; on TensorFlow and,
in a subprocess, on JAX."""

import importlib.util

import numpy as np
import pytest
from conftest import run_on_jax, tiny_model

from gradcam_cli.explain.batch import top_rank
from gradcam_cli.explain.engine import Engine
from gradcam_cli.explain.methods import Context
from gradcam_cli.explain.methods.finercam import FinerObjective, channel_weights
from gradcam_cli.models.loading import describe

CLASSES = 6


def finer_model(keras, classes=CLASSES, seed=3):
    """conftest.tiny_model with `classes` softmax outputs."""
    return tiny_model(keras, classes=classes, seed=seed, name="finer")


def images(count=3, seed=11):
    return np.random.default_rng(seed).uniform(0, 1, (count, 8, 8, 3)).astype("float32")


def hand_forward(model, image):
    """The target activations A, the post layer's pre-activation and the logits, by hand."""
    from conftest import conv3x3_same

    k1, b1, k2, b2, k3, b3 = [w.astype(np.float64) for w in model.get_weights()]
    a = np.maximum(conv3x3_same(image.astype(np.float64), k1, b1), 0)
    post = a @ k2[0, 0] + b2
    logits = np.maximum(post, 0).reshape(-1) @ k3 + b3
    return a, post, logits


def hand_compared(logits, cls, n):
    distance = np.abs(logits - logits[cls])
    distance[cls] = np.inf
    return np.argsort(distance, kind="stable")[:n]


def hand_objective_gradient(logits, cls, compared, alpha):
    """dS/dy of S = sum_d p_d (y_c - alpha y_d) / (sum_d p_d + 1e-9), p = softmax(y)."""
    p = np.exp(logits - logits.max())
    p /= p.sum()
    eye = np.eye(len(logits))
    dp = p[:, None] * (eye - p[None, :])  # dp_d / dy_j
    u = sum(p[d] * (logits[cls] - alpha * logits[d]) for d in compared)
    v = sum(p[d] for d in compared) + 1e-9
    du = sum(dp[d] * (logits[cls] - alpha * logits[d]) + p[d] * (eye[cls] - alpha * eye[d]) for d in compared)
    dv = sum(dp[d] for d in compared)
    return (du * v - u * dv) / v**2, u / v


def hand_finer(model, image, cls, alpha, n):
    """(compared classes, dS/dA at 'target', S) by hand."""
    k1, b1, k2, b2, k3, b3 = [w.astype(np.float64) for w in model.get_weights()]
    a, post, logits = hand_forward(model, image)
    compared = hand_compared(logits, cls, n)
    d_logits, value = hand_objective_gradient(logits, cls, compared, alpha)
    d_b = (k3 @ d_logits).reshape(post.shape)
    d_a = (d_b * (post > 0)) @ k2[0, 0].T
    return compared, d_a, value


def check_finer_matches_hand(keras):
    model = finer_model(keras)
    loaded = describe(model, model.name, (8, 8), "none", None)
    engine = Engine(loaded, ("target",), batch_size=3)
    x = images()
    for alpha, n, codes in ((1.0, 3, [0, 2, 5]), (0.5, 2, [top_rank(1)] * 3), (1.0, 1, [top_rank(2)] * 3)):
        result = engine.run(x, np.array(codes), objective=FinerObjective(alpha, n))
        assert result.compared.shape == (3, n)
        for i in range(3):
            cls = int(result.classes[i])
            _, _, logits = hand_forward(model, x[i])
            if codes[i] < 0:
                assert cls == np.argsort(-logits)[-codes[i] - 1]
            compared, d_a, _ = hand_finer(model, x[i], cls, alpha, n)
            np.testing.assert_array_equal(result.compared[i], compared)
            assert cls not in result.compared[i]
            np.testing.assert_allclose(result.gradients[i], d_a, rtol=1e-4, atol=1e-5)
            weights = channel_weights(result, Context())
            np.testing.assert_allclose(weights[i], d_a.mean(axis=(0, 1)), rtol=1e-4, atol=1e-6)
    return engine


def test_finer_cam_equals_hand_computation(keras):
    check_finer_matches_hand(keras)


def test_compared_classes_are_capped_and_each_objective_compiles_once(keras):
    model = finer_model(keras, classes=3)
    engine = Engine(describe(model, model.name, (8, 8), "none", None), ("target",), batch_size=2)
    x = images(2)
    result = engine.run(x, np.array([0, 1]), objective=FinerObjective(1.0, 3))
    assert result.compared.shape == (2, 2)  # 3 classes: the other two
    for i, cls in enumerate((0, 1)):
        assert sorted(result.compared[i]) == sorted(set(range(3)) - {cls})
    traced = engine.traces["gradients"]
    engine.run(x[:1], np.array([2]), objective=FinerObjective(1.0, 3))
    engine.run(x, np.array([2, 2]), objective=FinerObjective(1.0, 3))  # equal objectives share a step
    assert engine.traces["gradients"] == traced
    assert engine.run(x, np.array([0, 1])).compared is None
    with pytest.raises(ValueError, match="compare"):
        FinerObjective(1.0, 0)


def test_a_batch_equals_its_images_one_by_one(keras):
    model = finer_model(keras)
    loaded = describe(model, model.name, (8, 8), "none", None)
    x = images(3)
    batched = Engine(loaded, ("target",), batch_size=3).run(x, np.full(3, -1), objective=FinerObjective())
    single = Engine(loaded, ("target",), batch_size=1)
    for i in range(3):
        one = single.run(x[i : i + 1], np.array([-1]), objective=FinerObjective())
        np.testing.assert_array_equal(one.compared[0], batched.compared[i])
        np.testing.assert_allclose(one.gradients[0], batched.gradients[i], rtol=1e-5, atol=1e-7)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_finer_cam_on_the_jax_backend():
    run_on_jax("test_finercam", "check_finer_matches_hand")
