"""Our Grad-CAM against an independent implementation, tf-keras-vis's Gradcam, on the same models and
batches (tf-keras-vis is a dev dependency; skipped where it is not installed)."""

import importlib.util

import numpy as np
import pytest

from gradcam_cli.evaluate import scenes as scene_maker
from gradcam_cli.explain.batch import top_rank
from gradcam_cli.explain.compute import compute_maps
from gradcam_cli.explain.engine import Engine
from gradcam_cli.files.images import prepare
from gradcam_cli.models import loading

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tf_keras_vis") is None,
                                reason="tf-keras-vis is not installed")


def scenes(loaded, count, seed):
    return [scene_maker.generate(i, seed, size=loaded.input_size[0]).image for i in range(count)]


def their_maps(model, inputs, classes, layer):
    """tf-keras-vis's Grad-CAM before upsampling and normalising: ReLU(sum_k alpha_k A_k) at the
    layer's resolution, of the class score with the output activation made linear."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    gradcam = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
    return np.asarray(gradcam(CategoricalScore(list(classes)), inputs, penultimate_layer=layer,
                              expand_cam=False, normalize_cam=False))


@pytest.mark.parametrize("name", ["demo-gap", "demo-vgg"])
def test_maps_equal_tf_keras_vis(keras, name):
    loaded = loading.load(name)
    inputs, _ = prepare(loaded, scenes(loaded, 3, seed=5))
    engine = Engine(loaded, loaded.default_layer, batch_size=3)
    ranks = [compute_maps(loaded, engine, inputs, np.full(3, top_rank(r))) for r in (1, 2)]
    for ours in ranks:
        # Each image explains a different class in one batch: a per-sample mix-up would show.
        theirs = their_maps(loaded.model, inputs, ours.classes, loaded.default_layer[-1])
        assert theirs.shape == ours.small_maps.shape
        scale = np.abs(ours.small_maps).max()
        assert scale > 0
        np.testing.assert_allclose(ours.small_maps, theirs, rtol=0, atol=1e-5 * scale)
    assert not np.array_equal(ranks[0].classes, ranks[1].classes)
    # tf-keras-vis leaves the model's own output activation alone afterwards (clone=True), like us
    assert loaded.model.layers[-1].activation.__name__ == "softmax"


@pytest.mark.slow
def test_maps_equal_tf_keras_vis_on_vgg16(keras):
    """The same on a keras.applications model (random weights, nothing downloaded)."""
    loaded = loading.load("vgg16", weights="none")
    rng = np.random.default_rng(9)
    inputs, _ = prepare(loaded, [rng.integers(0, 256, (240, 260, 3), dtype=np.uint8) for _ in range(2)])
    engine = Engine(loaded, loaded.default_layer, batch_size=2)
    ours = compute_maps(loaded, engine, inputs, [3, 700])
    theirs = their_maps(loaded.model, inputs, [3, 700], "block5_conv3")
    scale = np.abs(ours.small_maps).max()
    assert scale > 0
    np.testing.assert_allclose(ours.small_maps, theirs, rtol=0, atol=1e-4 * scale)
