"""Score-CAM (methods/scorecam.py): a hand computation on a tiny fixed-weight model, agreement with
tf-keras-vis's Scorecam on the demo models, max_masks, the memory groups, batches and determinism."""

import importlib.util
import warnings

import numpy as np
import pytest
from conftest import channel_map, counting, gap_model

from gradcam_cli.evaluate import scenes as scene_maker
from gradcam_cli.explain import maps
from gradcam_cli.explain.batch import top_rank
from gradcam_cli.explain.engine import Engine
from gradcam_cli.explain.methods import Context, scorecam
from gradcam_cli.files.images import prepare
from gradcam_cli.models import loading

needs_tf_keras_vis = pytest.mark.skipif(importlib.util.find_spec("tf_keras_vis") is None,
                                        reason="tf-keras-vis is not installed")


def _loaded(model, size):
    return loading.describe(model, model.name, (size, size), "none", None)


def _bilinear_matrix(small, large):
    """(large, small): half-pixel-centre bilinear interpolation, the source clamped at the edges."""
    matrix = np.zeros((large, small))
    for x in range(large):
        source = min(max((x + 0.5) * small / large - 0.5, 0.0), small - 1)
        x0 = int(np.floor(source))
        x1 = min(x0 + 1, small - 1)
        matrix[x, x0] += 1 - (source - x0)
        matrix[x, x1] += source - x0
    return matrix


@pytest.fixture(scope="module")
def tiny(keras):
    """gap_model: 32x32x3 -> conv1 -> pool -> conv2 (16x16x16, the target) -> GAP -> Dense(3, softmax),
    two random images and an all-zero one (every masked input of it is the baseline 0)."""
    model = gap_model(keras)
    rng = np.random.default_rng(3)
    images = np.concatenate([rng.uniform(0, 1, (2, 32, 32, 3)), np.zeros((1, 32, 32, 3))]).astype(np.float32)
    return model, _loaded(model, 32), images


@pytest.mark.parametrize("baseline", ["none", "zero"])
def test_equals_a_hand_computation_on_a_tiny_model(keras, tiny, baseline):
    """The default (no baseline: the authors' code) and the paper's Eq. 4 (minus the zero input's
    probability), each by hand."""
    model, loaded, images = tiny
    result = Engine(loaded, ("conv2",), batch_size=3).run(images, np.array([2, 0, top_rank(1)]), needs=("activations",))
    options = {} if baseline == "none" else {"scorecam_baseline": "zero"}  # none is the default
    ours = channel_map(scorecam.channel_weights, result, Context(options=scorecam.METHOD.values(options)))

    # By hand: activations from a plain keras.Model, numpy masks, model.predict's own softmax.
    activations = keras.Model(model.inputs, model.get_layer("conv2").output).predict(images, verbose=0)
    np.testing.assert_allclose(result.activations, activations, rtol=1e-5, atol=1e-6)
    up = _bilinear_matrix(16, 32)
    zero = model.predict(np.zeros((1, 32, 32, 3), np.float32), verbose=0)[0] if baseline == "zero" else np.zeros(3)
    expected = np.zeros((3, 16, 16))
    for i, c in enumerate(result.classes):
        weights = np.zeros(16)
        for k in range(16):
            upsampled = up @ activations[i, :, :, k] @ up.T  # Up(A_k), 32x32
            span = upsampled.max() - upsampled.min()
            mask = (upsampled - upsampled.min()) / span if span > 0 else np.zeros_like(upsampled)
            masked = (images[i] * mask[:, :, None]).astype(np.float32)
            if span > 0:  # a constant channel is not scored: weight 0 (Eq. 4: exactly; none: the authors' rule)
                weights[k] = model.predict(masked[None], verbose=0)[0, c] - zero[c]
        expected[i] = np.tensordot(activations[i], weights, axes=([2], [0]))
    assert result.classes[:2].tolist() == [2, 0]
    scale = np.abs(expected).max()
    assert scale > 0
    if baseline == "zero":
        assert np.abs(expected[2]).max() == 0  # the zero image: X o H_k = X_b, every weight 0
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5 * scale)


def test_constant_channels_get_zero_masks_and_are_not_scored(tiny):
    _, loaded, images = tiny
    engine = Engine(loaded, ("conv2",), batch_size=3)
    result = engine.run(images[:2], np.array([0, 1]), needs=("activations",))
    activations = result.activations.copy()
    activations[0, :, :, 3] = 0.0  # a dead channel
    activations[1, :, :, 5] = 2.5  # a constant non-zero one: min-max gives 0/0, a zero mask
    kept = scorecam.kept_channels(activations)
    assert not kept[0, 3] and not kept[1, 5] and kept.sum() > 20
    calls = counting(engine, "probabilities")
    weights = scorecam.scorecam_weights(activations, result.inputs, result.classes, engine.probabilities)
    assert sum(calls) == kept.sum()  # one masked input per non-constant channel (no baseline: the default)
    assert (weights[~kept] == 0).all() and (weights[kept] != 0).all()
    constant = np.full((4, 4, 2), 3.0, np.float32)
    np.testing.assert_array_equal(scorecam.masks(constant, (8, 8)), np.zeros((2, 8, 8, 1)))


def test_upsampling_is_half_pixel_bilinear_for_any_channel_count():
    channels = np.random.default_rng(4).normal(size=(3, 5, 300)).astype(np.float32)  # cv2 takes 128 at a time
    expected = np.einsum("Yy,yxk,Xx->YXk", _bilinear_matrix(3, 12), channels, _bilinear_matrix(5, 20))
    np.testing.assert_allclose(scorecam.bilinear(channels, (12, 20)), expected, rtol=0, atol=1e-5)


def scenes(loaded, count, seed=5):
    return [scene_maker.generate(i, seed, size=loaded.input_size[0]).image for i in range(count)]


def _zoom(channels, size):
    """tf-keras-vis's Up: scipy.ndimage.zoom, order 1, corners aligned, edges 'nearest'."""
    from scipy.ndimage import zoom

    factors = (size[0] / channels.shape[0], size[1] / channels.shape[1], 1)
    return zoom(channels, factors, order=1, mode="nearest")


def their_maps(model, inputs, classes, layer, max_n=None):
    """tf-keras-vis's Score-CAM at the layer's resolution before its ReLU. ReplaceToLinear, so
    that the softmax it applies to the model's output gives the probabilities: on the softmax
    model itself it would take a softmax of probabilities."""
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    explain = Scorecam(model, model_modifier=ReplaceToLinear(), clone=True)
    with warnings.catch_warnings():  # its model.predict passes a list to a one-input model
        warnings.simplefilter("ignore", UserWarning)
        return np.asarray(explain(CategoricalScore(list(classes)), inputs, penultimate_layer=layer, max_N=max_n,
                                  activation_modifier=None, expand_cam=False, normalize_cam=False))


def their_definition(result, max_masks=None):
    """Our code run with tf-keras-vis's definition: its Up (scipy zoom) and no baseline (its weight
    is f_c(X o H_k), our default). Left as it is: its (max - min + 1e-7) denominator, a relative
    1e-7 at these scales."""
    engine = result.engine
    weights = scorecam.scorecam_weights(result.activations, result.inputs, result.classes, engine.probabilities,
                                        max_masks=max_masks, upsample=_zoom)
    return maps.weighted_sum(result.activations, weights)


@needs_tf_keras_vis
@pytest.mark.parametrize("name", ["demo-gap", "demo-vgg"])
def test_agrees_with_tf_keras_vis(keras, name):
    loaded = loading.load(name)
    inputs, _ = prepare(loaded, scenes(loaded, 3))
    engine = Engine(loaded, loaded.default_layer, batch_size=3)
    layer = loaded.default_layer[-1]
    top = engine.run(inputs, np.full(3, top_rank(1)), needs=("activations",)).classes
    assert len(set(top.tolist())) == 3  # three classes in one batch: a per-image mix-up would show
    by_class = []
    for codes in (top, (top + 1) % loaded.num_classes):  # each image's top class, then another one
        result = engine.run(inputs, codes, needs=("activations",))
        theirs = their_maps(loaded.model, inputs, result.classes, layer)
        scale = np.abs(theirs).max()
        assert scale > 0
        # Their definition reproduced in our code: equal to float32 round-off (measured 2.5e-7 of the scale).
        np.testing.assert_allclose(their_definition(result), theirs, rtol=0, atol=1e-5 * scale)
        ours = channel_map(scorecam.channel_weights, result, Context(options=scorecam.METHOD.values()))  # the default: no baseline
        by_class.append(ours)
        # the paper's form is the default minus f_c(0) times the scored channels' sum
        paper = channel_map(scorecam.channel_weights, result, Context(options=scorecam.METHOD.values({"scorecam_baseline": "zero"})))
        baseline = engine.probabilities(np.zeros((1,) + inputs.shape[1:], np.float32))[0, result.classes]
        kept = scorecam.kept_channels(result.activations)
        np.testing.assert_allclose(paper + maps.weighted_sum(result.activations, baseline[:, None] * kept), ours,
                                   rtol=0, atol=1e-5 * max(1.0, float(np.abs(ours).max())))
        if codes is not top:
            continue
        # Ours differs from theirs by the upsampling alone. For the top classes (measured: at most
        # 0.3% of the batch's scale, correlation >= 0.966 per image); not for the others, whose
        # probabilities under every mask are in the softmax's tail (1e-9 to 1e-35), where the
        # masks' upsampling changes them by large factors (correlation down to 0.2).
        unbased = ours
        assert np.abs(unbased - theirs).max() < 0.02 * scale
        for i in range(3):
            assert np.corrcoef(unbased[i].ravel(), theirs[i].ravel())[0, 1] > 0.95
    for i in range(3):  # another class, another map
        assert np.abs(by_class[0][i] - by_class[1][i]).max() > 0.05 * np.abs(by_class[0][i]).max()


@needs_tf_keras_vis
def test_max_masks_agrees_with_tf_keras_vis_max_n_on_one_image(keras):
    """One image: tf-keras-vis keeps the union of the batch's top-N channels for every image, so
    only a batch of one has the same channels as our per-image choice."""
    loaded = loading.load("demo-gap")
    inputs, _ = prepare(loaded, scenes(loaded, 1, seed=8))
    result = Engine(loaded, loaded.default_layer, batch_size=1).run(inputs, [top_rank(1)], needs=("activations",))
    theirs = their_maps(loaded.model, inputs, result.classes, loaded.default_layer[-1], max_n=6)
    np.testing.assert_allclose(their_definition(result, max_masks=6), theirs, rtol=0,
                               atol=1e-5 * np.abs(theirs).max())


def test_max_masks_scores_only_n_masks(keras):
    loaded = loading.load("demo-gap")
    inputs, _ = prepare(loaded, scenes(loaded, 3))
    engine = Engine(loaded, loaded.default_layer, batch_size=3)
    result = engine.run(inputs, np.full(3, top_rank(1)), needs=("activations",))
    full = channel_map(scorecam.channel_weights, result, Context(options=scorecam.METHOD.values()))
    weights = scorecam.scorecam_weights(result.activations, result.inputs, result.classes, engine.probabilities)
    calls = counting(engine, "probabilities")
    n = 6
    kept = channel_map(scorecam.channel_weights, result, Context(options=scorecam.METHOD.values({"max_masks": n})))
    assert calls == [3 * n]  # n masks per image, in one call (no baseline: the default)
    # By hand: each image's n channels of highest spatial variance keep their weights, the rest 0.
    variance = result.activations.var(axis=(1, 2))
    top = np.zeros_like(weights)
    for i in range(3):
        top[i, np.argsort(-variance[i])[:n]] = 1
    assert (variance[top == 1] > 0).all()  # none of them constant: all n are scored
    assert len({tuple(np.flatnonzero(row)) for row in top}) == 3  # each image its own channels
    expected = maps.weighted_sum(result.activations, weights * top)
    np.testing.assert_allclose(kept, expected, rtol=0, atol=1e-6 * np.abs(expected).max())
    assert not np.allclose(kept, full)
    k = result.activations.shape[-1]
    np.testing.assert_array_equal(channel_map(scorecam.channel_weights, result, Context(options=scorecam.METHOD.values({"max_masks": k}))), full)  # N = K: all


@pytest.mark.parametrize("bad", [0, -3, 2.5, "4", True])
def test_max_masks_refuses_what_is_not_a_channel_count(bad):
    with pytest.raises(ValueError, match=f"Received: max_masks={bad!r}"):
        scorecam.kept_channels(np.random.default_rng(0).normal(size=(1, 4, 4, 3)), bad)


def test_masks_go_in_groups_within_the_budget(tiny, monkeypatch):
    _, loaded, images = tiny
    engine = Engine(loaded, ("conv2",), batch_size=3)
    result = engine.run(images, np.array([0, 1, 2]), needs=("activations",))
    whole = channel_map(scorecam.channel_weights, result, Context(options=scorecam.METHOD.values()))
    calls = counting(engine, "probabilities")
    input_bytes = images[0].nbytes
    monkeypatch.setattr(scorecam, "MASK_BUDGET_BYTES", 7 * input_bytes)  # 7 inputs: groups of 6, the batch size x 2
    grouped = channel_map(scorecam.channel_weights, result, Context(options=scorecam.METHOD.values()))
    total = scorecam.kept_channels(result.activations).sum()  # no baseline input: the default
    assert len(calls) > 1 and sum(calls) == total and all(size == 6 for size in calls[:-1])
    np.testing.assert_allclose(grouped, whole, rtol=0, atol=1e-7 * np.abs(whole).max())


def test_a_batch_equals_its_images_one_by_one_and_is_deterministic(keras):
    loaded = loading.load("demo-vgg")
    inputs, _ = prepare(loaded, scenes(loaded, 3, seed=11))
    engine = Engine(loaded, loaded.default_layer, batch_size=3)
    result = engine.run(inputs, np.full(3, top_rank(1)), needs=("activations",))
    together = channel_map(scorecam.channel_weights, result, Context(options=scorecam.METHOD.values()))
    assert together.shape == (3, 8, 8) and together.dtype == np.float32
    np.testing.assert_array_equal(channel_map(scorecam.channel_weights, result, Context(options=scorecam.METHOD.values())), together)
    alone_engine = Engine(loaded, loaded.default_layer, batch_size=1)
    for i in range(3):
        alone = channel_map(scorecam.channel_weights, alone_engine.run(inputs[i : i + 1], [top_rank(1)], needs=("activations",)), Context(options=scorecam.METHOD.values()))
        np.testing.assert_allclose(alone[0], together[i], rtol=0, atol=1e-5 * (np.abs(together[i]).max() + 1e-12))
