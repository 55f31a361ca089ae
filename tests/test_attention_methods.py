"""The attention methods against hand computations: a ViT's forward pass written out in
TensorFlow from its layers' weights, with the attention probabilities computed by hand (query and
key projections, scaled products, softmax), then attention rollout (Abnar and Zuidema 2020) and
generic attention explainability (Chefer et al. 2021) in numpy."""

import numpy as np
import pytest

from gradcam_cli import Explainer
from gradcam_cli.errors import GradcamError
from gradcam_cli.models import loading

NAMES = ("a", "b", "c", "d")


def _vit(keras, **kwargs):
    from gradcam_cli.models.vit import vit

    keras.utils.set_random_seed(11)
    return vit(rescale=False, **kwargs)


def _images(size, count, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]


def _by_hand(keras, model, images, classes, depth, head, per_block=False):
    """The model's logits, each block's attention probabilities (B, H, N, N) and the gradients
    of the chosen classes' logits with respect to them, from a forward pass written out here.
    per_block: instead, for each block l the gradient of the head on block l's tokens (the final
    norm, the pooling, the classifier) with respect to block l's attention alone (LeGrad)."""
    import tensorflow as tf

    x = tf.constant(np.stack(images).astype(np.float32))
    embed = keras.Model(model.input, model.get_layer("position_embedding").output)
    layer = model.get_layer
    kernel, bias = layer("predictions").get_weights()
    probabilities, block_scores = [], []

    def head_score(tokens):
        final = layer("final_norm")(tokens)
        pooled = final[:, 0] if head == "class-token" else tf.reduce_mean(final, axis=1)
        logits = tf.matmul(pooled, kernel) + bias
        return logits, tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))

    with tf.GradientTape(persistent=True) as tape:
        tokens = embed(x)
        for block in range(1, depth + 1):
            y = layer(f"block{block}_norm1")(tokens)
            attention = layer(f"block{block}_attn")
            wq, bq = attention._query_dense.get_weights()
            wk, bk = attention._key_dense.get_weights()
            wv, bv = attention._value_dense.get_weights()
            wo, bo = attention._output_dense.get_weights()
            q = tf.einsum("bnd,dhk->bnhk", y, wq) + bq
            k = tf.einsum("bnd,dhk->bnhk", y, wk) + bk
            v = tf.einsum("bnd,dhk->bnhk", y, wv) + bv
            a = tf.nn.softmax(tf.einsum("bqhk,bshk->bhqs", q, k) / np.sqrt(wq.shape[-1]), axis=-1)
            tape.watch(a)
            probabilities.append(a)
            mixed = tf.einsum("bhqs,bshk->bqhk", a, v)
            tokens = tokens + tf.einsum("bqhk,hkd->bqd", mixed, wo) + bo
            z = layer(f"block{block}_norm2")(tokens)
            tokens = tokens + layer(f"block{block}_mlp2")(layer(f"block{block}_mlp1")(z))
            block_scores.append(head_score(tokens)[1])
        logits, picked = head_score(tokens)
    if per_block:
        gradients = [tape.gradient(score, a).numpy() for score, a in zip(block_scores, probabilities)]
    else:
        gradients = [tape.gradient(picked, a).numpy() for a in probabilities]
    return logits.numpy(), [a.numpy() for a in probabilities], gradients


def _numpy_rollout(attentions, fusion="mean"):
    result = np.eye(attentions[0].shape[-1])[None]
    for a in attentions:
        fused = getattr(np, fusion)(a.astype(np.float64), axis=1)
        augmented = fused + np.eye(fused.shape[-1])
        augmented /= augmented.sum(axis=-1, keepdims=True)
        result = augmented @ result
    return result


def _numpy_relevance(attentions, gradients):
    relevance = np.eye(attentions[0].shape[-1])[None].repeat(len(attentions[0]), axis=0)
    for a, g in zip(attentions, gradients):
        relevance = relevance + np.maximum(g.astype(np.float64) * a, 0).mean(axis=1) @ relevance
    return relevance


def _read(relevance, prefix, grid):
    rows = relevance[:, 0] if prefix else relevance.mean(axis=1)
    return rows[:, prefix:].reshape(-1, *grid)


CASES = [((32, 48), 2, "class-token"), ((32, 32), 0, "gap")]


@pytest.mark.parametrize("size,prefix,head", CASES)
@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
def test_rollout_equals_a_numpy_rollout_of_the_attention_by_hand(keras, size, prefix, head, fusion):
    model = _vit(keras, input_size=size, prefix=prefix, head=head)
    loaded = loading.describe(model, "vit", size, "none", NAMES)
    images = _images(size, 3)
    logits, attentions, _ = _by_hand(keras, model, images, [0, 0, 0], 3, head)
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(softmax / softmax.sum(axis=1, keepdims=True), model(np.stack(images).astype("float32")),
                               rtol=1e-4, atol=1e-6)  # the forward pass by hand is the model's
    maps = Explainer(loaded, "rollout", head_fusion=fusion, batch_size=2)(images)
    grid = (size[0] // 8, size[1] // 8)
    want = _read(_numpy_rollout(attentions, fusion), prefix, grid)
    for explanation, expected in zip(maps, want):
        assert explanation.small_map.shape == grid
        np.testing.assert_allclose(explanation.small_map, expected, rtol=1e-4, atol=1e-6)


def test_rollout_discards_the_lowest_entries_but_not_the_class_tokens_own(keras):
    from gradcam_cli.explain.methods.rollout import discard

    fused = np.array([[[0.1, 0.5, 0.4], [0.3, 0.3, 0.4], [0.2, 0.7, 0.1]]])
    kept = discard(fused, 0.5, prefix=1)  # 4 of the 8 entries outside [0, 0] go: the lowest four
    np.testing.assert_array_equal(kept, [[[0.1, 0.5, 0.4], [0.0, 0.0, 0.4], [0.0, 0.7, 0.0]]])
    model = _vit(keras)
    loaded = loading.describe(model, "vit", (32, 32), "none", NAMES)
    images = _images((32, 32), 2)
    _, attentions, _ = _by_hand(keras, model, images, [0, 0], 3, "class-token")
    result = None
    for a in attentions:
        fused = discard(a.astype(np.float64).mean(axis=1), 0.9, 1) + np.eye(17)
        fused /= fused.sum(axis=-1, keepdims=True)
        result = fused if result is None else fused @ result
    maps = Explainer(loaded, "rollout", discard_ratio=0.9)(images)
    for explanation, expected in zip(maps, result[:, 0, 1:].reshape(-1, 4, 4)):
        np.testing.assert_allclose(explanation.small_map, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("size,prefix,head", CASES)
def test_generic_attention_equals_the_relevance_by_hand(keras, size, prefix, head):
    model = _vit(keras, input_size=size, prefix=prefix, head=head)
    loaded = loading.describe(model, "vit", size, "none", NAMES)
    images = _images(size, 3, seed=2)
    maps = Explainer(loaded, "generic-attention", batch_size=2)(images, classes=[3])
    logits, attentions, gradients = _by_hand(keras, model, images, [3, 3, 3], 3, head)
    assert all(np.abs(g).max() > 0 for g in gradients)
    want = _read(_numpy_relevance(attentions, gradients), prefix, (size[0] // 8, size[1] // 8))
    assert want.max() > 0
    for explanation, expected in zip(maps, want):
        assert explanation.class_index == 3
        np.testing.assert_allclose(explanation.small_map, expected, rtol=1e-4, atol=1e-6 * expected.max())


def test_attention_methods_refuse_a_model_without_attention(keras):
    layers = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, name="conv")(inputs)
    model = keras.Model(inputs, layers.Dense(2)(layers.GlobalAveragePooling2D()(x)))
    loaded = loading.describe(model, "cnn", (16, 16), "none", ("a", "b"))
    for method in ("rollout", "generic-attention", "legrad"):  # not "choose a token layer": there is none
        with pytest.raises(GradcamError) as caught:
            Explainer(loaded, method)(_images((16, 16), 1))
        assert str(caught.value) == (
            f"{method} does not apply to cnn at layer conv: attention maps read a vision transformer's attention (its "
            "keras.layers.MultiHeadAttention layers), and cnn has no attention layer: choose a method for its layers' "
            "maps (`gradcam methods`)")


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("size,prefix,head", CASES)
def test_legrad_equals_each_blocks_own_gradient_by_hand(keras, depth, size, prefix, head):
    """LeGrad: block l's score is the head on block l's tokens; ReLU of its gradient with respect
    to block l's attention alone, mean over heads and queries, the prefix keys dropped, mean over
    blocks. On a 1-block model that is the class score's own gradient."""
    model = _vit(keras, input_size=size, prefix=prefix, head=head, depth=depth)
    loaded = loading.describe(model, "vit", size, "none", NAMES)
    images = _images(size, 3, seed=6)
    maps = Explainer(loaded, "legrad", batch_size=2)(images, classes=[2])
    _, attentions, gradients = _by_hand(keras, model, images, [2, 2, 2], depth, head, per_block=True)
    if depth == 1:
        _, _, plain = _by_hand(keras, model, images, [2, 2, 2], depth, head)
        np.testing.assert_allclose(gradients[0], plain[0], rtol=1e-5, atol=1e-9)
    per_block = [np.maximum(g.astype(np.float64), 0).mean(axis=(1, 2)) for g in gradients]
    want = np.mean(per_block, axis=0)[:, prefix:].reshape(-1, size[0] // 8, size[1] // 8)
    assert want.max() > 0
    for explanation, expected in zip(maps, want):
        assert explanation.class_index == 2
        np.testing.assert_allclose(explanation.small_map, expected, rtol=1e-4, atol=1e-6 * expected.max())
    last = Explainer(loaded, "legrad", legrad_blocks=1, batch_size=2)(images, classes=[2])
    only = per_block[-1][:, prefix:].reshape(-1, size[0] // 8, size[1] // 8)
    for explanation, expected in zip(last, only):
        np.testing.assert_allclose(explanation.small_map, expected, rtol=1e-4, atol=1e-6 * expected.max())

