"""Grad-CAM++ and LayerCAM: by hand (numpy loops) on tiny fixed-weight models, against
tf-keras-vis's GradcamPlusPlus and Layercam on the demo models, and per-sample pooling."""

import importlib.util

import numpy as np
import pytest
from conftest import conv3x3_same, gap_model, tiny_model

from gradcam_cli.evaluate import scenes as scene_maker
from gradcam_cli.explain import maps
from gradcam_cli.explain.batch import top_rank
from gradcam_cli.explain.engine import Engine
from gradcam_cli.explain.methods.gradcam_plus_plus import gradcam_plus_plus_alphas, gradcam_plus_plus_weights
from gradcam_cli.explain.methods.layercam import layercam_contributions
from gradcam_cli.files.images import prepare
from gradcam_cli.models import loading

needs_tf_keras_vis = pytest.mark.skipif(importlib.util.find_spec("tf_keras_vis") is None,
                                        reason="tf-keras-vis is not installed")


def _loaded(model, size):
    return loading.describe(model, model.name, (size, size), "none", None)


def hand_weights(a, g):
    """Grad-CAM++ channel weights of one image, loop by loop in float64: Eq. 19's alphas (0 where
    the denominator is 0), then w_k = sum_ij alpha_ij relu(g_ij). a, g: (h, w, K) -> (K,)."""
    a, g = np.asarray(a, np.float64), np.asarray(g, np.float64)
    h, w, channels = a.shape
    weights = np.zeros(channels)
    for k in range(channels):
        total = float(a[:, :, k].sum())
        for i in range(h):
            for j in range(w):
                d = float(g[i, j, k])
                denominator = 2 * d**2 + total * d**3
                alpha = d**2 / denominator if denominator != 0 else 0.0
                weights[k] += alpha * max(d, 0.0)
    return weights


def hand_layercam(a, g):
    """sum_k relu(g_ijk) a_ijk of one image, loop by loop: (h, w, K) -> (h, w)."""
    h, w, channels = a.shape
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            out[i, j] = sum(max(float(g[i, j, k]), 0.0) * float(a[i, j, k]) for k in range(channels))
    return out


def hand_map(a, weights):
    return np.maximum(np.tensordot(a.astype(np.float64), weights, axes=([2], [0])), 0.0)


def ours(result):
    """Both methods' maps the pipeline's way: weighted sum or spatial map, then the ReLU."""
    weights = gradcam_plus_plus_weights(result.activations, result.gradients)
    return (maps.relu(maps.weighted_sum(result.activations, weights)),
            maps.relu(layercam_contributions(result.activations, result.gradients).sum(axis=3)))


def test_gap_dense_by_hand(keras):
    """GAP + Dense, logits: g = W[:, c] / (h w) at every position, so alpha_k = 1 / (2 + g_k S_k)
    (S_k the channel's sum) and w_k = h w relu(g_k) / (2 + g_k S_k)."""
    model = gap_model(keras)
    images = np.random.default_rng(11).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    classes = (0, 2)
    result = Engine(_loaded(model, 32), ("conv2",), batch_size=2).run(images, np.array(classes))
    features = keras.Model(model.input, model.get_layer("conv2").output).predict(images, verbose=0)
    kernel = model.get_layer("pred").get_weights()[0].astype(np.float64)
    h, w = features.shape[1:3]
    np.testing.assert_allclose(result.activations, features, rtol=1e-5, atol=1e-5)
    our_weights = gradcam_plus_plus_weights(result.activations, result.gradients)
    our_pp, our_layercam = ours(result)
    for i, cls in enumerate(classes):
        g = np.broadcast_to(kernel[:, cls] / (h * w), features[i].shape)
        np.testing.assert_allclose(result.gradients[i], g, rtol=1e-5, atol=1e-9)
        expected = hand_weights(features[i], g)
        sums = features[i].astype(np.float64).sum(axis=(0, 1))
        closed = h * w * np.maximum(g[0, 0], 0) / (2 + g[0, 0] * sums)
        np.testing.assert_allclose(expected, closed, rtol=1e-9)
        assert (expected > 0).any() and (expected == 0).any()  # both signs of W[:, c]
        np.testing.assert_allclose(our_weights[i], expected, rtol=1e-5, atol=1e-5 * expected.max())
        pp = hand_map(features[i], expected)
        np.testing.assert_allclose(our_pp[i], pp, rtol=1e-5, atol=1e-5 * pp.max())
        # LayerCAM here is CAM with the positive part of the kernel, over h w
        layercam = np.maximum(hand_layercam(features[i], g), 0)
        cam_positive = features[i].astype(np.float64) @ np.maximum(kernel[:, cls], 0) / (h * w)
        np.testing.assert_allclose(layercam, cam_positive, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(our_layercam[i], layercam, rtol=1e-5, atol=1e-5 * layercam.max())


def tiny_by_hand(model, image, cls):
    """The tiny model's 'target' activations and d logit_c / d target, by hand: Flatten + Dense
    gives every position its own gradient."""
    k1, b1, k2, b2, k3, _ = [w.astype(np.float64) for w in model.get_weights()]
    a = np.maximum(conv3x3_same(image.astype(np.float64), k1, b1), 0)
    b_pre = a @ k2[0, 0] + b2
    d_b = k3[:, cls].reshape(b_pre.shape) * (b_pre > 0)  # back through the ReLU of 'post'
    return a, d_b @ k2[0, 0].T  # and through its 1x1 conv


def test_spatially_varying_gradients_by_hand(keras):
    model = tiny_model(keras)
    images = np.random.default_rng(12).uniform(0, 1, (3, 8, 8, 3)).astype("float32")
    engine = Engine(_loaded(model, 8), ("target",), batch_size=3)
    for cls in range(3):
        result = engine.run(images, np.full(3, cls))
        our_weights = gradcam_plus_plus_weights(result.activations, result.gradients)
        our_pp, our_layercam = ours(result)
        for i in range(3):
            a, g = tiny_by_hand(model, images[i], cls)
            assert (g > 0).any() and (g < 0).any() and np.ptp(g, axis=(0, 1)).min() > 0
            np.testing.assert_allclose(result.activations[i], a, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(result.gradients[i], g, rtol=1e-4, atol=1e-6)
            expected = hand_weights(a, g)
            np.testing.assert_allclose(our_weights[i], expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
            pp = hand_map(a, expected)
            np.testing.assert_allclose(our_pp[i], pp, rtol=1e-5, atol=1e-5 * max(pp.max(), 1e-12))
            layercam = np.maximum(hand_layercam(a, g), 0)
            assert layercam.max() > 0
            np.testing.assert_allclose(our_layercam[i], layercam, rtol=1e-5, atol=1e-5 * layercam.max())


def test_zero_denominators_give_zero_alphas_and_no_eps():
    a = np.zeros((1, 2, 2, 3))
    g = np.zeros((1, 2, 2, 3))
    a[0, :, :, 1] = [[-1.0, -1.0], [0.5, -0.5]]  # the sum is -2: at g = 1, 2 g^2 + (-2) g^3 = 0
    g[0, 0, 0, 1] = 1.0
    a[0, :, :, 2] = [[1.0, 2.0], [3.0, 4.0]]
    g[0, :, :, 2] = [[0.5, -0.25], [0.0, 2.0]]
    alphas = gradcam_plus_plus_alphas(a, g)
    assert np.isfinite(alphas).all()
    assert (alphas[..., 0] == 0).all() and (alphas[..., 1] == 0).all()  # channel 0 has no gradient
    assert alphas[0, 1, 0, 2] == 0  # g = 0
    np.testing.assert_allclose(alphas[0, 0, 0, 2], 1 / (2 + 0.5 * 10))
    weights = gradcam_plus_plus_weights(a, g)
    np.testing.assert_allclose(weights[0], hand_weights(a[0], g[0]), rtol=1e-6)
    np.testing.assert_allclose(weights[0], [0, 0, 0.5 / 7 + 2 / 22], rtol=1e-6)
    # no eps: alpha = 1 / (2 + g sum A) is unchanged by g -> c g, A -> A / c, even for tiny gradients
    np.testing.assert_allclose(gradcam_plus_plus_alphas(a * 1e6, g * 1e-6), alphas, rtol=1e-9)
    np.testing.assert_allclose(gradcam_plus_plus_weights(a * 1e6, g * 1e-6), weights * 1e-6, rtol=1e-5)


def scene_batch(loaded):
    """Three synthetic scenes, each of a different class, as one prepared batch."""
    scenes = [scene_maker.generate(i, 1, size=loaded.input_size[0]) for i in range(3)]
    assert len({scene.objects[0].class_index for scene in scenes}) == 3
    return prepare(loaded, [scene.image for scene in scenes])[0]


def tf_keras_vis_equivalent(result, loaded):
    """What tf-keras-vis's GradcamPlusPlus computes, from our alphas: it follows the authors' code,
    not the paper's equations, in two ways that make exact agreement with our map impossible:
    (1) it normalises each channel's alphas to sum to 1 over all positions (a sum of 0 taken as
    1), those where the gradient is negative included; (2) it keeps exp(S) in the weights
    (dY/dA = exp(S) g for Y = exp(S)). Its zero handling (alpha 0 where exp(S) g^2 == 0) matches
    ours wherever the denominator is not exactly 0 with g != 0."""
    alphas = gradcam_plus_plus_alphas(result.activations, result.gradients)
    totals = alphas.sum(axis=(1, 2), keepdims=True)
    alphas = alphas / np.where(totals == 0, 1.0, totals)
    scores = loaded.head.scores(result.raw_outputs)[np.arange(len(result.classes)), result.classes]
    weights = np.exp(scores.astype(np.float64))[:, None] * (alphas * np.maximum(result.gradients, 0)).sum(axis=(1, 2))
    return maps.relu(maps.weighted_sum(result.activations, weights))


def per_sample_max(batch):
    return batch.max(axis=(1, 2), keepdims=True)


@needs_tf_keras_vis
@pytest.mark.parametrize("name", ["demo-gap", "demo-vgg"])
def test_maps_equal_tf_keras_vis(keras, name):
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    loaded = loading.load(name)
    layer = loaded.default_layer[-1]
    assert layer == {"demo-gap": "block3_conv2", "demo-vgg": "block4_conv2"}[name]
    inputs = scene_batch(loaded)
    engine = Engine(loaded, loaded.default_layer, batch_size=3)
    # The model's output made linear (the logit), on a clone: the user's model is left alone.
    explainers = [GradcamPlusPlus(loaded.model, model_modifier=ReplaceToLinear(), clone=True),
                  Layercam(loaded.model, model_modifier=ReplaceToLinear(), clone=True)]
    per_rank = []
    for rank in (1, 2):
        result = engine.run(inputs, np.full(3, top_rank(rank)))
        theirs = [np.asarray(explainer(CategoricalScore(list(result.classes)), inputs, penultimate_layer=layer,
                                       expand_cam=False, normalize_cam=False)) for explainer in explainers]
        our_pp, our_layercam = ours(result)
        mine = [tf_keras_vis_equivalent(result, loaded), our_layercam]
        for their_map, our_map in zip(theirs, mine):
            assert their_map.shape == our_map.shape == result.activations.shape[:3]
            # exp(S) makes GradcamPlusPlus's maxima differ by orders of magnitude within a
            # batch: the tolerance is each image's own map maximum
            scale = per_sample_max(their_map)
            assert (scale > 0).all()
            assert (np.abs(our_map - their_map) <= 1e-4 * scale).all(), np.abs(our_map - their_map).max()
        # the normalisation and exp(S) are not a no-op: the paper's map differs from theirs
        assert np.abs(our_pp / per_sample_max(our_pp) - theirs[0] / per_sample_max(theirs[0])).max() > 1e-3
        per_rank.append((result.classes, mine, theirs))
    (first, _, theirs_first), (second, mine_second, _) = per_rank
    assert (first != second).all()
    for their_map, our_map in zip(theirs_first, mine_second):  # another class's map must not pass
        gap = np.abs(our_map / per_sample_max(our_map) - their_map / per_sample_max(their_map)).max(axis=(1, 2))
        assert (gap > 1e-2).all()
    assert loaded.model.layers[-1].activation.__name__ == "softmax"


def test_batch_gives_the_same_as_one_by_one(keras):
    """Both methods pool per sample: three different images in one batch give each image's own maps."""
    loaded = loading.load("demo-vgg")
    inputs = scene_batch(loaded)
    batched = Engine(loaded, loaded.default_layer, batch_size=3).run(inputs, np.full(3, top_rank(1)))
    batch_weights = gradcam_plus_plus_weights(batched.activations, batched.gradients)
    batch_maps = ours(batched)
    single = Engine(loaded, loaded.default_layer, batch_size=1)
    for i in range(3):
        one = single.run(inputs[i : i + 1], np.array([top_rank(1)]))
        assert one.classes[0] == batched.classes[i]
        weights = gradcam_plus_plus_weights(one.activations, one.gradients)
        np.testing.assert_allclose(batch_weights[i], weights[0], rtol=1e-5, atol=1e-5 * np.abs(weights).max())
        for batch_map, one_map in zip(batch_maps, ours(one)):
            np.testing.assert_allclose(batch_map[i], one_map[0], rtol=1e-5, atol=1e-5 * one_map.max())
    # and the functions alone: another image in the batch changes nothing of image 0's
    swapped = gradcam_plus_plus_weights(batched.activations[[0, 2]], batched.gradients[[0, 2]])
    np.testing.assert_array_equal(swapped[0], batch_weights[0])
