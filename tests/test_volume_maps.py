"""Maps of volumes: trilinear resizing, Conv3D layers as targets, and every method on 5-D
activations (B, d1, d2, d3, K), computed by hand with numpy on a tiny Conv3D model."""

import cv2
import numpy as np
import pytest

from gradcam_cli.errors import GradcamError, ImageError, LayerError
from gradcam_cli.explain import maps
from gradcam_cli.explain.methods import METHODS

SHAPE = (8, 8, 6)  # the tiny model's input sides (d1, d2, d3), one channel


# -- trilinear resizing ----------------------------------------------------------------------------


def reference_trilinear(array, shape):
    """Trilinear resizing written voxel by voxel from torch's rule (align_corners=False): along
    each axis src = (dst + 0.5) * in / out - 0.5, taken as 0 below 0; the samples floor(src) and
    floor(src) + 1 (the last one at the upper edge), weighted 1 - t and t."""
    array = np.asarray(array, dtype=np.float64)
    out = np.zeros(tuple(shape) + array.shape[3:])

    def taps(dst, n_in, n_out):
        src = max((dst + 0.5) * n_in / n_out - 0.5, 0.0)
        low = min(int(np.floor(src)), n_in - 1)
        high = min(low + 1, n_in - 1)
        t = src - low
        return [(low, 1.0 - t), (high, t)]

    for i in range(shape[0]):
        for j in range(shape[1]):
            for k in range(shape[2]):
                total = 0.0
                for a, wa in taps(i, array.shape[0], shape[0]):
                    for b, wb in taps(j, array.shape[1], shape[1]):
                        for c, wc in taps(k, array.shape[2], shape[2]):
                            total = total + wa * wb * wc * array[a, b, c]
                out[i, j, k] = total
    return out


@pytest.mark.parametrize("source, target", [
    ((2, 3, 4), (5, 4, 7)),  # enlarging, non-cubic
    ((6, 5, 4), (3, 2, 3)),  # shrinking
    ((4, 7, 3), (9, 2, 3)),  # mixed, one axis kept
    ((1, 4, 2), (3, 4, 5)),  # a single slice spread
    ((5, 5, 5), (5, 5, 5)),  # unchanged
])
def test_resize_volume_is_the_half_pixel_trilinear_formula(source, target):
    rng = np.random.default_rng(sum(source) + sum(target))
    volume = rng.normal(size=source).astype(np.float32)
    resized = maps.resize_volume(volume, target)
    assert resized.shape == target and resized.dtype == np.float32
    np.testing.assert_allclose(resized, reference_trilinear(volume, target), rtol=1e-6, atol=1e-6)


def test_resize_volume_resizes_each_channel_alone():
    rng = np.random.default_rng(1)
    volume = rng.normal(size=(3, 4, 5, 2)).astype(np.float32)
    resized = maps.resize_volume(volume, (6, 3, 7))
    assert resized.shape == (6, 3, 7, 2)
    for channel in range(2):
        np.testing.assert_allclose(resized[..., channel], reference_trilinear(volume[..., channel], (6, 3, 7)),
                                   rtol=1e-6, atol=1e-6)


def test_resize_volume_hand_values_on_a_line():
    # 2 -> 4 along the first axis: src = -0.25 (0), 0.25, 0.75, 1.25 (the edge): 0, 2.5, 7.5, 10
    line = np.array([0.0, 10.0], np.float32).reshape(2, 1, 1)
    np.testing.assert_allclose(maps.resize_volume(line, (4, 1, 1)).ravel(), [0.0, 2.5, 7.5, 10.0], atol=1e-6)
    # 4 -> 2: src = 0.5, 2.5: the means of neighbours, no antialiasing
    line = np.array([0.0, 2.0, 4.0, 8.0], np.float32).reshape(1, 4, 1)
    np.testing.assert_allclose(maps.resize_volume(line, (1, 2, 1)).ravel(), [1.0, 6.0], atol=1e-6)


@pytest.mark.parametrize("kept", [0, 1, 2])
@pytest.mark.parametrize("sides", [(7, 9), (3, 2)])
def test_resize_volume_keeping_an_axis_is_cv2_bilinear_on_each_slice(kept, sides):
    """The 2-D maps' own resizing (cv2.INTER_LINEAR, half-pixel centres) is the volume's on each
    slice along an axis the resize keeps: enlarging and shrinking alike."""
    rng = np.random.default_rng(kept)
    volume = rng.uniform(size=(5, 4, 6)).astype(np.float32)
    target = list(sides)
    target.insert(kept, volume.shape[kept])
    resized = maps.resize_volume(volume, tuple(target))
    for index in range(volume.shape[kept]):
        plane = np.take(volume, index, axis=kept)
        expected = cv2.resize(plane, (sides[1], sides[0]), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(np.take(resized, index, axis=kept), expected, atol=1e-5)


@pytest.mark.parametrize("array, shape", [(np.zeros((4, 4)), (2, 2, 2)), (np.zeros((2, 2, 2)), (2, 2)),
                                          (np.zeros((2, 2, 2)), (0, 2, 2)), (np.zeros((2, 0, 2)), (2, 2, 2))])
def test_resize_volume_refuses_what_is_no_volume(array, shape):
    with pytest.raises(ValueError, match="resize_volume takes"):
        maps.resize_volume(array, shape)


def test_full_map_of_a_volume_is_resized_trilinearly_and_normalised():
    small = np.random.default_rng(3).uniform(size=(2, 3, 2)).astype(np.float32)
    heat, normalised, empty = maps.full_map(small, None, (5, 6, 7, 1))
    np.testing.assert_allclose(heat, maps.resize_volume(small, (5, 6, 7)), atol=0)
    np.testing.assert_allclose(normalised, heat / heat.max(), rtol=1e-6)
    assert not empty and normalised.shape == (5, 6, 7)


def test_weighted_sum_of_volumes():
    rng = np.random.default_rng(4)
    activations = rng.normal(size=(2, 3, 4, 5, 6)).astype(np.float32)
    weights = rng.normal(size=(2, 6)).astype(np.float32)
    expected = np.stack([sum(weights[b, k] * activations[b, ..., k] for k in range(6)) for b in range(2)])
    np.testing.assert_allclose(maps.weighted_sum(activations, weights), expected, rtol=1e-5, atol=1e-5)


# -- the tiny Conv3D model ---------------------------------------------------------------------------


def conv3d_model(keras, seed=0):
    """(8, 8, 6, 1) -> Conv3D(4) 'conv1' -> ReLU 'relu1' -> Conv3D(5) 'conv2' -> GAP3D 'gap' ->
    Dense(3, softmax) 'pred', fixed weights."""
    layers = keras.layers
    inputs = keras.Input(SHAPE + (1,))
    x = layers.Conv3D(4, 3, padding="same", name="conv1")(inputs)
    x = layers.ReLU(name="relu1")(x)
    x = layers.Conv3D(5, 3, padding="same", name="conv2")(x)
    x = layers.GlobalAveragePooling3D(name="gap")(x)
    outputs = layers.Dense(3, activation="softmax", name="pred")(x)
    model = keras.Model(inputs, outputs, name="conv3d")
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    return model


def describe_volume_model(model):
    """The LoadedModel of a model of volumes (its input_size the three sides), as loading.describe
    makes it."""
    from gradcam_cli.models import loading

    return loading.describe(model, model.name, SHAPE, "none", None)


@pytest.fixture(scope="module")
def volume(keras):
    model = conv3d_model(keras)
    return model, describe_volume_model(model)


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(7)
    return rng.normal(size=(2,) + SHAPE).astype(np.float32)


def activations_and_gradients(model, volumes, layer, classes):
    """Hand computation: the activations of `layer` ('relu1' or 'conv2') and the gradients of
    each sample's class logit (the Dense before its softmax) with respect to them, by a
    GradientTape over the layers above called one by one."""
    if keras_backend() != "tensorflow":
        pytest.skip("the hand computation's gradients use TensorFlow's GradientTape")
    import tensorflow as tf

    inputs = tf.constant(volumes[..., None])
    below = model.get_layer("relu1")(model.get_layer("conv1")(inputs))
    if layer == "conv2":
        below = model.get_layer("conv2")(below)
    with tf.GradientTape() as tape:
        tape.watch(below)
        x = below if layer == "conv2" else model.get_layer("conv2")(below)
        pooled = tf.reduce_mean(x, axis=(1, 2, 3))
        dense = model.get_layer("pred")
        logits = tf.matmul(pooled, dense.kernel) + dense.bias
        score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
    gradients = tape.gradient(score, below)
    return below.numpy().astype(np.float64), gradients.numpy().astype(np.float64), logits.numpy()


def keras_backend():
    import keras

    return keras.backend.backend()


def explained(loaded, volumes, method="gradcam", layer=None, **arguments):
    from gradcam_cli import Explainer

    return Explainer(loaded, method=method, layer=layer, batch_size=2, **arguments).maps(list(volumes))


def test_the_default_layer_is_the_last_conv3d(volume):
    _, loaded = volume
    assert loaded.default_layer == ("conv2",)
    by_name = {info.name: info for info in loaded.layers}
    assert by_name["conv2"].volumetric and by_name["conv2"].map_shape == SHAPE + (5,)
    assert not by_name["conv2"].spatial  # the 2-D property reads as before
    assert not by_name["gap"].mappable
    assert [info.name for info in loaded.target_layers] == ["conv1", "relu1", "conv2"]


@pytest.mark.parametrize("layer", ["conv2", "relu1"])
def test_gradcam_weights_are_the_mean_over_the_three_spatial_axes(volume, samples, layer):
    model, loaded = volume
    found = explained(loaded, samples, layer=layer)
    A, g, _ = activations_and_gradients(model, samples, layer, found.classes)
    weights = g.mean(axis=(1, 2, 3))
    expected = np.maximum(np.einsum("bxyzk,bk->bxyz", A, weights), 0.0)
    assert found.batch.small_maps.shape == (2,) + SHAPE
    np.testing.assert_allclose(found.batch.small_maps, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    assert expected.max() > 0


def test_layercam_and_hirescam_by_hand(volume, samples):
    model, loaded = volume
    layercam = explained(loaded, samples, "layercam", layer="relu1")
    A, g, _ = activations_and_gradients(model, samples, "relu1", layercam.classes)
    expected = np.maximum((np.maximum(g, 0.0) * A).sum(axis=-1), 0.0)
    np.testing.assert_allclose(layercam.batch.small_maps, expected, rtol=1e-4, atol=1e-5 * expected.max())
    hirescam = explained(loaded, samples, "hirescam", layer="relu1")
    expected = np.maximum((g * A).sum(axis=-1), 0.0)
    np.testing.assert_allclose(hirescam.batch.small_maps, expected, rtol=1e-4, atol=1e-5 * expected.max())


def test_cam_is_the_dense_kernel_column_times_the_activations(volume, samples):
    model, loaded = volume
    found = explained(loaded, samples, "cam")
    A, _, logits = activations_and_gradients(model, samples, "conv2", found.classes)
    kernel = np.asarray(model.get_layer("pred").kernel, np.float64)
    expected = np.maximum(np.einsum("bxyzk,kb->bxyz", A, kernel[:, found.classes]), 0.0)
    np.testing.assert_allclose(found.batch.small_maps, expected, rtol=1e-4, atol=1e-5 * expected.max())
    np.testing.assert_array_equal(found.classes, logits.argmax(axis=1))


def test_eigencam_is_the_first_principal_component_over_all_positions(volume, samples):
    model, loaded = volume
    found = explained(loaded, samples, "eigencam")
    A, _, _ = activations_and_gradients(model, samples, "conv2", found.classes)
    for b in range(len(samples)):
        positions = A[b].reshape(-1, A.shape[-1])  # 8 * 8 * 6 = 384 samples of 5 channels
        centred = positions - positions.mean(axis=0)
        projection = centred @ np.linalg.svd(centred, full_matrices=False)[2][0]
        mean = positions.mean(axis=1)
        if np.dot(projection - projection.mean(), mean - mean.mean()) < 0:
            projection = -projection
        expected = np.maximum(projection, 0.0).reshape(SHAPE)
        np.testing.assert_allclose(found.batch.small_maps[b], expected, rtol=1e-4, atol=1e-5 * expected.max())


def test_a_batch_equals_its_volumes_one_by_one(volume, samples):
    _, loaded = volume
    together = explained(loaded, samples, "gradcam++").batch.small_maps
    for b in range(len(samples)):
        alone = explained(loaded, samples[b : b + 1], "gradcam++").batch.small_maps[0]
        np.testing.assert_allclose(together[b], alone, rtol=1e-5, atol=1e-6)


def test_a_volume_of_another_shape_is_resized_both_ways(volume):
    from gradcam_cli import Explainer

    _, loaded = volume
    scan = np.random.default_rng(9).normal(size=(11, 5, 9)).astype(np.float32)
    explain = Explainer(loaded, method="gradcam", batch_size=2)
    (e,) = explain(scan)
    # the model saw the scan resized trilinearly to its input: the same map as the resized scan gives
    resized = maps.resize_volume(scan, SHAPE)
    np.testing.assert_allclose(e.small_map, explain.maps(resized).batch.small_maps[0], rtol=1e-5, atol=1e-6)
    # the map comes back at the scan's shape: the small map resized trilinearly, normalised
    assert e.small_map.shape == SHAPE and e.map.shape == scan.shape
    heat = maps.resize_volume(e.small_map, scan.shape)
    np.testing.assert_allclose(e.map, heat / heat.max(), rtol=1e-6, atol=1e-7)
    assert e.map.min() >= 0.0 and e.map.max() == pytest.approx(1.0)
    np.testing.assert_allclose(explain.maps(scan).on_image(0), e.map, atol=0)
    # a 4-axis volume (D1, D2, D3, C) is the same as its 3-axis one
    np.testing.assert_allclose(explain(scan[..., None])[0].small_map, e.small_map, atol=0)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_maps_a_volume_or_refuses_in_one_line(volume, samples, name):
    from gradcam_cli import Explainer

    _, loaded = volume
    method = METHODS[name]
    try:
        found = Explainer(loaded, method=name, batch_size=2).maps(list(samples))
    except GradcamError as error:
        message = str(error)
        assert not method.volumes, f"{name} declares it takes volumes, yet: {message}"
        assert "\n" not in message and name in message and "does not take volumes" in message
        return
    assert method.volumes, f"{name} does not declare that it takes volumes"
    for i in range(len(samples)):
        heat = found.on_image(i)
        assert heat.shape == SHAPE and np.isfinite(heat).all()
        assert heat.min() >= 0.0 and heat.max() <= 1.0
    assert found.batch.small_maps.shape == (2,) + SHAPE


def test_the_volume_methods_are_the_declared_ones():
    taking = {name for name, method in METHODS.items() if method.volumes}
    assert taking == {"gradcam", "cam", "gradcam++", "layercam", "xgradcam", "hirescam", "gradcam-elementwise",
                      "eigengradcam", "segeigencam", "eigencam", "kpcacam", "fem", "randomcam", "finercam",
                      "shapleycam", "scorecam", "ablationcam", "guided", "deconvnet", "smoothgrad",
                      "integrated-gradients", "fullgrad"}


def test_eigen_smoothing_and_the_strongest_channel_on_volumes(volume, samples):
    from gradcam_cli import Explainer

    _, loaded = volume
    smoothed = Explainer(loaded, eigen_smooth=True, batch_size=2).maps(list(samples)).batch.small_maps
    assert smoothed.shape == (2,) + SHAPE and np.isfinite(smoothed).all() and smoothed.max() > 0
    strongest = Explainer(loaded, batch_size=2).maps(list(samples), strongest=True)
    assert strongest.batch.small_maps.shape == (2,) + SHAPE


@pytest.mark.parametrize("arguments, message", [
    ({"aug_smooth": True}, "aug_smooth"),
    ({"crop": True}, "crop"),
    ({"layer": ["conv1", "conv2"]}, "several layers"),
    ({"target": "output:0"}, "target="),  # a 3-D segmenter's segment is taken (test_volume_segment.py)
])
def test_what_volumes_do_not_take_yet_is_refused_in_one_line(volume, samples, arguments, message):
    from gradcam_cli import Explainer

    _, loaded = volume
    with pytest.raises(GradcamError, match=message) as error:
        Explainer(loaded, batch_size=2, **arguments).maps(list(samples))
    assert "\n" not in str(error.value) and "volumes" in str(error.value)


@pytest.mark.parametrize("given, message", [
    ("scan.nii.gz", "given here as arrays"),
    (np.zeros(SHAPE, bool), "real-valued"),
    (np.zeros((8, 8), np.float32), "real-valued"),
    (np.zeros((8, 8, 6, 1, 1), np.float32), "real-valued"),
    (np.zeros((8, 0, 6), np.float32), "real-valued"),
    (np.zeros(SHAPE + (3,), np.float32), "1 channel"),
    (np.full(SHAPE, np.nan, np.float32), "NaN"),
])
def test_bad_volumes_are_refused_naming_their_index(volume, given, message):
    from gradcam_cli import Explainer

    _, loaded = volume
    with pytest.raises(ImageError, match=message) as error:
        Explainer(loaded, batch_size=2).maps(given)
    assert str(error.value).startswith("volume 0:")


def test_integer_volumes_are_taken_as_float32(volume, samples):
    _, loaded = volume
    scan = np.round(samples[0] * 100).astype(np.int16)
    ints = explained(loaded, [scan]).batch.small_maps
    floats = explained(loaded, [scan.astype(np.float32)]).batch.small_maps
    np.testing.assert_array_equal(ints, floats)


def test_a_layer_of_the_wrong_rank_is_refused(keras):
    """A 2-D layer in a model of volumes (and a volumetric one in a model of images) cannot be a
    map's target."""
    layers = keras.layers
    inputs = keras.Input(SHAPE + (1,))
    x = layers.Conv3D(3, 3, padding="same", name="conv")(inputs)
    flat = layers.Reshape((8, 8 * 6 * 3), name="slab")(x)  # (8, 48): no grid, and...
    x = layers.Reshape((8, 8, 18), name="planes")(flat)  # ...(8, 8, 18): a 2-D layer
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(2, name="pred")(x)
    loaded = describe_volume_model(keras.Model(inputs, outputs, name="mixed"))
    assert loaded.default_layer == ("conv",)
    with pytest.raises(LayerError, match="volumes, whose map needs a \\(d1, d2, d3, channels\\) layer"):
        loaded.target_layer("planes")


def test_cam_needs_global_average_pooling_3d_on_a_volume(volume):
    from gradcam_cli.models.heads import cam_classifier

    model, loaded = volume
    kernel, bias = cam_classifier(loaded.layers, ("conv2",))
    np.testing.assert_array_equal(kernel, np.asarray(model.get_layer("pred").kernel))
    with pytest.raises(ValueError, match="GlobalAveragePooling3D"):
        cam_classifier(loaded.layers, ("relu1",))
