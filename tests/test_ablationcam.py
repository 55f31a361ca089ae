"""Ablation-CAM (methods/ablationcam.py): the closed form on a GAP + Dense head, a hand-run
nonlinear head, the upper-graph step alone, memory groups and batches, max_masks, the |y_c| rule and
y_c = 0, and the refusal of a graph that cannot be cut at the target."""

import importlib.util

import numpy as np
import pytest
from conftest import channel_map, counting, gap_model, run_on_jax, set_fixed_weights, tiny_model

from gradcam_cli.explain import maps
from gradcam_cli.explain.batch import top_rank
from gradcam_cli.explain.engine import Engine
from gradcam_cli.explain.methods import Context, ablationcam
from gradcam_cli.models import loading


def _loaded(model, size):
    return loading.describe(model, model.name, (size, size), "none", None)


def _images(count, size, seed=3):
    return np.random.default_rng(seed).uniform(0, 1, (count, size, size, 3)).astype(np.float32)


def _close(ours, expected, tolerance=1e-5):
    scale = np.abs(expected).max()
    assert scale > 0
    np.testing.assert_allclose(ours, expected, rtol=0, atol=tolerance * scale)


@pytest.fixture(scope="module")
def gap(keras):
    """gap_model: 32x32x3 -> conv1 -> pool -> conv2 (16x16x16, the target) -> GAP -> Dense(3)."""
    model = gap_model(keras)
    return model, _loaded(model, 32), _images(3, 32)


def test_equals_the_closed_form_on_a_gap_dense_head(gap):
    """GAP + Dense: y_c^k = y_c - W[k, c] mean(A_k), so w_k = W[k, c] mean(A_k) / |y_c|; and the same
    from a numpy loop that zeroes each channel and runs the head by hand."""
    model, loaded, images = gap
    result = Engine(loaded, ("conv2",), batch_size=3).run(images, np.array([2, 0, top_rank(1)]), needs=("activations",))
    assert result.gradients is None  # gradient-free
    ours = channel_map(ablationcam.channel_weights, result, Context(options=ablationcam.METHOD.values()))
    assert ours.shape == (3, 16, 16) and ours.dtype == np.float32

    kernel, bias = [w.astype(np.float64) for w in model.get_layer("pred").get_weights()]
    activations = result.activations.astype(np.float64)
    means = activations.mean(axis=(1, 2))  # (B, K)
    scores = means @ kernel + bias
    closed, looped = np.zeros_like(ours, dtype=np.float64), np.zeros_like(ours, dtype=np.float64)
    for i, c in enumerate(result.classes):
        y = scores[i, c]
        closed[i] = np.tensordot(activations[i], kernel[:, c] * means[i] / abs(y), axes=([2], [0]))
        weights = np.zeros(activations.shape[-1])
        for k in range(activations.shape[-1]):
            ablated = activations[i].copy()
            ablated[:, :, k] = 0
            weights[k] = (y - (ablated.mean(axis=(0, 1)) @ kernel[:, c] + bias[c])) / abs(y)
        looped[i] = np.tensordot(activations[i], weights, axes=([2], [0]))
    assert result.classes[:2].tolist() == [2, 0]
    assert (scores[np.arange(3), result.classes] != 0).all()
    np.testing.assert_allclose(looped, closed, rtol=0, atol=1e-10 * np.abs(closed).max())
    for i in range(3):  # each image against its own scale: the classes' scores differ a lot
        _close(ours[i], closed[i])


def test_equals_a_hand_run_nonlinear_head(keras):
    """tiny_model at 'target': Conv1x1 + ReLU -> Flatten -> Dense above it, run by hand in numpy
    for each ablated channel; also against keras running the head as a model of its own."""
    model = tiny_model(keras)
    loaded = _loaded(model, 8)
    images = _images(3, 8, seed=7)
    result = Engine(loaded, ("target",), batch_size=2).run(images[:2], np.array([1, top_rank(1)]), needs=("activations",))
    ours = channel_map(ablationcam.channel_weights, result, Context(options=ablationcam.METHOD.values()))
    post_kernel, post_bias = [w.astype(np.float64) for w in model.get_layer("post").get_weights()]
    pred_kernel, pred_bias = [w.astype(np.float64) for w in model.get_layer("pred").get_weights()]

    def head(activations):  # (h, w, K) -> (C,) logits
        post = np.maximum(activations @ post_kernel[0, 0] + post_bias, 0)
        return post.reshape(-1) @ pred_kernel + pred_bias

    logits = keras.Model(model.get_layer("post").input, model.get_layer("pred").output)  # softmax: log gives logits
    activations = result.activations.astype(np.float64)
    expected = np.zeros((2, 8, 8))
    for i, c in enumerate(result.classes):
        y = head(activations[i])[c]
        probabilities = logits.predict(result.activations[i : i + 1], verbose=0)[0]
        np.testing.assert_allclose(np.log(probabilities) - np.log(probabilities).mean(),
                                   head(activations[i]) - head(activations[i]).mean(), atol=1e-5)
        weights = np.zeros(4)
        for k in range(4):
            ablated = activations[i].copy()
            ablated[:, :, k] = 0
            weights[k] = (y - head(ablated)[c]) / abs(y)
        assert (weights != 0).sum() >= 2
        expected[i] = np.tensordot(activations[i], weights, axes=([2], [0]))
    for i in range(2):
        _close(ours[i], expected[i])


def test_only_the_upper_graph_step_runs_after_the_forward_pass(gap):
    _, loaded, images = gap
    engine = Engine(loaded, ("conv2",), batch_size=3)
    result = engine.run(images, np.full(3, top_rank(1)), needs=("activations",))
    calls = counting(engine, "upper_scores_ablated")

    def refuse(*args, **kwargs):
        raise AssertionError("the whole network was run again")

    engine.raw_outputs = engine.run = engine._forward_only = engine.upper_scores = refuse
    channel_map(ablationcam.channel_weights, result, Context(options=ablationcam.METHOD.values()))
    assert sum(calls) == 3 * (1 + 16)  # per image: its unmodified activations, then each channel ablated


def test_rows_built_in_the_step_and_after_a_global_pooling_equal_the_copies(gap, keras):
    """The engine's routes (ablated rows built inside the upper-graph step; after a global pooling,
    pooled rows) give the scores of ablated copies built by hand and scored by upper_scores."""
    model, loaded, images = gap
    engine = Engine(loaded, ("conv2",), batch_size=3)
    assert engine._channel_pooling() is not None  # conv2 -> gap -> pred
    result = engine.run(images, np.array([0, 1, 2]), needs=("activations",))
    copies = ablationcam.ablation_weights(result.activations, result.classes, engine.upper_scores)
    pooled = ablationcam.ablation_weights(result.activations, result.classes, engine.upper_scores,
                                          ablated_scores=engine.upper_scores_ablated)
    np.testing.assert_allclose(pooled, copies, rtol=1e-5, atol=1e-6 * np.abs(copies).max())
    # a head that does not start with a global pooling: rows built inside the step
    tiny = _loaded(tiny_model(keras, softmax=False), 8)
    tiny_engine = Engine(tiny, ("target",), batch_size=2)
    assert tiny_engine._channel_pooling() is None
    x = np.random.default_rng(5).uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    tiny_result = tiny_engine.run(x, np.array([0, 2]), needs=("activations",))
    by_copies = ablationcam.ablation_weights(tiny_result.activations, tiny_result.classes, tiny_engine.upper_scores)
    in_step = ablationcam.ablation_weights(tiny_result.activations, tiny_result.classes, tiny_engine.upper_scores,
                                           ablated_scores=tiny_engine.upper_scores_ablated)
    np.testing.assert_allclose(in_step, by_copies, rtol=1e-5, atol=1e-6 * np.abs(by_copies).max())
    # row chunks of the memory budget do not change the scores (chunks of 1 row here)
    small = Engine(tiny, ("target",), batch_size=2, memory_budget=1)
    calls = counting(small, "upper_scores_ablated")
    assert small.upper_chunk == 1
    small_result = small.run(x, np.array([0, 2]), needs=("activations",))
    chunked = ablationcam.channel_weights(small_result, Context(options=ablationcam.METHOD.values()))
    np.testing.assert_allclose(chunked, in_step, rtol=1e-5, atol=1e-6 * np.abs(in_step).max())
    rows = ablationcam.ablated_channels(small_result.activations).sum(axis=1) + 1  # per image: itself, its channels
    assert calls == [int(rows.sum())] and small.traces["upper-ablated"] == 1


def test_groups_within_the_budget_and_batches_do_not_change_the_map(gap, monkeypatch):
    _, loaded, images = gap
    engine = Engine(loaded, ("conv2",), batch_size=3)
    result = engine.run(images, np.array([0, 1, 2]), needs=("activations",))
    whole = channel_map(ablationcam.channel_weights, result, Context(options=ablationcam.METHOD.values()))
    weights = lambda **kwargs: ablationcam.ablation_weights(result.activations, result.classes, engine.upper_scores,
                                                            multiple=engine.batch_size, **kwargs)
    calls = counting(engine, "upper_scores")
    row_bytes = result.activations[0].nbytes
    grouped = weights(budget_bytes=7 * row_bytes)  # 7 rows: groups of 6, the batch size x 2
    assert len(calls) == 9 and sum(calls) == 3 * 17 and all(size == 6 for size in calls[:-1])
    np.testing.assert_allclose(maps.weighted_sum(result.activations, grouped), whole, rtol=0,
                               atol=1e-5 * np.abs(whole).max())
    calls.clear()
    single = weights(budget_bytes=1)  # less than a row: one row at a time
    assert calls == [1] * (3 * 17)
    np.testing.assert_allclose(single, grouped, rtol=1e-6, atol=1e-7)

    alone_engine = Engine(loaded, ("conv2",), batch_size=1)
    for i in range(3):
        alone = channel_map(ablationcam.channel_weights, alone_engine.run(images[i : i + 1], [i], needs=("activations",)), Context(options=ablationcam.METHOD.values()))
        np.testing.assert_allclose(alone[0], whole[i], rtol=0, atol=1e-5 * np.abs(whole[i]).max())
    np.testing.assert_array_equal(channel_map(ablationcam.channel_weights, result, Context(options=ablationcam.METHOD.values())), whole)  # deterministic


def test_max_masks_ablates_the_n_channels_of_largest_l1_norm(gap):
    _, loaded, images = gap
    tinted = images * np.array([[1, 0.1, 0.1], [0.1, 1, 0.1], [0.1, 0.1, 1]], np.float32)[:, None, None, :]
    engine = Engine(loaded, ("conv2",), batch_size=3)
    result = engine.run(tinted, np.full(3, top_rank(1)), needs=("activations",))  # one colour each: other channels
    full_weights = ablationcam.ablation_weights(result.activations, result.classes, engine.upper_scores)
    calls = counting(engine, "upper_scores_ablated")
    n = 5
    kept = channel_map(ablationcam.channel_weights, result, Context(options=ablationcam.METHOD.values({"max_masks": n})))
    assert sum(calls) == 3 * (1 + n)
    norms = np.abs(result.activations).sum(axis=(1, 2))
    top = np.zeros_like(full_weights)
    for i in range(3):
        top[i, np.argsort(-norms[i])[:n]] = 1
    assert len({tuple(np.flatnonzero(row)) for row in top}) == 3  # each image its own channels
    expected = maps.weighted_sum(result.activations, full_weights * top)
    np.testing.assert_allclose(kept, expected, rtol=0, atol=1e-6 * np.abs(expected).max())
    full = channel_map(ablationcam.channel_weights, result, Context(options=ablationcam.METHOD.values()))
    assert not np.allclose(kept, full)
    np.testing.assert_array_equal(channel_map(ablationcam.channel_weights, result, Context(options=ablationcam.METHOD.values({"max_masks": 16}))), full)  # N = K: all
    np.testing.assert_array_equal(channel_map(ablationcam.channel_weights, result, Context(options=ablationcam.METHOD.values({"max_masks": 99}))), full)


def test_max_masks_ties_go_to_the_lower_channel():
    activations = np.ones((1, 2, 2, 4), np.float32)
    activations[0, :, :, 2] = -3.0  # the largest L1 norm, though negative
    assert ablationcam.ablated_channels(activations, 2).tolist() == [[True, False, True, False]]


@pytest.mark.parametrize("bad", [0, -3, 2.5, "4", True])
def test_max_masks_refuses_what_is_not_a_channel_count(bad):
    with pytest.raises(ValueError, match=f"Received: max_masks={bad!r}"):
        ablationcam.ablated_channels(np.ones((1, 4, 4, 3), np.float32), bad)


def _gap_dense_head(kernel, bias=0.0):
    """A head by hand: (N, h, w, K) -> (N, C) = mean over space @ kernel + bias, recording row counts."""
    calls = []

    def upper_scores(activations):
        calls.append(len(activations))
        return np.asarray(activations, np.float64).mean(axis=(1, 2)) @ kernel + bias

    return upper_scores, calls


def test_a_zero_score_divides_by_the_floor_and_a_negative_one_keeps_the_sign():
    """Channel means (1, 1, 2) and a zero channel; class 0 scores 1 - 1 = 0 exactly, class 1
    scores -1 + 0.5 - 2 = -2.5 (a class scored below 0), class 2 scores 2 + 2 = 4."""
    activations = np.zeros((1, 2, 2, 4), np.float32)
    activations[0, :, :, 0], activations[0, :, :, 1], activations[0, :, :, 2] = 1.0, 1.0, 2.0
    kernel = np.array([[1.0, -1.0, 2.0], [-1.0, 0.5, 0.0], [0.0, -1.0, 1.0], [5.0, 5.0, 5.0]])
    upper_scores, calls = _gap_dense_head(kernel)
    weights = np.concatenate([ablationcam.ablation_weights(activations, [c], upper_scores) for c in range(3)])
    # drops y_c - y_c^k = kernel[k, c] * mean(A_k); the all-zero channel 3 is not ablated: weight 0
    drops = kernel[:3] * np.array([1.0, 1.0, 2.0])[:, None]
    np.testing.assert_allclose(weights[0, :3], drops[:, 0] / ablationcam.SCORE_FLOOR, rtol=1e-6)
    np.testing.assert_allclose(weights[1, :3], drops[:, 1] / 2.5, rtol=1e-6)
    np.testing.assert_allclose(weights[2, :3], drops[:, 2] / 4.0, rtol=1e-6)
    assert (weights[:, 3] == 0).all() and np.isfinite(weights).all()
    assert calls == [4, 4, 4]  # the unmodified row and 3 ablated ones, per class
    assert weights[1, 0] < 0 < weights[1, 1]  # |y_c|: the channel supporting class 1 keeps a positive weight


def test_class_0_of_a_binary_model_gets_the_negated_map(keras):
    """One sigmoid unit: class 0 scores -z, so its drops and its weights are class 1's negated (|y_c|
    is the same). Divided by the signed y_c, the two classes would get the same map."""
    model = gap_model(keras, classes=1, activation="sigmoid", seed=4)
    loaded = _loaded(model, 32)
    assert loaded.head.kind == "binary"
    engine = Engine(loaded, ("conv2",), batch_size=2)
    images = _images(2, 32, seed=9)
    one = channel_map(ablationcam.channel_weights, engine.run(images, [1, 1], needs=("activations",)), Context(options=ablationcam.METHOD.values()))
    zero = channel_map(ablationcam.channel_weights, engine.run(images, [0, 0], needs=("activations",)), Context(options=ablationcam.METHOD.values()))
    np.testing.assert_allclose(zero, -one, rtol=0, atol=1e-6 * np.abs(one).max())


def test_an_image_of_all_zero_activations_is_not_scored(gap):
    _, loaded, images = gap
    engine = Engine(loaded, ("conv2",), batch_size=3)
    result = engine.run(images[:2], np.array([0, 1]), needs=("activations",))
    result.activations[1] = 0.0
    result.activations[0, :, :, 4] = 0.0
    calls = counting(engine, "upper_scores")
    weights = ablationcam.ablation_weights(result.activations, result.classes, engine.upper_scores)
    assert sum(calls) == 1 + 15  # image 0: unmodified and 15 channels; image 1: nothing
    assert (weights[1] == 0).all() and weights[0, 4] == 0
    assert channel_map(ablationcam.channel_weights, result, Context(options=ablationcam.METHOD.values()))[1].max() == 0


def _rejoining_model(keras):
    """input -> conv1 -> conv2 -> rejoin = conv2 + conv1 -> gap -> pred: conv1 crosses a cut at conv2."""
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    y = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(x)
    z = layers.GlobalAveragePooling2D(name="gap")(layers.Add(name="rejoin")([y, x]))
    outputs = layers.Dense(3, activation="softmax", name="pred")(z)
    return set_fixed_weights(keras.Model(inputs, outputs, name="rejoining"), seed=4, scale=0.4)


def test_a_graph_that_cannot_be_cut_at_the_target_runs_the_whole_model(keras):
    """conv1 crosses the cut at conv2 (rejoin = conv2 + conv1): each ablated row runs the whole
    model with conv2's channel k zeroed on the way. By hand: the logits of GAP(conv2(x) with channel
    k zeroed + conv1(x)) through the Dense kernel, then (y_c - y_c^k) / |y_c|."""
    model = _rejoining_model(keras)
    engine = Engine(_loaded(model, 8), ("conv2",), batch_size=2)
    images = _images(2, 8)
    result = engine.run(images, np.full(2, top_rank(1)), needs=("activations",))
    weights = ablationcam.channel_weights(result, Context(options=ablationcam.METHOD.values()))
    conv1, conv2 = model.get_layer("conv1"), model.get_layer("conv2")
    kernel, bias = model.get_layer("pred").get_weights()
    a1 = np.asarray(conv1(images))
    a2 = np.asarray(conv2(a1))
    logit = lambda a: (a + a1).mean(axis=(1, 2)) @ kernel + bias
    scores = logit(a2)
    expected = np.zeros((2, 4), np.float32)
    for k in range(4):
        ablated = a2.copy()
        ablated[..., k] = 0
        for i, c in enumerate(result.classes):
            if np.abs(a2[i, ..., k]).sum() > 0:
                expected[i, k] = (scores[i, c] - logit(ablated)[i, c]) / abs(scores[i, c])
    assert np.abs(expected).max() > 0
    _close(weights, expected, 1e-4)


def check_routes(keras):
    """The engine's two ablation routes against copies scored by upper_scores (both backends)."""
    for model, size, target in ((gap_model(keras), 32, ("conv2",)), (tiny_model(keras, softmax=False), 8, ("target",))):
        engine = Engine(_loaded(model, size), target, batch_size=2)
        x = np.random.default_rng(6).uniform(0, 1, (2, size, size, 3)).astype(np.float32)
        result = engine.run(x, np.array([0, 1]), needs=("activations",))
        copies = ablationcam.ablation_weights(result.activations, result.classes, engine.upper_scores)
        routed = ablationcam.channel_weights(result, Context(options=ablationcam.METHOD.values()))
        np.testing.assert_allclose(routed, copies, rtol=1e-5, atol=1e-6 * np.abs(copies).max())


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_the_ablation_routes_on_the_jax_backend():
    run_on_jax("test_ablationcam", "check_routes")
