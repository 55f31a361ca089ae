"""Shapley-CAM: the engine's Hessian-vector product H A at the target layer against finite
differences of a hand-computed gradient (numpy, float64), on a head with a smooth activation
(tanh, the logit) and with the paper's ReST utility; zero where the head is piecewise linear;
on TensorFlow and, in a subprocess, on JAX."""

import importlib.util

import numpy as np
import pytest
from conftest import conv3x3_same, gap_model, run_on_jax, set_fixed_weights

from gradcam_cli.explain.engine import Engine
from gradcam_cli.explain.methods import Context
from gradcam_cli.explain.methods.gradcam import gradcam_weights
from gradcam_cli.explain.methods.shapleycam import ReST, channel_weights, shapleycam_weights
from gradcam_cli.models.loading import describe


def smooth_model(keras, seed=5):
    """8x8x3 -> Conv3x3(4, relu) 'target' -> Conv1x1(5, tanh) 'post' -> Flatten -> Dense(3, softmax)."""
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="target")(inputs)
    x = layers.Conv2D(5, 1, activation="tanh", name="post")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(3, activation="softmax", name="pred")(x)
    return set_fixed_weights(keras.Model(inputs, outputs, name="smooth"), seed)


def images(count=2, seed=12):
    return np.random.default_rng(seed).uniform(0, 1, (count, 8, 8, 3)).astype("float32")


def hand(model, image, cls, rest):
    """(A, dS/dA as a function of A) by hand; S the logit of `cls`, or ReST y_c + log softmax(y)_c."""
    k1, b1, k2, b2, k3, b3 = [w.astype(np.float64) for w in model.get_weights()]
    a = np.maximum(conv3x3_same(image.astype(np.float64), k1, b1), 0)

    def gradient(activations):
        t = np.tanh(activations @ k2[0, 0] + b2)
        logits = t.reshape(-1) @ k3 + b3
        d_logits = np.eye(3)[cls]
        if rest:  # d(2 y_c - logsumexp y) / dy
            p = np.exp(logits - logits.max())
            d_logits = 2 * d_logits - p / p.sum()
        d_t = (k3 @ d_logits).reshape(t.shape)
        return (d_t * (1 - t**2)) @ k2[0, 0].T

    return a, gradient


def finite_difference_hvp(gradient, a, step=1e-4):
    """H A by central differences of the gradient along A."""
    return (gradient(a + step * a) - gradient(a - step * a)) / (2 * step)


def check_hessian_products(keras):
    model = smooth_model(keras)
    engine = Engine(describe(model, model.name, (8, 8), "none", None), ("target",), batch_size=2)
    x = images()
    for objective in (None, ReST()):
        result = engine.run(x, np.array([0, 2]), needs=("activations", "gradients", "hessian"), objective=objective)
        for i, cls in enumerate((0, 2)):
            a, gradient = hand(model, x[i], cls, rest=objective is not None)
            hvp = finite_difference_hvp(gradient, a)
            assert np.abs(hvp).max() > 1e-2  # the head is not linear in A
            np.testing.assert_allclose(result.activations[i], a, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(result.gradients[i], gradient(a), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(result.hessian_products[i], hvp, rtol=1e-4, atol=1e-5 * np.abs(hvp).max())
            expected = (gradient(a) - 0.5 * hvp).mean(axis=(0, 1))
            np.testing.assert_allclose(channel_weights(result, Context())[i], expected, rtol=1e-4, atol=1e-6)
        # the first-order step agrees with the second-order one
        plain = engine.run(x, np.array([0, 2]), objective=objective)
        np.testing.assert_allclose(plain.gradients, result.gradients, rtol=1e-5, atol=1e-7)
        assert plain.hessian_products is None


def test_hessian_products_match_finite_differences(keras):
    check_hessian_products(keras)


def test_a_piecewise_linear_head_has_no_hessian_and_gives_grad_cam(keras):
    """GAP + Dense read before the softmax above the target: H A = 0, Shapley-CAM = Grad-CAM."""
    model = gap_model(keras)
    engine = Engine(describe(model, "gap", (32, 32), "none", None), ("conv2",), batch_size=2)
    x = np.random.default_rng(2).uniform(0, 1, (2, 32, 32, 3)).astype("float32")  # a softmax far from saturation
    result = engine.run(x, np.array([0, 1]), needs=("activations", "gradients", "hessian"))
    np.testing.assert_array_equal(result.hessian_products, 0.0)
    np.testing.assert_allclose(shapleycam_weights(result.gradients, result.hessian_products),
                               gradcam_weights(result.activations, result.gradients), rtol=1e-6)
    # ReST's log-softmax is not linear: its H A is not zero
    rest = engine.run(x, np.array([0, 1]), needs=("activations", "gradients", "hessian"), objective=ReST())
    assert np.abs(rest.hessian_products).max() > 0


def test_compiled_once_and_a_batch_equals_its_images(keras):
    model = smooth_model(keras)
    loaded = describe(model, model.name, (8, 8), "none", None)
    x = images(3)
    batched = Engine(loaded, ("target",), batch_size=3)
    first = batched.run(x, np.full(3, -1), needs=("activations", "gradients", "hessian"), objective=ReST())
    traced = batched.traces["hessian"]
    batched.run(x[:2], np.full(2, -1), needs=("activations", "gradients", "hessian"), objective=ReST())
    assert batched.traces["hessian"] == traced == 1
    single = Engine(loaded, ("target",), batch_size=1)
    for i in range(3):
        one = single.run(x[i : i + 1], np.array([-1]), needs=("activations", "gradients", "hessian"), objective=ReST())
        np.testing.assert_allclose(one.hessian_products[0], first.hessian_products[i], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="hessian"):
        channel_weights(single.run(x[:1], np.array([-1])), Context())


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_hessian_products_on_the_jax_backend():
    run_on_jax("test_shapleycam", "check_hessian_products")
