"""The upper-graph step: class scores from given target-layer activations, running only the layers
above the target (Engine.upper_scores, graph.cut_above / run_above)."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import OFFLINE_ENV, gap_model, nested_model, set_fixed_weights, tiny_model

from gradcam_cli.explain.engine import Engine
from gradcam_cli.models import graph
from gradcam_cli.models.loading import describe


def loaded_for(model, size):
    return describe(model, model.name, (size, size), "none", None)


def images(count, size, seed=3):
    return np.random.default_rng(seed).uniform(0, 1, (count, size, size, 3)).astype("float32")


def rejoining_model(keras):
    """input -> conv1 -> conv2 -> rejoin = conv2 + conv1 -> gap -> pred (softmax)."""
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    y = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(x)
    z = layers.Add(name="rejoin")([y, x])
    z = layers.GlobalAveragePooling2D(name="gap")(z)
    outputs = layers.Dense(3, activation="softmax", name="pred")(z)
    return set_fixed_weights(keras.Model(inputs, outputs, name="rejoining"), seed=4, scale=0.4)


CASES = {
    "gap": (gap_model, 32, ("conv2",)),
    "tiny": (tiny_model, 8, ("target",)),
    "nested": (nested_model, 32, ("base", "b_out")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_upper_scores_of_the_activations_are_the_models_scores(keras, case):
    build, size, target = CASES[case]
    engine = Engine(loaded_for(build(keras), size), target, batch_size=2)
    x = images(2, size)
    result = engine.run(x, np.full(2, -1), needs=("activations",))
    expected = engine.scores(x)
    np.testing.assert_allclose(engine.upper_scores(result.activations), expected, rtol=1e-5, atol=1e-5)


def test_a_zeroed_channel_gives_the_hand_computed_scores(keras):
    model = gap_model(keras)
    engine = Engine(loaded_for(model, 32), ("conv2",), batch_size=2)
    activations = engine.run(images(2, 32), np.full(2, -1), needs=("activations",)).activations
    masked = activations.copy()
    masked[..., 5] = 0
    kernel, bias = [w.astype(np.float64) for w in model.get_layer("pred").get_weights()]
    hand = masked.astype(np.float64).mean(axis=(1, 2)) @ kernel + bias  # GAP, then Dense's logits
    np.testing.assert_allclose(engine.upper_scores(masked), hand, rtol=1e-5, atol=1e-5)
    assert not np.allclose(engine.upper_scores(masked), engine.upper_scores(activations))


def test_a_batch_that_is_not_a_multiple_of_the_batch_size_is_padded(keras):
    engine = Engine(loaded_for(nested_model(keras), 32), ("base", "b_out"), batch_size=2)
    x = images(5, 32)
    activations = np.concatenate([engine.run(x[i : i + 1], [-1], needs=("activations",)).activations for i in range(5)])
    np.testing.assert_allclose(engine.upper_scores(activations), engine.scores(x), rtol=1e-5, atol=1e-5)
    assert engine.upper_scores(activations[:0]).shape == (0, 2)


@pytest.mark.parametrize("case", sorted(CASES))
def test_layers_below_the_target_are_not_called(keras, case, monkeypatch):
    build, size, target = CASES[case]
    engine = Engine(loaded_for(build(keras), size), target, batch_size=2)
    activations = engine.run(images(2, size), np.full(2, -1), needs=("activations",)).activations
    called = []
    for kind in (keras.layers.Conv2D, keras.layers.MaxPooling2D, keras.layers.BatchNormalization,
                 keras.layers.ReLU, keras.layers.GlobalAveragePooling2D, keras.layers.Flatten):
        original = kind.call

        def counting(self, *args, _original=original, **kwargs):
            called.append(self.name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(kind, "call", counting)
    engine.upper_scores(activations)  # the first call traces the upper-graph step
    above = {path[-1] for path in graph.cut_above(engine.loaded.model, target).above}
    assert called  # the counting works: the layers above are called (the last one's call is replaced)
    assert set(called) <= above, called


def test_a_branch_rejoining_above_the_target_is_refused_with_the_layer(keras):
    loaded = loaded_for(rejoining_model(keras), 8)
    engine = Engine(loaded, ("conv2",), batch_size=2)
    activations = engine.run(images(2, 8), np.full(2, -1), needs=("activations",)).activations
    message = "the graph cannot be cut at 'conv2': layer 'rejoin' above it also reads 'conv1'"
    for _ in range(2):  # decided once, refused every time
        with pytest.raises(ValueError, match=message):
            engine.upper_scores(activations)
    # at the layer where the branch rejoins, the graph can be cut
    engine = Engine(loaded, ("rejoin",), batch_size=2)
    x = images(3, 8)
    activations = np.concatenate([engine.run(x[:2], [-1, -1], needs=("activations",)).activations,
                                  engine.run(x[2:], [-1], needs=("activations",)).activations])
    np.testing.assert_allclose(engine.upper_scores(activations), engine.scores(x), rtol=1e-5, atol=1e-5)


def test_the_targets_output_may_feed_several_layers_above(keras):
    """A residual block reading the target's own output twice (ResNet's conv5_block2_out feeds
    conv5_block3_1_conv and conv5_block3_add) can be cut at the target."""
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="block_out")(inputs)
    y = layers.Conv2D(4, 1, name="branch")(x)
    z = layers.Add(name="add")([x, y])
    outputs = layers.Dense(2, name="pred")(layers.GlobalAveragePooling2D(name="gap")(z))
    model = set_fixed_weights(keras.Model(inputs, outputs, name="residual"), seed=5)
    cut = graph.cut_above(model, ("block_out",))
    assert cut.above == {("branch",), ("add",), ("gap",), ("pred",)}
    engine = Engine(loaded_for(model, 8), ("block_out",), batch_size=2)
    x = images(2, 8)
    activations = engine.run(x, [-1, -1], needs=("activations",)).activations
    np.testing.assert_allclose(engine.upper_scores(activations), engine.scores(x), rtol=1e-5, atol=1e-5)


def test_cut_inside_a_nested_model_lists_the_outer_layers_above(keras):
    cut = graph.cut_above(nested_model(keras), ("base", "b_conv2"))
    assert cut.above == {("base", "b_bn"), ("base", "b_out"), ("gap",), ("pred",)}
    assert cut.containers == {("base",)}


def test_resnet50_is_cut_between_residual_blocks_not_inside_one(keras):
    """conv5_block2_out feeds both branches of the last block, which is fine; inside that block
    the shortcut from conv5_block2_out crosses the cut into conv5_block3_add."""
    model = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    outer = keras.Sequential([keras.Input((64, 64, 3)), model, keras.layers.GlobalAveragePooling2D(name="gap"),
                              keras.layers.Dense(2, name="pred")])
    assert graph.cut_above(outer, ("resnet50", "conv5_block3_out")).above == {("gap",), ("pred",)}
    assert ("resnet50", "conv5_block3_add") in graph.cut_above(outer, ("resnet50", "conv5_block2_out")).above
    with pytest.raises(ValueError) as error:
        graph.cut_above(outer, ("resnet50", "conv5_block3_2_conv"))
    assert str(error.value) == ("the graph cannot be cut at 'resnet50/conv5_block3_2_conv': layer "
                                "'resnet50/conv5_block3_add' above it also reads 'resnet50/conv5_block2_out', "
                                "which is computed below it, not from its output")


def test_a_shared_layer_or_an_output_not_above_is_refused(keras):
    layers = keras.layers
    inputs = keras.Input((8, 8, 4))
    shared = layers.Conv2D(4, 1, name="shared")
    x = shared(inputs)
    y = layers.Conv2D(4, 1, name="target")(x)
    z = shared(y)
    pred = layers.Dense(2, name="pred")(layers.GlobalAveragePooling2D(name="gap")(z))
    model = keras.Model(inputs, pred)
    with pytest.raises(ValueError, match="layer 'shared' is called both below and above it"):
        graph.cut_above(model, ("target",))
    x = layers.Conv2D(4, 1, name="first")(inputs)
    pred = layers.Dense(2, name="pred")(layers.GlobalAveragePooling2D(name="gap")(layers.Conv2D(4, 1, name="target")(x)))
    side = layers.Dense(2, name="side")(layers.GlobalAveragePooling2D(name="side_gap")(x))
    two = keras.Model(inputs, [pred, side])
    assert graph.cut_above(two, ("target",), graph.select_output(two, "pred")).above == {("gap",), ("pred",)}
    with pytest.raises(ValueError, match="the model's output 'side' does not depend on it"):
        graph.cut_above(two, ("target",), graph.select_output(two, "side"))


def test_another_output_computed_below_the_target_is_not_computed(keras):
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="first")(inputs)
    y = layers.Conv2D(4, 1, activation="relu", name="target")(x)
    pred = layers.Dense(3, activation="softmax", name="pred")(layers.GlobalAveragePooling2D(name="gap")(y))
    side = layers.Dense(2, name="side")(layers.GlobalAveragePooling2D(name="side_gap")(x))
    model = set_fixed_weights(keras.Model(inputs, {"side": side, "pred": pred}, name="two"), seed=6)
    loaded = describe(model, model.name, (8, 8), "none", None, output="pred")
    engine = Engine(loaded, ("target",), batch_size=2)
    x = images(2, 8)
    activations = engine.run(x, [-1, -1], needs=("activations",)).activations
    np.testing.assert_allclose(engine.upper_scores(activations), engine.scores(x), rtol=1e-5, atol=1e-5)


def test_wrongly_shaped_activations_are_refused(keras):
    engine = Engine(loaded_for(gap_model(keras), 32), ("conv2",), batch_size=2)
    with pytest.raises(ValueError, match="have shape"):
        engine.upper_scores(np.zeros((2, 8, 8, 3), np.float32))


JAX_CHECK = """
import numpy as np, keras, sys
sys.path.insert(0, {tests!r})
from conftest import nested_model
from gradcam_cli.explain.engine import Engine
from gradcam_cli.models.loading import describe
model = nested_model(keras)
engine = Engine(describe(model, model.name, (32, 32), "none", None), ("base", "b_out"), batch_size=2)
x = np.random.default_rng(3).uniform(0, 1, (3, 32, 32, 3)).astype("float32")
activations = np.concatenate([engine.run(x[:2], [-1, -1], needs=("activations",)).activations,
                              engine.run(x[2:], [-1], needs=("activations",)).activations])
np.testing.assert_allclose(engine.upper_scores(activations), engine.scores(x), rtol=1e-5, atol=1e-5)
print(keras.backend.backend(), "ok")
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_upper_scores_on_the_jax_backend():
    tests = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, **OFFLINE_ENV, KERAS_BACKEND="jax")
    result = subprocess.run([sys.executable, "-c", JAX_CHECK.format(tests=tests)], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "jax ok" in result.stdout


def test_the_sublayers_of_a_subclassed_layer_above_the_cut_run_as_it_does(keras):
    """conv2 -> a subclassed block (x + relu(LayerNorm(x)), its sublayers called by its own code)
    -> GAP -> Dense: the upper graph at conv2 runs the block's sublayers too, so its scores of
    conv2's activations are the model's scores."""
    from gradcam_cli.explain.batch import top_rank
    from gradcam_cli.explain.engine import Engine
    from gradcam_cli.models import loading

    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.norm = keras.layers.LayerNormalization(name="norm")
            self.dense = keras.layers.Dense(6, name="d1")

        def call(self, x):
            return x + keras.ops.relu(self.dense(self.norm(x)))

    keras.utils.set_random_seed(7)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="conv2")(inputs)
    x = Block(name="block")(x)
    outputs = keras.layers.Dense(4, name="pred")(keras.layers.GlobalAveragePooling2D()(x))
    loaded = loading.describe(keras.Model(inputs, outputs), "blocky", (8, 8), "none", None)
    assert ("block", "d1") in [info.path for info in loaded.layers]
    engine = Engine(loaded, ("conv2",), batch_size=2)
    images = np.random.default_rng(2).uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    result = engine.run(images, np.full(2, top_rank(1)), needs=("activations",))
    np.testing.assert_allclose(engine.upper_scores(result.activations), engine.scores(images), rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="never called"):
        class Unused(Block):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.spare = keras.layers.Dense(6, name="spare")

        y = Unused(name="unused")(keras.layers.Conv2D(6, 3, padding="same", name="c")(inputs))
        model = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(y)))
        loading.describe(model, "unused", (8, 8), "none", None).target_layer("unused/spare")
