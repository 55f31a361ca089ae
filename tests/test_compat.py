"""--compat and the options it sets (docs/development/compat-spec.md): each of pytorch-grad-cam's
and tf-keras-vis's rules that an option reproduces, against a hand computation in numpy of that
library's rule (its source quoted in the spec) on a tiny model or on given arrays; then what
compat sets, what wins over it, `gradcam methods NAME` and the record."""

import importlib.util
import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import channel_map, conv3x3_same, gap_model, invoke_cli, tiny_model, write_image

from gradcam_cli import Explainer
from gradcam_cli.explain import maps, smoothing
from gradcam_cli.explain.engine import Engine
from gradcam_cli.explain.methods import METHODS, Context, ablationcam, fem, gradcam_plus_plus, kpcacam, scorecam
from gradcam_cli.explain.methods.fem import fem_contributions
from gradcam_cli.models import loading

needs_tf_keras_vis = pytest.mark.skipif(importlib.util.find_spec("tf_keras_vis") is None,
                                        reason="tf-keras-vis is not installed")
PGC, TKV = "pytorch-grad-cam", "tf-keras-vis"


def close(ours, expected, rtol=1e-5):
    """Equal to `rtol` of the expected array's largest magnitude."""
    scale = float(np.abs(expected).max())
    assert scale > 0
    np.testing.assert_allclose(ours, expected, rtol=0, atol=rtol * scale)


def corner_resize(channel, size):
    """Corner-aligned bilinear resize of an (h, w) array by np.interp: output index i read at
    i (h - 1) / (H - 1) (torch align_corners=True, scipy zoom order=1)."""
    (h, w), (H, W) = channel.shape, size
    rows = np.array([np.interp(np.arange(H) * (h - 1) / (H - 1), np.arange(h), channel[:, j]) for j in range(w)]).T
    return np.array([np.interp(np.arange(W) * (w - 1) / (W - 1), np.arange(w), row) for row in rows])


# --- Score-CAM ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gap(keras):
    """gap_model: 32x32x3 -> conv1 -> pool -> conv2 (16x16x16, the target) -> GAP -> Dense(3, softmax);
    two random images and an all-zero one (every channel of it constant)."""
    model = gap_model(keras)
    loaded = loading.describe(model, model.name, (32, 32), "none", None)
    rng = np.random.default_rng(3)
    images = np.concatenate([rng.uniform(0, 1, (2, 32, 32, 3)), np.zeros((1, 32, 32, 3))]).astype(np.float32)
    result = Engine(loaded, ("conv2",), batch_size=3).run(images, np.array([2, 0, 1]), needs=("activations",))
    features = keras.Model(model.inputs, model.get_layer("gap").output)
    kernel, bias = model.get_layer("pred").get_weights()

    def logits(inputs):  # the Dense before its softmax, by hand from the pooled features
        return features.predict(np.asarray(inputs, np.float32), verbose=0).astype(np.float64) @ kernel + bias

    return SimpleNamespace(model=model, loaded=loaded, images=images, result=result, logits=logits)


def test_corner_aligned_upsampling_by_hand():
    """The spec's constant ([0, 1] to 4 samples: [0, 1/3, 2/3, 1]; cv2 gives [0, .25, .75, 1]), and
    any channels against np.interp."""
    np.testing.assert_allclose(scorecam.corners(np.array([[0.0, 1.0]])[..., None], (1, 4))[0, :, 0],
                               [0, 1 / 3, 2 / 3, 1], rtol=0, atol=1e-7)
    np.testing.assert_allclose(scorecam.bilinear(np.array([[0.0, 1.0]], np.float32)[..., None], (1, 4))[0, :, 0],
                               [0, 0.25, 0.75, 1], rtol=0, atol=1e-7)
    channels = np.random.default_rng(4).normal(size=(3, 5, 7)).astype(np.float32)
    ours = scorecam.corners(channels, (12, 20))
    expected = np.stack([corner_resize(channels[:, :, k].astype(np.float64), (12, 20)) for k in range(7)], axis=2)
    close(ours, expected)
    if importlib.util.find_spec("scipy") is not None:  # tf-keras-vis's own: scipy.ndimage.zoom(order=1)
        from scipy.ndimage import zoom

        close(ours, zoom(channels.astype(np.float64), (12 / 3, 20 / 5, 1), order=1, mode="nearest"))


def masks_by_hand(activations, size, eps):
    """(K, H, W): each channel corner-aligned upsampled, min-max with their eps."""
    out = []
    for k in range(activations.shape[-1]):
        up = corner_resize(activations[:, :, k].astype(np.float64), size)
        out.append((up - up.min()) / (up.max() - up.min() + eps))
    return np.stack(out)


def test_pytorch_grad_cams_score_cam_by_hand(gap):
    """score_cam.py: masks (U - min) / (max - min + 1e-8) of the corner-aligned upsampling, each
    masked input's class logit, softmax over all K channels, a constant channel's zero mask
    scored as the zero input (every masked input of the zero image is the zero input: its
    weights are 1/K)."""
    result = gap.result
    ours = channel_map(scorecam.channel_weights, result,
                       Context(options=METHODS["scorecam"].values(compat=PGC)))
    K = result.activations.shape[-1]
    for i, c in enumerate(result.classes):
        masks = masks_by_hand(result.activations[i], (32, 32), 1e-8)
        scores = gap.logits(gap.images[i] * masks[..., None])[:, c]
        weights = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
        expected = np.tensordot(result.activations[i], weights, axes=([2], [0]))
        close(ours[i], expected)
        if i == 2:  # the zero image: all channels constant, all scored as the zero input
            np.testing.assert_allclose(weights, np.full(K, 1 / K))
    weights = scorecam.channel_weights(result, Context(options=scorecam.METHOD.values({"scorecam_score": "softmax-logits"})))
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    assert (weights > 0).all()  # every channel, constant ones too


def test_a_constant_channel_enters_pytorch_grad_cams_softmax():
    """Given arrays: channel 2 is constant 5 (its mask 0 / (0 + 1e-8) = 0), so pytorch-grad-cam
    scores X o 0 = 0, the bias alone, and that score enters the softmax with the others."""
    rng = np.random.default_rng(9)
    activations = rng.uniform(0, 1, (1, 2, 3, 3)).astype(np.float32)
    activations[0, :, :, 2] = 5.0
    inputs = rng.uniform(-1, 1, (1, 4, 6, 2)).astype(np.float32)
    weights_in, bias = rng.normal(size=(4 * 6 * 2, 3)), np.array([0.5, -1.0, 2.0])
    logits = lambda x: np.asarray(x, np.float64).reshape(len(x), -1) @ weights_in + bias
    ours = scorecam.scorecam_weights(activations, inputs, [1], logits, upsample=scorecam.corners, softmax=True)
    masks = masks_by_hand(activations[0], (4, 6), 1e-8)
    assert (masks[2] == 0).all()
    scores = logits(inputs[0] * masks[..., None])[:, 1]
    assert scores[2] == bias[1]
    np.testing.assert_allclose(ours[0], np.exp(scores) / np.exp(scores).sum(), rtol=1e-5)


def test_tf_keras_vis_score_cam_by_hand(gap):
    """scorecam.py: masks (U - min) / (max - min + 1e-7) of scipy's corner-aligned zoom, weights
    the class probability, no baseline. A constant channel: tf-keras-vis scores its zero mask,
    p_c(0), where ours gives it 0 (documented), so that term is taken out of their map."""
    result = gap.result
    ours = channel_map(scorecam.channel_weights, result,
                       Context(options=METHODS["scorecam"].values(compat=TKV)))
    for i, c in enumerate(result.classes[:2]):
        masks = masks_by_hand(result.activations[i], (32, 32), 1e-7)
        logits = gap.logits(gap.images[i] * masks[..., None])
        weights = np.exp(logits[:, c]) / np.exp(logits).sum(axis=1)
        constant = np.ptp(result.activations[i], axis=(0, 1)) == 0
        theirs = np.tensordot(result.activations[i], weights, axes=([2], [0]))
        close(ours[i], theirs - np.tensordot(result.activations[i], weights * constant, axes=([2], [0])))
    plain = channel_map(scorecam.channel_weights, result, Context(options=scorecam.METHOD.values()))
    assert np.abs(plain[:2] - ours[:2]).max() > 1e-3 * np.abs(ours[:2]).max()  # the upsampling shows


def test_softmax_logits_scores_in_groups_with_one_zero_input(gap, monkeypatch):
    """The zero input is scored once for the batch; groups stay within the budget."""
    result = gap.result
    calls = []
    engine = result.engine
    original = engine.scores
    monkeypatch.setattr(engine, "scores", lambda inputs: calls.append(len(inputs)) or original(inputs))
    options = Context(options=scorecam.METHOD.values({"scorecam_score": "softmax-logits"}))
    whole = scorecam.channel_weights(result, options)
    masked = scorecam.kept_channels(result.activations).sum()
    constant = (~scorecam.kept_channels(result.activations)).sum()
    assert constant > 0 and sum(calls) == masked + 1  # the constant channels: one zero input for all
    calls.clear()
    monkeypatch.setattr(scorecam, "MASK_BUDGET_BYTES", 7 * gap.images[0].nbytes)
    np.testing.assert_allclose(scorecam.channel_weights(result, options), whole, rtol=1e-6)
    assert len(calls) > 1 and all(size == 6 for size in calls[:-1]) and sum(calls) == masked + 1


@needs_tf_keras_vis
def test_tf_keras_vis_scorecam_itself(gap):
    """tf-keras-vis's Scorecam (ReplaceToLinear: its softmax gives the probabilities) against
    --compat tf-keras-vis, at the layer's resolution, before the ReLU."""
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    result, images = gap.result, gap.images[:2]
    ours = channel_map(scorecam.channel_weights, result,
                       Context(options=METHODS["scorecam"].values(compat=TKV)))[:2]
    explain = Scorecam(gap.model, model_modifier=ReplaceToLinear(), clone=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        theirs = np.asarray(explain(CategoricalScore(list(result.classes[:2])), images, penultimate_layer="conv2",
                                    activation_modifier=None, expand_cam=False, normalize_cam=False))
    constant = np.ptp(result.activations[:2], axis=(1, 2)) == 0
    zero = gap.logits(np.zeros((1, 32, 32, 3)))[0]
    p_zero = (np.exp(zero) / np.exp(zero).sum())[result.classes[:2]]
    close(ours, theirs - maps.weighted_sum(result.activations[:2], p_zero[:, None] * constant))


# --- Grad-CAM++ -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(keras):
    """tiny_model without softmax, its Dense scaled down 100 times: gradients of 1e-3 to 1e-2 at
    the target, where pytorch-grad-cam's eps of 1e-6 shows."""
    model = tiny_model(keras, softmax=False)
    kernel, bias = model.get_layer("pred").get_weights()
    model.get_layer("pred").set_weights([kernel / 100, bias / 100])
    loaded = loading.describe(model, "tiny", (8, 8), "none", None)
    images = np.random.default_rng(4).uniform(0, 1, (3, 8, 8, 3)).astype(np.float32)
    return SimpleNamespace(model=model, loaded=loaded, images=images)


def tiny_by_hand(model, image, cls=None):
    """The target activations A (8, 8, 4), dS/dA and the logits of tiny_model, in numpy; cls None:
    the top-1 class."""
    kernel, bias = model.get_layer("target").get_weights()
    post_kernel, post_bias = model.get_layer("post").get_weights()
    dense, dense_bias = model.get_layer("pred").get_weights()
    a = np.maximum(conv3x3_same(image.astype(np.float64), kernel, bias), 0)
    post = a @ post_kernel[0, 0] + post_bias
    logits = np.maximum(post, 0).reshape(-1) @ dense + dense_bias
    cls = int(np.argmax(logits)) if cls is None else cls
    upstream = (post > 0) * dense[:, cls].reshape(post.shape)
    return a, upstream @ post_kernel[0, 0].T, logits


def test_grad_cam_plus_plus_rules_by_hand(tiny):
    """pytorch-grad-cam (grad_cam_plusplus.py): g^2 / (2 g^2 + sum A g^3 + 1e-6), 0 where g == 0;
    tf-keras-vis (gradcam_plus_plus.py): E g^2 / (2 E g^2 + E g^3 sum A + [E g^2 == 0]), alphas
    divided by their spatial sum (1 where 0), weights relu(E g) summed with them, E = exp(S):
    ours is theirs without E."""
    engine = Engine(tiny.loaded, ("target",), batch_size=3)
    result = engine.run(tiny.images, np.array([0, 1, 2]))
    maps_by_rule = {}
    for library in (PGC, TKV):
        context = Context(options=METHODS["gradcam++"].values(compat=library))
        maps_by_rule[library] = channel_map(gradcam_plus_plus.channel_weights, result, context)
    for i, c in enumerate(result.classes):
        a, g, logits = tiny_by_hand(tiny.model, tiny.images[i], int(c))
        assert 1e-5 < np.abs(g).max() < 1e-1
        total = a.sum(axis=(0, 1))
        alphas = g**2 / (2 * g**2 + total * g**3 + 1e-6)
        weights = (np.maximum(g, 0) * np.where(g != 0, alphas, 0)).sum(axis=(0, 1))
        close(maps_by_rule[PGC][i], a @ weights)
        e = np.exp(logits[c])
        denominator = 2 * e * g**2 + e * g**3 * total + (e * g**2 == 0)
        alphas = e * g**2 / denominator
        sums = alphas.sum(axis=(0, 1))
        alphas = alphas / np.where(sums == 0, 1, sums)
        weights = (np.maximum(e * g, 0) * alphas).sum(axis=(0, 1))
        close(maps_by_rule[TKV][i] * e, a @ weights)
    paper = channel_map(gradcam_plus_plus.channel_weights, result, Context(options=gradcam_plus_plus.METHOD.values()))
    peak = lambda m: m / np.abs(m).max(axis=(1, 2), keepdims=True)
    assert np.abs(peak(paper) - peak(maps_by_rule[PGC])).max() > 1e-2  # the eps is visible here


@needs_tf_keras_vis
def test_tf_keras_vis_gradcam_plus_plus_itself(tiny):
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.utils.scores import CategoricalScore

    engine = Engine(tiny.loaded, ("target",), batch_size=3)
    result = engine.run(tiny.images, np.array([0, 1, 2]))
    ours = channel_map(gradcam_plus_plus.channel_weights, result,
                       Context(options=gradcam_plus_plus.METHOD.values({"gradcampp_alphas": "normalised"})))
    theirs = np.asarray(GradcamPlusPlus(tiny.model, clone=True)(
        CategoricalScore([0, 1, 2]), tiny.images, penultimate_layer="target", expand_cam=False, normalize_cam=False))
    for i in range(3):
        exp_s = np.exp(tiny_by_hand(tiny.model, tiny.images[i], i)[2][i])
        close(maps.relu(ours[i] * exp_s), theirs[i], rtol=1e-4)


# --- KPCA-CAM, FEM ---------------------------------------------------------------------------------

def test_pytorch_grad_cams_kpca_cam_by_hand():
    """kpca_cam.py: samples centred over the positions, sklearn's KernelPCA(kernel='sigmoid'):
    tanh(<x, y> / K + 1), centred, u sqrt(lambda), svd_flip's sign (largest |u| positive).
    Ours keeps its own sign (correlation with the channel mean)."""
    rng = np.random.default_rng(6)
    activations = np.maximum(rng.normal(size=(2, 5, 6, 7)), 0) * 0.5
    ours = kpcacam.spatial_map(SimpleNamespace(activations=activations),
                               Context(options=METHODS["kpcacam"].values(compat=PGC)))
    rbf = kpcacam.spatial_map(SimpleNamespace(activations=activations), Context(options=kpcacam.METHOD.values()))
    for i in range(2):
        x = activations[i].reshape(-1, 7)
        x = x - x.mean(axis=0)
        gram = np.tanh(x @ x.T / 7 + 1)
        n = len(gram)
        centring = np.eye(n) - np.full((n, n), 1 / n)
        values, vectors = np.linalg.eigh(centring @ gram @ centring)
        u = vectors[:, -1] * np.sign(vectors[np.argmax(np.abs(vectors[:, -1])), -1])
        theirs = (u * np.sqrt(values[-1])).reshape(5, 6)
        sign = 1 if np.abs(ours[i] - theirs).max() < np.abs(ours[i] + theirs).max() else -1
        close(ours[i], sign * theirs)
        mean = activations[i].mean(axis=2)
        assert np.corrcoef(ours[i].ravel(), mean.ravel())[0, 1] > 0  # our sign rule
        assert np.abs(rbf[i] - ours[i]).max() > 1e-3 * np.abs(ours[i]).max()


def fem_maps(activations, weighting):
    return fem.contributions(SimpleNamespace(activations=activations),
                                     Context(options=fem.METHOD.values({"fem_weights": weighting}))).sum(axis=3)


def test_fem_spec_example_by_hand():
    """The spec's 3x3 channel [1 x 8, 17]: mean 25/9, std 5.028, threshold 12.84 keeps the peak;
    pytorch-grad-cam's map is A / 9, ours the mean at the peak."""
    a = np.ones((1, 3, 3, 1))
    a[0, 2, 2, 0] = 17.0
    assert METHODS["fem"].values(compat=PGC)["fem_weights"] == "fraction-above"
    np.testing.assert_allclose(fem_maps(a, "fraction-above")[0], a[0, :, :, 0] / 9, rtol=1e-6)
    expected = np.zeros((3, 3))
    expected[2, 2] = 25 / 9
    np.testing.assert_allclose(fem_maps(a, "channel-mean")[0], expected, rtol=1e-6)


def test_fem_rules_rank_two_channels_differently():
    """Channel 0: 20 at (0, 0) among zeros (mean 20/9, threshold 14.8); channel 1: 50 everywhere
    and 60 at (2, 2) (mean 460/9, threshold 57.4). The paper's map peaks at (2, 2) (460/9 > 20/9);
    pytorch-grad-cam's, (A_0 + A_1) / 9, at (0, 0) (70/9 > 60/9)."""
    a = np.zeros((1, 3, 3, 2))
    a[0, 0, 0, 0] = 20.0
    a[0, :, :, 1] = 50.0
    a[0, 2, 2, 1] = 60.0
    ours, theirs = fem_maps(a, "channel-mean")[0], fem_maps(a, "fraction-above")[0]
    expected = np.zeros((3, 3))
    expected[0, 0], expected[2, 2] = 20 / 9, 460 / 9
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
    np.testing.assert_allclose(theirs, (a[0, :, :, 0] + a[0, :, :, 1]) / 9, rtol=1e-6)
    assert np.unravel_index(np.argmax(ours), (3, 3)) == (2, 2)
    assert np.unravel_index(np.argmax(theirs), (3, 3)) == (0, 0)
    np.testing.assert_array_equal(fem_contributions(a).sum(axis=3)[0], ours)  # the default


# --- Ablation-CAM ---------------------------------------------------------------------------------

def test_pytorch_grad_cams_signed_denominator_by_hand(gap):
    """ablation_cam.py: (y_c - y_c^k) / y_c, on each image's lowest-scored class (y_c < 0: the
    signs flip against ours). For a GAP + Dense head, y_c - y_c^k = W[k, c] mean(A_k)."""
    model, images = gap.model, gap.images[:2]
    kernel, _ = model.get_layer("pred").get_weights()
    logits = gap.logits(images)
    classes = np.argmin(logits, axis=1)
    assert (logits[np.arange(2), classes] < 0).all()
    result = Engine(gap.loaded, ("conv2",), batch_size=2).run(images, classes, needs=("activations",))
    signed = channel_map(ablationcam.channel_weights, result,
                         Context(options=METHODS["ablationcam"].values(compat=PGC)))
    absolute = channel_map(ablationcam.channel_weights, result, Context(options=ablationcam.METHOD.values()))
    for i, c in enumerate(classes):
        drops = kernel[:, c] * result.activations[i].mean(axis=(0, 1))
        close(signed[i], result.activations[i] @ (drops / logits[i, c]))
        close(absolute[i], -signed[i])


def test_a_zero_class_score_gives_an_empty_map_where_pytorch_grad_cams_is_nan():
    """y_c = mean(A_0) - mean(A_1) = 0 exactly: pytorch-grad-cam's weights are inf or NaN, ours
    (signed) are 0 for that image alone; the absolute rule divides by 1e-6."""
    activations = np.zeros((2, 2, 2, 3), np.float32)
    activations[:, :, :, 0] = activations[:, :, :, 1] = activations[:, :, :, 2] = 1.0
    activations[1, :, :, 0] = 2.0  # image 1: y_c = 2 - 1 = 1
    kernel = np.array([[1.0], [-1.0], [0.0]])
    scores = lambda rows: (np.asarray(rows, np.float64).mean(axis=(1, 2)) @ kernel).astype(np.float32)
    signed = ablationcam.ablation_weights(activations, [0, 0], scores, denominator="signed")
    drops = np.array([[1.0, -1.0, 0.0], [2.0, -1.0, 0.0]])
    with np.errstate(divide="ignore", invalid="ignore"):
        theirs = np.float32(drops) / np.float32([[0.0], [1.0]])
    assert not np.isfinite(theirs[0]).any() and np.isfinite(theirs[1]).all()
    np.testing.assert_array_equal(signed[0], 0.0)
    np.testing.assert_allclose(signed[1], theirs[1], rtol=1e-6)
    assert (maps.weighted_sum(activations, signed)[0] == 0).all()
    absolute = ablationcam.ablation_weights(activations, [0, 0], scores)
    np.testing.assert_allclose(absolute[0], drops[0] / ablationcam.SCORE_FLOOR, rtol=1e-6)


# --- aug-smooth, multiply --------------------------------------------------------------------------

def gradcam_by_hand(model, image, cls):
    """relu(sum_k mean_ij(g_k) A_k) of tiny_model."""
    a, g, _ = tiny_by_hand(model, image, cls)
    return np.maximum(a @ g.mean(axis=(0, 1)), 0)


def test_multiply_views_by_hand(tiny):
    """pytorch-grad-cam's aug_smooth (ttach HorizontalFlip x Multiply[0.9, 1, 1.1]): each view is
    the batch times the factor, flipped or not; its Grad-CAM map, normalised to [0, 1], flipped
    back; the mean of the six. Every view explains the original view's top-1 class."""
    explainer = Explainer(tiny.loaded, "gradcam", layer="target", batch_size=3)
    smoothed = smoothing.augmentation_smoothed(explainer.compute, tiny.images, np.full(3, -1), mode="multiply")
    for i in range(3):
        cls = int(np.argmax(tiny_by_hand(tiny.model, tiny.images[i])[2]))
        assert smoothed.classes[i] == cls
        views = []
        for flip in (False, True):
            for factor in (0.9, 1.0, 1.1):
                view = tiny.images[i].astype(np.float64) * factor
                heat = gradcam_by_hand(tiny.model, view[:, ::-1] if flip else view, cls)
                heat = heat / heat.max()
                views.append(heat[:, ::-1] if flip else heat)
        close(smoothed.small_maps[i], np.mean(views, axis=0))
    zoomed = smoothing.augmentation_smoothed(explainer.compute, tiny.images, np.full(3, -1))
    assert np.abs(zoomed.small_maps - smoothed.small_maps).max() > 1e-3
    assert smoothing.AUG_MODES == ("zoom", "multiply")
    with pytest.raises(ValueError, match=r"^mode must be one of zoom, multiply. Received: mode='brightness'$"):
        smoothing.augmentation_smoothed(explainer.compute, tiny.images, np.full(3, -1), mode="brightness")


# --- what compat sets, and what wins ---------------------------------------------------------------

COMPAT_VALUES = [  # method, option, pytorch-grad-cam's value, tf-keras-vis's (None: ours), ours
    ("scorecam", "scorecam_score", "softmax-logits", "probability", "probability"),
    ("scorecam", "scorecam_upsample", "corners", "corners", "half-pixel"),
    ("scorecam", "scorecam_baseline", "none", "none", "none"),
    ("gradcam++", "gradcampp_alphas", "paper-eps", "normalised", "paper"),
    ("kpcacam", "kpca_kernel", "sigmoid", None, "rbf"),
    ("fem", "fem_weights", "fraction-above", None, "channel-mean"),
    ("ablationcam", "ablation_denominator", "signed", None, "absolute"),
]


@pytest.mark.parametrize("method, option, pgc, tkv, ours", COMPAT_VALUES)
def test_compat_sets_the_librarys_values_and_a_given_option_wins(method, option, pgc, tkv, ours):
    assert Explainer("demo-gap", method).options[option] == ours
    assert Explainer("demo-gap", method, compat=PGC).options[option] == pgc
    assert Explainer("demo-gap", method, compat=TKV).options[option] == (tkv or ours)
    other = next(v for v in METHODS[method].option(option).choices if v != pgc)
    assert Explainer("demo-gap", method, compat=PGC, **{option: other}).options[option] == other


def test_scorecam_compat_options():
    assert Explainer("demo-gap", "scorecam", compat=PGC).options == {
        "max_masks": None, "scorecam_baseline": "none", "scorecam_score": "softmax-logits",
        "scorecam_upsample": "corners"}
    given = Explainer("demo-gap", "scorecam", compat=PGC, scorecam_upsample="half-pixel", max_masks=4).options
    assert given["scorecam_upsample"] == "half-pixel" and given["scorecam_score"] == "softmax-logits"
    assert given["max_masks"] == 4


def test_methods_page_lists_each_choice_with_its_value():
    page = invoke_cli("methods", "scorecam")
    assert page.returncode == 0, page.stderr
    for line in ("--scorecam-score (scorecam_score=): probability|softmax-logits; default 'probability'.",
                 "--scorecam-upsample (scorecam_upsample=): half-pixel|corners; default 'half-pixel'.",
                 "[scorecam_score=softmax-logits]", "[scorecam_score=probability]", "[scorecam_baseline=none]"):
        assert line in page.stdout
    assert page.stdout.count("[scorecam_upsample=corners]") == 2
    kpca = invoke_cli("methods", "kpcacam").stdout
    assert "[kpca_kernel=sigmoid]" in kpca and "tf-keras-vis      not offered" in kpca


def test_a_compat_run_records_compat_and_the_option_values(saved_models, tmp_path):
    image = write_image(tmp_path / "in" / "a.png", (32, 32), seed=5)
    result = invoke_cli(image, "--model", saved_models["gap"], "--compat", "tf-keras-vis", "--method", "scorecam",
                        "--json", "-o", tmp_path / "out", "--save", "raw")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["compat"] == "tf-keras-vis"
    assert (out["scorecam_score"], out["scorecam_upsample"], out["scorecam_baseline"]) == (
        "probability", "corners", "none")
    raw = np.load(out["maps"][0]["outputs"]["raw"])
    api = Explainer(str(saved_models["gap"]), "scorecam", compat="tf-keras-vis", batch_size=1)([image])[0]
    np.testing.assert_allclose(raw, api.map * raw.max(), rtol=1e-4, atol=1e-5 * raw.max())
