"""The methods that take volumes beyond Grad-CAM's family: Score-CAM (trilinear masks), Ablation-CAM
on 3-D layers, guided backprop, deconvnet and Guided Grad-CAM, SmoothGrad, Integrated Gradients,
FullGrad; each computed by hand with numpy (and TensorFlow's GradientTape for the gradients) on a
tiny Conv3D model built here, then on demo-volume and the sample scan of a sphere. The methods that
cannot take volumes say why, in one line."""

from pathlib import Path

import numpy as np
import pytest

from gradcam_cli.errors import GradcamError
from gradcam_cli.explain import maps
from gradcam_cli.explain.methods import METHODS, Context, ablationcam, scorecam

SHAPE = (6, 6, 4)  # the tiny model's input sides, one channel
LAYER_SHAPE = (3, 3, 2)  # 'relu2': conv2's stride 2
SAMPLES = Path(__file__).resolve().parents[1] / "sample_images"


def tiny_model(keras, seed=3):
    """(6, 6, 4, 1) -> Conv3D(3) 'conv1' -> ReLU 'relu1' -> Conv3D(2, stride 2) 'conv2' -> ReLU 'relu2'
    (3, 3, 2, 2) -> GAP3D 'gap' -> Dense(3, softmax) 'pred', fixed weights."""
    layers = keras.layers
    inputs = keras.Input(SHAPE + (1,))
    x = layers.Conv3D(3, 3, padding="same", name="conv1")(inputs)
    x = layers.ReLU(name="relu1")(x)
    x = layers.Conv3D(2, 3, strides=2, padding="same", name="conv2")(x)
    x = layers.ReLU(name="relu2")(x)
    x = layers.GlobalAveragePooling3D(name="gap")(x)
    outputs = layers.Dense(3, activation="softmax", name="pred")(x)
    model = keras.Model(inputs, outputs, name="tiny3d")
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.1, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def tiny(keras):
    from gradcam_cli.models import loading

    model = tiny_model(keras)
    return model, loading.describe(model, model.name, SHAPE, "none", None)


@pytest.fixture(scope="module")
def samples():
    return np.random.default_rng(11).uniform(0.0, 1.0, size=(2,) + SHAPE).astype(np.float32)


def numpy_of(tensor):
    from keras import ops

    return np.asarray(ops.convert_to_numpy(tensor), dtype=np.float64)


def upper_logits(model, activations, layer):
    """The class logits (the Dense before its softmax) from `layer`'s activations, by the layers
    above it called one by one: the model cut at the layer, by hand."""
    above = {"relu1": ["conv2", "relu2"], "relu2": []}[layer]
    x = np.asarray(activations, np.float32)
    for name in above:
        x = model.get_layer(name)(x)
    pooled = numpy_of(model.get_layer("gap")(x))
    dense = model.get_layer("pred")
    return pooled @ numpy_of(dense.kernel) + numpy_of(dense.bias)


def activations_of(model, volumes, layer):
    x = np.asarray(volumes, np.float32)[..., None]
    for name in ["conv1", "relu1", "conv2", "relu2"][: {"relu1": 2, "relu2": 4}[layer]]:
        x = model.get_layer(name)(x)
    return numpy_of(x)


def logits_of(model, volumes):
    return upper_logits(model, activations_of(model, volumes, "relu1"), "relu1")


def batch_result(loaded, layer, volumes, needs):
    from gradcam_cli.explain.engine import Engine

    engine = Engine(loaded, (layer,), batch_size=2)
    return engine.run(np.asarray(volumes, np.float32)[..., None], np.array([-1] * len(volumes)), needs=needs)


def explained(loaded, volumes, method, **arguments):
    from gradcam_cli import Explainer

    return Explainer(loaded, method=method, batch_size=2, **arguments).maps(list(volumes))


# -- Score-CAM ----------------------------------------------------------------------------------------


def reference_corners(array, shape):
    """Trilinear resizing with the corners aligned, voxel by voxel (torch's align_corners=True):
    along each axis src = dst (in - 1) / (out - 1) (0 when out is 1), the samples floor(src) and
    floor(src) + 1 (the last at the upper edge), weighted 1 - t and t."""
    array = np.asarray(array, dtype=np.float64)
    out = np.zeros(tuple(shape) + array.shape[3:])

    def taps(dst, n_in, n_out):
        src = dst * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        low = min(int(np.floor(src)), n_in - 1)
        return [(low, 1.0 - (src - low)), (min(low + 1, n_in - 1), src - low)]

    for i in range(shape[0]):
        for j in range(shape[1]):
            for k in range(shape[2]):
                for a, wa in taps(i, array.shape[0], shape[0]):
                    for b, wb in taps(j, array.shape[1], shape[1]):
                        for c, wc in taps(k, array.shape[2], shape[2]):
                            out[i, j, k] = out[i, j, k] + wa * wb * wc * array[a, b, c]
    return out


@pytest.mark.parametrize("source, target", [((2, 3, 2), (4, 5, 3)), ((3, 3, 2), (6, 6, 4)), ((4, 2, 3), (2, 5, 1))])
def test_corners_upsampling_is_align_corners_trilinear(source, target):
    rng = np.random.default_rng(sum(target))
    channels = rng.normal(size=source + (2,)).astype(np.float32)
    resized = scorecam.trilinear_corners(channels, target)
    assert resized.shape == target + (2,) and resized.dtype == np.float32
    np.testing.assert_allclose(resized, reference_corners(channels, target), rtol=1e-6, atol=1e-6)
    # the corners are kept exactly; 2 -> 3 along an axis puts the mean in the middle
    np.testing.assert_allclose(resized[0, 0, 0], channels[0, 0, 0], atol=1e-6)
    line = np.array([0.0, 10.0], np.float32).reshape(2, 1, 1, 1)
    np.testing.assert_allclose(scorecam.trilinear_corners(line, (3, 1, 1)).ravel(), [0.0, 5.0, 10.0], atol=1e-6)
    # unlike half-pixel centres: 2 -> 4 is 0, 2.5, 7.5, 10 there, 0, 3.33, 6.67, 10 here
    np.testing.assert_allclose(scorecam.trilinear_corners(line, (4, 1, 1)).ravel(), [0, 10 / 3, 20 / 3, 10], atol=1e-5)


@pytest.mark.parametrize("upsample", ["half-pixel", "corners"])
def test_scorecam_weights_are_the_masked_inputs_probabilities_by_hand(tiny, samples, upsample):
    """Each of the 2 channels of 'relu2' (3, 3, 2) upsampled trilinearly to (6, 6, 4) (half-pixel:
    maps.resize_volume; corners: align_corners=True), min-max normalised, multiplied with the input,
    and scored by the model: its class probability is the channel's weight."""
    model, loaded = tiny
    values = METHODS["scorecam"].values({"scorecam_upsample": upsample})
    result = batch_result(loaded, "relu2", samples, METHODS["scorecam"].needs)
    weights = scorecam.channel_weights(result, Context(options=values))
    A = activations_of(model, samples, "relu2")
    assert A.shape == (2,) + LAYER_SHAPE + (2,)
    expected = np.zeros((2, 2))
    for b in range(2):
        for k in range(2):
            channel = A[b, ..., k]
            up = maps.resize_volume(channel, SHAPE) if upsample == "half-pixel" else reference_corners(channel, SHAPE)
            assert up.max() > up.min()
            mask = (up - up.min()) / (up.max() - up.min())
            probabilities = numpy_of(model(np.asarray(samples[b] * mask, np.float32)[None, ..., None]))[0]
            expected[b, k] = probabilities[result.classes[b]]
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-6)
    found = explained(loaded, samples, "scorecam", layer="relu2", scorecam_upsample=upsample)
    hand = np.maximum(np.einsum("bxyzk,bk->bxyz", A, expected), 0.0)
    np.testing.assert_allclose(found.batch.small_maps, hand, rtol=1e-4, atol=1e-6)


def test_scorecam_groups_its_masks_within_the_budget(tiny, samples):
    """Masked volumes scored a few at a time (a budget of 3 volumes, groups of 2) give the same
    weights as all at once."""
    model, loaded = tiny
    result = batch_result(loaded, "relu2", samples, METHODS["scorecam"].needs)
    engine = result.engine
    args = (result.activations, result.inputs, result.classes, engine.probabilities)
    whole = scorecam.scorecam_weights(*args, upsample=scorecam.trilinear)
    volume_bytes = int(np.prod(SHAPE)) * 4
    grouped = scorecam.scorecam_weights(*args, upsample=scorecam.trilinear, budget_bytes=3 * volume_bytes, multiple=2)
    np.testing.assert_allclose(grouped, whole, rtol=1e-6, atol=1e-7)


# -- Ablation-CAM -------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["relu2", "relu1"])  # after it: the pooling (rows built pooled), or a Conv3D
def test_ablationcam_weights_are_the_relative_drops_by_hand(tiny, samples, layer):
    model, loaded = tiny
    result = batch_result(loaded, layer, samples, METHODS["ablationcam"].needs)
    weights = ablationcam.channel_weights(result, Context(options=METHODS["ablationcam"].values()))
    A = activations_of(model, samples, layer)
    logits = upper_logits(model, A, layer)
    expected = np.zeros((2, A.shape[-1]))
    for b in range(2):
        c = result.classes[b]
        for k in range(A.shape[-1]):
            ablated = A[b : b + 1].copy()
            ablated[..., k] = 0.0
            expected[b, k] = (logits[b, c] - upper_logits(model, ablated, layer)[0, c]) / abs(logits[b, c])
    assert np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(weights, expected, rtol=1e-4, atol=1e-6)
    found = explained(loaded, samples, "ablationcam", layer=layer)
    hand = np.maximum(np.einsum("bxyzk,bk->bxyz", A, expected), 0.0)
    np.testing.assert_allclose(found.batch.small_maps, hand, rtol=1e-4, atol=1e-6 * max(1.0, hand.max()))


def test_ablation_by_the_whole_model_equals_the_upper_graph_on_volumes(tiny, samples):
    """Where the graph cannot be cut (not here, but the route is the same), the whole model runs with
    the 3-D layer's channel zeroed as the forward pass goes through it: the same scores."""
    _, loaded = tiny
    result = batch_result(loaded, "relu1", samples, METHODS["ablationcam"].needs)
    images, channels = np.array([0, 0, 1, 1, 1]), np.array([-1, 2, -1, 0, 1])
    whole = ablationcam.whole_model_scores(result.engine, result.inputs)(result.activations, images, channels)
    upper = result.engine.upper_scores_ablated(result.activations, images, channels)
    np.testing.assert_allclose(whole, upper, rtol=1e-5, atol=1e-5)
    assert not np.allclose(whole[0], whole[1])


def test_ablated_channels_rank_volumes_by_their_whole_grid():
    activations = np.zeros((1, 2, 2, 2, 3), np.float32)
    activations[0, 1, 1, 1, 0] = 1.0  # channel 0: one voxel of 1
    activations[0, :, :, 1, 2] = 0.5  # channel 2: four voxels of 0.5, L1 2
    np.testing.assert_array_equal(ablationcam.ablated_channels(activations), [[True, False, True]])
    np.testing.assert_array_equal(ablationcam.ablated_channels(activations, max_masks=1), [[False, False, True]])


# -- guided backprop, deconvnet, Guided Grad-CAM ----------------------------------------------------


def hand_backprop_gradients(model, volumes, classes, rule):
    """d logit_c / d input through the model's ReLUs the `rule` way, by hand with TensorFlow:
    'plain' the true gradient, 'guided' passes a gradient where both it and the forward input are
    positive, 'deconvnet' where the gradient is positive."""
    if __import__("keras").backend.backend() != "tensorflow":
        pytest.skip("the hand computation's gradients use TensorFlow's GradientTape")
    import tensorflow as tf

    @tf.custom_gradient
    def relu(x):
        def backward(g):
            if rule == "guided":
                return g * tf.cast(x > 0, g.dtype) * tf.cast(g > 0, g.dtype)
            if rule == "deconvnet":
                return g * tf.cast(g > 0, g.dtype)
            return g * tf.cast(x > 0, g.dtype)

        return tf.nn.relu(x), backward

    inputs = tf.constant(np.asarray(volumes, np.float32)[..., None])
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        x = relu(model.get_layer("conv1")(inputs))
        x = relu(model.get_layer("conv2")(x))
        dense = model.get_layer("pred")
        logits = tf.matmul(tf.reduce_mean(x, axis=(1, 2, 3)), dense.kernel) + dense.bias
        score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
    return tape.gradient(score, inputs).numpy().astype(np.float64)


@pytest.mark.parametrize("method, rule", [("guided", "guided"), ("deconvnet", "deconvnet")])
def test_backprop_gradients_of_volumes_and_guided_gradcam_by_hand(tiny, samples, method, rule):
    model, loaded = tiny
    found = explained(loaded, samples, method, layer="relu2")
    gradients = found.batch.input_gradients
    assert gradients.shape == (2,) + SHAPE + (1,)
    expected = hand_backprop_gradients(model, samples, found.classes, rule)
    scale = np.abs(expected).max()
    assert scale > 0
    np.testing.assert_allclose(gradients, expected, rtol=1e-4, atol=1e-5 * scale)
    gradcam_maps = explained(loaded, samples, "gradcam", layer="relu2").batch.small_maps
    np.testing.assert_allclose(found.batch.small_maps, gradcam_maps, rtol=1e-6, atol=1e-7)
    for i in range(2):
        upsampled = np.maximum(maps.resize_volume(gradcam_maps[i], SHAPE), 0.0)
        product = gradients[i] * (upsampled / upsampled.max())[..., None]
        np.testing.assert_allclose(found.batch.gradient_times_map(i), product, rtol=1e-5, atol=1e-7)
        saliency = np.abs(product).max(axis=-1)
        np.testing.assert_allclose(found.at_input(i), saliency, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(found.on_image(i), saliency / saliency.max(), rtol=1e-5, atol=1e-6)


def test_guided_saliency_goes_onto_a_volume_of_another_shape():
    gradient = np.random.default_rng(2).normal(size=SHAPE + (2,)).astype(np.float32)
    heat, empty = maps.saliency_map(gradient, None, (9, 5, 7))
    expected = maps.resize_volume(np.abs(gradient).max(axis=-1), (9, 5, 7))
    np.testing.assert_allclose(heat, expected / expected.max(), rtol=1e-6)
    assert not empty and heat.shape == (9, 5, 7)


# -- SmoothGrad and Integrated Gradients -------------------------------------------------------------


def test_smoothgrad_without_noise_is_the_plain_gradients_saliency(tiny, samples):
    model, loaded = tiny
    found = explained(loaded, samples, "smoothgrad", samples=3, noise=0.0)
    plain = hand_backprop_gradients(model, samples, found.classes, "plain")
    expected = np.abs(plain).max(axis=-1)
    assert found.batch.small_maps.shape == (2,) + SHAPE and expected.max() > 0
    np.testing.assert_allclose(found.batch.small_maps, expected, rtol=1e-4, atol=1e-5 * expected.max())
    noisy = explained(loaded, samples, "smoothgrad", samples=3, noise=0.2).batch.small_maps
    assert not np.allclose(noisy, found.batch.small_maps)  # the noise reaches the voxels


def test_integrated_gradients_are_complete_on_volumes(tiny, samples):
    """sum over voxels and channels of the attributions = f(x) - f(0) (the class logit), to the
    trapezoid rule's error with 256 steps; the map is their sum over channels."""
    from gradcam_cli.explain.engine import Engine
    from gradcam_cli.explain.methods.input_attribution import integrated_gradients

    model, loaded = tiny
    found = explained(loaded, samples, "integrated-gradients", steps=256)
    classes = found.classes
    engine = Engine(loaded, loaded.default_layer, batch_size=2)
    attributions, residuals = integrated_gradients(engine, samples[..., None], classes, 256)
    assert attributions.shape == (2,) + SHAPE + (1,)
    rows = np.arange(2)
    gaps = logits_of(model, samples)[rows, classes] - logits_of(model, np.zeros_like(samples))[rows, classes]
    assert np.abs(gaps).min() > 1e-2
    np.testing.assert_allclose(attributions.sum(axis=(1, 2, 3, 4)), gaps, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(residuals, attributions.sum(axis=(1, 2, 3, 4)) - gaps, atol=1e-4)
    assert all(abs(d["completeness_residual"]) <= 1e-3 * max(1.0, abs(g)) for d, g in zip(found.batch.details, gaps))
    np.testing.assert_allclose(found.batch.small_maps, np.maximum(attributions.sum(axis=-1), 0.0), rtol=1e-5,
                               atol=1e-7)


def test_fullgrad_of_a_volume_by_hand(tiny, samples):
    """FullGrad on volumes: |input gradient x input| plus each Conv3D's |bias gradient|, each
    min-max normalised over the three axes per channel, the layers' resized trilinearly."""
    if __import__("keras").backend.backend() != "tensorflow":
        pytest.skip("the hand computation's gradients use TensorFlow's GradientTape")
    import tensorflow as tf

    model, loaded = tiny
    found = explained(loaded, samples, "fullgrad")
    inputs = tf.constant(samples[..., None])
    conv1, conv2, dense = model.get_layer("conv1"), model.get_layer("conv2"), model.get_layer("pred")
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        z1 = conv1(inputs)
        tape.watch(z1)
        z2 = conv2(tf.nn.relu(z1))
        tape.watch(z2)
        logits = tf.matmul(tf.reduce_mean(tf.nn.relu(z2), axis=(1, 2, 3)), dense.kernel) + dense.bias
        score = tf.reduce_sum(tf.gather(logits, found.classes, axis=1, batch_dims=1))
    terms = [(tape.gradient(score, inputs).numpy() * samples[..., None], None)]
    terms += [(tape.gradient(score, z).numpy() * numpy_of(layer.bias), layer) for z, layer in ((z1, conv1), (z2, conv2))]

    def psi(term):
        term = np.abs(np.asarray(term, np.float64))
        low, high = term.min(axis=(0, 1, 2)), term.max(axis=(0, 1, 2))
        return np.where(high > low, (term - low) / np.where(high > low, high - low, 1.0), 0.0).sum(axis=-1)

    for b in range(2):
        total = sum(maps.resize_volume(psi(term[b]), SHAPE) for term, _ in terms)
        expected = total - total.min()
        np.testing.assert_allclose(found.batch.small_maps[b], expected, rtol=1e-4, atol=1e-4)


# -- demo-volume and the sample scan -------------------------------------------------------------------


@pytest.fixture(scope="module")
def scan():
    pytest.importorskip("nibabel")
    from gradcam_cli.evaluate import volume_scenes
    from gradcam_cli.files.volumes import read_volume

    return read_volume(SAMPLES / "synthetic_sphere.nii.gz").array, volume_scenes.generate(2, seed=1).mask


@pytest.fixture(scope="module")
def demo(keras):
    from gradcam_cli import load_model

    return load_model("demo-volume")


def test_scorecam_and_guided_gradcam_of_the_sample_scan_sit_on_the_sphere(demo, scan):
    from gradcam_cli import Explainer

    volume, mask = scan
    (explained,) = Explainer(demo, method="scorecam")([volume])
    assert explained.label == "sphere" and explained.map.shape == mask.shape
    assert mask.reshape(-1)[int(np.argmax(explained.map))]
    assert explained.map[mask].sum() / explained.map.sum() >= 3 * mask.mean()
    guided = Explainer(demo, method="guided").maps([volume])
    heat = guided.on_image(0)  # the saliency of the Guided Grad-CAM product, on the scan
    assert heat.shape == mask.shape and guided.batch.input_gradients.shape == (1,) + mask.shape + (1,)
    assert mask.reshape(-1)[int(np.argmax(heat))]
    assert heat[mask].sum() / heat.sum() >= 3 * mask.mean()


# Fewer samples, steps and masks than the defaults: each method once on the scan, quickly.
QUICK = {"smoothgrad": {"samples": 4}, "integrated-gradients": {"steps": 8}, "guided": {}, "scorecam": {"max_masks": 8},
         "ablationcam": {"max_masks": 8}}


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_maps_the_sample_scan_or_says_why_not(demo, scan, name):
    from gradcam_cli import Explainer

    volume, _ = scan
    method = METHODS[name]
    if not method.volumes:
        with pytest.raises(GradcamError) as error:
            Explainer(demo, method=name).maps([volume])
        message = str(error.value)
        assert "\n" not in message and message.startswith(f"{name} does not take volumes")
        assert method.no_volumes and message.endswith(method.no_volumes)
        return
    found = Explainer(demo, method=name, **QUICK.get(name, {})).maps([volume])
    heat = found.on_image(0)
    assert heat.shape == volume.shape[:3] and np.isfinite(heat).all() and heat.max() <= 1.0 and heat.min() >= 0.0
    assert found.batch.small_maps.ndim == 4 and np.isfinite(found.batch.small_maps).all()


def test_the_refusals_name_their_reason():
    refused = {name: method.no_volumes for name, method in METHODS.items() if not method.volumes}
    assert set(refused) == {"rollout", "generic-attention", "legrad", "dilated", "dilated-no-pooling", "sess",
                            "refinecam"}
    for name in ("rollout", "generic-attention", "legrad"):
        assert "image transformer's attention" in refused[name]
    assert "dilated copy of a 2-D network" in refused["dilated"] == refused["dilated-no-pooling"]
    assert "slides windows" in refused["sess"] and "several layers" in refused["refinecam"]


def test_a_batch_of_volumes_is_cut_to_the_activation_budget(tiny, samples, monkeypatch):
    """The engine pads a short batch to the batch size, so a model of volumes runs batches that
    fit VOLUME_MEMORY_BUDGET: its per-volume activations counted by hand, the batch is the budget
    over them, at least 1, at most what was asked; the maps do not depend on it."""
    from gradcam_cli.api import Explainer
    from gradcam_cli.models import precision

    _, loaded = tiny
    by_hand = 4 * sum(int(np.prod(info.shape)) for info in loaded.layers if info.mappable)
    assert precision.activation_bytes(loaded) == by_hand

    def batch(requested):
        return Explainer(loaded, "gradcam", batch_size=requested).build().engines[0].batch_size

    assert batch(16) == 16  # a small model: the whole batch fits the default budget
    monkeypatch.setattr(precision, "VOLUME_MEMORY_BUDGET", 3.5 * by_hand)
    assert (batch(16), batch(2)) == (3, 2)
    cut = [e.map for e in Explainer(loaded, "gradcam", batch_size=16)(list(samples))]
    monkeypatch.setattr(precision, "VOLUME_MEMORY_BUDGET", 1)
    assert batch(16) == 1
    alone = [e.map for e in Explainer(loaded, "gradcam", batch_size=16)(list(samples))]
    for a, b in zip(cut, alone):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
