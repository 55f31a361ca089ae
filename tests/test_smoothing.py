"""Test-time augmentation (--aug-smooth), eigen smoothing (--eigen-smooth), maps averaged over
several layers (--layer a --layer b) and any method on a dilated copy (dilated --method): the
geometry by hand, each against the plain maps it is built from, and through the command."""

import json

import numpy as np
import pytest
from conftest import conv3x3_same, invoke_cli, tiny_model, write_image

from gradcam_cli import Explainer
from gradcam_cli.errors import GradcamError
from gradcam_cli.evaluate import scenes
from gradcam_cli.explain import maps, smoothing
from gradcam_cli.explain.compute import MapBatch
from gradcam_cli.explain.methods import METHODS
from gradcam_cli.explain.methods.pca import eigen_smooth
from gradcam_cli.models import loading


def ramp(height, width, a=0.3, b=-0.2, c=5.0):
    """A linear function of position: bilinear interpolation reproduces it exactly."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    return (a * x + b * y + c).astype(np.float32)


@pytest.mark.parametrize("flip,zoom", smoothing.VIEWS)
def test_a_view_restored_is_the_original_where_the_view_sees_it(flip, zoom):
    original = ramp(24, 32)[None]
    view = smoothing.augment(original[..., None], flip, zoom)[..., 0]
    restored, coverage = smoothing.restore(view, flip, zoom)
    seen = coverage > 0.05
    np.testing.assert_allclose((restored[seen] / coverage[seen]), original[seen], rtol=0, atol=0.35)  # edge blend
    inside = coverage > 1 - 1e-6
    assert inside.mean() > 0.7  # a 1.1 zoom loses its border only (1 - 1/1.1^2 of it, and the edge pixels)
    if zoom <= 1.0:  # the view shows all of the original
        assert inside.all()
    # exact away from the edge: a 0.9 view's outermost pixels blend in its reflected border
    inside[:, [0, -1], :] = inside[:, :, [0, -1]] = False
    np.testing.assert_allclose(restored[inside], original[inside], rtol=0, atol=1e-4)


def test_the_zoom_is_about_the_centre_by_hand():
    image = np.zeros((1, 9, 9, 1), np.float32)
    image[0, 6, 4, 0] = 1.0  # 2 pixels below the centre (4, 4)
    view = smoothing.augment(image, False, 2.0)[0, :, :, 0]
    # out(x) = in(c + (x - c) / 2): the dot now lies 4 pixels below the centre, spread by bilinear sampling
    assert np.unravel_index(np.argmax(view), view.shape) == (8, 4)
    flipped = smoothing.augment(image, True, 1.0)[0, :, :, 0]
    assert flipped[6, 4] == 1.0 and flipped.sum() == 1.0  # column 4 is its own mirror
    image[0, 6, 1, 0] = 2.0
    assert smoothing.augment(image, True, 1.0)[0, 6, 7, 0] == 2.0  # column 1 -> 9 - 1 - 1


def equivariant(inputs, codes):
    """A perfectly equivariant "method": the map is the first input channel itself."""
    count = len(inputs)
    return MapBatch(small_maps=np.maximum(inputs[..., 0], 0), classes=np.asarray(codes),
                             scores=np.zeros((count, 3)), probabilities=np.zeros((count, 3)),
                             weighted_sums=inputs[..., 0])


def bowl(height, width, curvature):
    """Highest at the centre pixel (a fixed point of every view, so every view's peak is the
    same), and so gently curved that bilinear sampling is exact to 1e-5 of the peak."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    return (10.0 - curvature * ((x - (width - 1) / 2) ** 2 + (y - (height - 1) / 2) ** 2)).astype(np.float32)


def test_an_equivariant_map_averages_to_itself():
    inputs = np.stack([bowl(21, 29, 1e-4)[..., None], bowl(21, 29, 2e-4)[..., None]])
    smoothed = smoothing.augmentation_smoothed(equivariant, inputs, np.array([0, 1]))
    expected = smoothing.unit_peak(inputs[..., 0])
    inner = (slice(None), slice(1, -1), slice(1, -1))  # see above: the outermost pixels blend the border
    # 1e-4 of the peak: bilinear sampling of the bowl's curvature near the edge, where views blend in
    np.testing.assert_allclose(smoothed.small_maps[inner], expected[inner], rtol=0, atol=1e-4)
    centre = (slice(None), slice(5, -5), slice(5, -5))
    np.testing.assert_allclose(smoothed.small_maps[centre], expected[centre], rtol=0, atol=2e-5)


def test_every_view_explains_the_original_views_class():
    seen = []

    def compute(inputs, codes):
        seen.append(np.asarray(codes).copy())
        batch = equivariant(inputs, codes)
        batch.classes = np.where(np.asarray(codes) < 0, 2, codes)  # top-1 resolves to class 2
        return batch

    smoothing.augmentation_smoothed(compute, np.ones((2, 8, 8, 1), np.float32), np.array([-1, 0]))
    assert len(seen) == len(smoothing.VIEWS) == 6
    assert seen[0].tolist() == [-1, 0] and all(codes.tolist() == [2, 0] for codes in seen[1:])


@pytest.fixture(scope="module")
def tiny(keras):
    model = tiny_model(keras, softmax=False)
    return loading.describe(model, "tiny", (8, 8), "none", None)


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(4).uniform(0, 1, (3, 8, 8, 3)).astype(np.float32)


def test_aug_smooth_by_hand_and_batch_equals_one_by_one(tiny, batch):
    """Through an Explainer: the average of the six views' plain maps, restored, by hand."""
    plain = Explainer(tiny, "gradcam", layer="target", batch_size=3)
    smooth = Explainer(tiny, "gradcam", layer="target", batch_size=3, aug_smooth=True)
    classes = plain.compute(batch, [-1, -1, -1]).classes
    total = weight = 0
    for flip, zoom in smoothing.VIEWS:
        view = smoothing.augment(batch, flip, zoom)
        restored, coverage = smoothing.restore(smoothing.unit_peak(plain.compute(view, classes).small_maps), flip,
                                               zoom)
        total, weight = total + restored, weight + coverage
    result = smooth.compute(batch, [-1, -1, -1])
    np.testing.assert_allclose(result.small_maps, total / weight, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result.classes, classes)
    np.testing.assert_allclose(result.scores, plain.compute(batch, classes).scores, rtol=1e-6)
    single = Explainer(tiny, "gradcam", layer="target", batch_size=1, aug_smooth=True)
    for i in range(3):
        np.testing.assert_allclose(single.compute(batch[i : i + 1], [-1]).small_maps[0], result.small_maps[i],
                                   rtol=1e-5, atol=1e-6)


def test_eigen_smooth_is_the_principal_component_of_the_weighted_channels(tiny, batch, keras):
    model = tiny.model
    kernel, bias = model.get_layer("target").get_weights()
    for method in ("gradcam", "layercam", "hirescam", "gradcam-elementwise", "xgradcam"):
        explainer = Explainer(tiny, method, layer="target", batch_size=3, eigen_smooth=True)
        engine = explainer.build().engine
        result = engine.run(batch, np.array([0, 1, 2]))
        a = np.stack([np.maximum(conv3x3_same(x, kernel, bias), 0) for x in batch])
        np.testing.assert_allclose(result.activations, a, rtol=1e-5, atol=1e-5)
        chosen = METHODS[method]
        if chosen.channel_weights is not None:
            parts = a * chosen.channel_weights(result, explainer.build().context)[:, None, None, :]
        else:
            parts = chosen.contributions(result, explainer.build().context)
        expected = eigen_smooth(parts)
        got = explainer.compute(batch, [0, 1, 2])
        np.testing.assert_allclose(got.weighted_sums, expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got.small_maps, maps.relu(expected), rtol=1e-4, atol=1e-5)


def test_eigen_smooth_leaves_a_principal_component_map_as_it_is(tiny, batch):
    plain = Explainer(tiny, "eigencam", layer="target", batch_size=3).compute(batch, [0, 0, 0])
    smooth = Explainer(tiny, "eigencam", layer="target", batch_size=3, eigen_smooth=True).compute(batch, [0, 0, 0])
    np.testing.assert_array_equal(plain.small_maps, smooth.small_maps)


def test_eigen_smooth_is_refused_where_the_map_is_no_channel_sum(monkeypatch):
    from dataclasses import replace

    monkeypatch.setitem(METHODS, "pixel-thing", replace(METHODS["eigencam"], name="pixel-thing", principal=False))
    with pytest.raises(GradcamError, match="not a sum over channels"):
        Explainer("demo-gap", "pixel-thing", eigen_smooth=True)


def test_several_layers_average_their_normalised_upsampled_maps(tiny, batch):
    both = Explainer(tiny, "gradcam", layer=["target", "post"], batch_size=3)
    result = both.compute(batch, [-1, -1, -1])
    first = Explainer(tiny, "gradcam", layer="target", batch_size=3).compute(batch, [-1, -1, -1])
    second = Explainer(tiny, "gradcam", layer="post", batch_size=3).compute(batch, first.classes)
    box = (0, 0, 8, 8)
    expected = [(maps.upsample(smoothing.unit_peak(first.small_maps)[i], box, (8, 8))
                 + maps.upsample(smoothing.unit_peak(second.small_maps)[i], box, (8, 8))) / 2 for i in range(3)]
    np.testing.assert_allclose(result.small_maps, np.stack(expected), rtol=1e-6, atol=1e-7)
    assert result.small_maps.shape == (3, 8, 8) and both.build().layer == "target+post"
    np.testing.assert_array_equal(result.classes, first.classes)


def test_the_command_names_smoothed_and_dilated_outputs_apart(tmp_path):
    image = write_image(tmp_path / "in" / "a.png", (48, 40), seed=3)
    out = tmp_path / "out"
    runs = {
        "plain": ["--method", "layercam"],
        "eigen": ["--method", "layercam", "--eigen-smooth"],
        "aug": ["--method", "layercam", "--aug-smooth"],
        "layers": ["--method", "layercam", "--layer", "block3_conv2", "--layer", "block4_conv2"],
    }
    records = {}
    for name, args in runs.items():
        result = invoke_cli(image, "--model", "demo-vgg", "-o", out / ("layers" if name == "layers" else ""),
                            "--json", "--save", "raw", *args)
        assert result.returncode == 0, result.stderr
        records[name] = json.loads(result.stdout)
    paths = {name: r["maps"][0]["outputs"]["raw"] for name, r in records.items()}
    assert paths["plain"].endswith("a.png.layercam.raw.npy")
    assert paths["eigen"].endswith("a.png.layercam-eigen-smooth.raw.npy") and records["eigen"]["eigen_smooth"]
    assert paths["aug"].endswith("a.png.layercam-aug-smooth.raw.npy") and records["aug"]["aug_smooth"]
    assert records["layers"]["layer"] == "block3_conv2+block4_conv2"
    assert records["layers"]["maps"][0]["stats"]["resolution"] == [64, 64]  # the input's, demo-vgg takes 64
    raws = {name: np.load(path) for name, path in paths.items()}
    assert all(raw.shape == (40, 48) for raw in raws.values())
    assert not np.allclose(raws["plain"], raws["eigen"]) and not np.allclose(raws["plain"], raws["aug"])

    dilated = invoke_cli("dilated", image, "--model", "demo-vgg", "--method", "layercam", "-o", out, "--json",
                         "--save", "raw")
    assert dilated.returncode == 0, dilated.stderr
    record = json.loads(dilated.stdout)
    assert record["network"] == "dilated (exact)" and record["method"] == "layercam"
    assert record["maps"][0]["outputs"]["raw"].endswith("a.png.dilated-layercam.raw.npy")
    assert record["maps"][0]["stats"]["resolution"] == [64, 64]  # full resolution, not block4's 8x8
    refused = invoke_cli("dilated", image, "--model", "demo-vgg", "--method", "layercam", "--compare", "-o", out)
    assert refused.returncode == 2 and "drop --method" in refused.stderr


@pytest.mark.parametrize("method", [m for m, spec in METHODS.items()
                                    if spec.backprop is None and spec.network is None and spec.meta is None
                                    and m != "cam" and not spec.reads_attention])
def test_every_map_method_runs_on_the_exact_dilated_copy(method):
    """`dilated --method NAME` for every map method (CAM aside: VGG heads are not GAP + Dense):
    full-resolution maps, finite and non-negative, explaining the original's class."""
    from gradcam_cli import load_model

    model = load_model("demo-vgg")
    scene = scenes.generate(3, 1, 64)
    options = {"scorecam": {"max_masks": 8}, "ablationcam": {"max_masks": 8}, "smoothgrad": {"samples": 2},
               "integrated-gradients": {"steps": 2}}.get(method, {})
    on_copy = Explainer(model, method, batch_size=1, network="exact", **options)([scene.image])[0]
    plain = Explainer(model, "gradcam", batch_size=1)([scene.image])[0]
    assert on_copy.small_map.shape == (64, 64)  # block4_conv2 is 8x8 on the original
    assert np.isfinite(on_copy.small_map).all() and on_copy.small_map.min() >= 0
    assert on_copy.class_index == plain.class_index  # the exact copy predicts what the original does
