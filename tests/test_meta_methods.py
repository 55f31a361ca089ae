"""The meta-methods, which take any base method: RefineCAM (the base method's maps at several
layers, multiplied) and SESS (the base method's maps of windows over upscaled copies, weighted,
pasted, fused, blurred), each against a composition by hand of the base method's own maps."""

import json

import cv2
import numpy as np
import pytest
from conftest import gap_model, invoke_cli, write_image

from gradcam_cli import Explainer
from gradcam_cli.errors import GradcamError
from gradcam_cli.explain.methods import METHODS, refinecam, sess
from gradcam_cli.models.loading import describe

SIZE = 16


@pytest.fixture(scope="module")
def gap(keras):
    """16x16 -> conv1 (16x16x8) -> pool -> conv2 (8x8x16) -> GAP -> Dense(3, softmax)."""
    return describe(gap_model(keras, size=SIZE), "gapnet", (SIZE, SIZE), "none", None)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(11)
    return [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(3)]


def _min_max(m):
    m = np.asarray(m, dtype=np.float64)
    span = m.max() - m.min()
    return (m - m.min()) / span if span > 0 else np.zeros_like(m)


def _up(m, size):
    """Half-pixel bilinear upsampling, as cv2 (and every map here) does it."""
    return cv2.resize(np.asarray(m, dtype=np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def test_refinecam_is_the_product_of_the_base_methods_normalised_layer_maps(gap, images):
    explainer = Explainer(gap, "refinecam", layer=["conv2", "conv1"], base_method="gradcam", batch_size=3)
    inputs, _ = explainer.prepare(images)
    ours = explainer.compute(inputs, np.full(3, -1))
    deep = Explainer(gap, "gradcam", layer="conv2", batch_size=3).compute(inputs, np.full(3, -1))
    shallow = Explainer(gap, "gradcam", layer="conv1", batch_size=3).compute(inputs, deep.classes)
    assert deep.small_maps.shape[1:] == (8, 8) and shallow.small_maps.shape[1:] == (16, 16)
    for i in range(3):
        expected = _min_max(_up(_min_max(deep.small_maps[i]), (SIZE, SIZE))) * \
            _min_max(_up(_min_max(shallow.small_maps[i]), (SIZE, SIZE)))
        assert expected.max() > 0
        np.testing.assert_allclose(ours.small_maps[i], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ours.classes, deep.classes)
    np.testing.assert_allclose(ours.probabilities, deep.probabilities, rtol=1e-6)
    # the base method's options pass through; the meta-method's own are checked
    assert Explainer(gap, "refinecam", base_method="scorecam", max_masks=2).base_options == {"max_masks": 2}
    with pytest.raises(GradcamError, match="base_method: choose from"):
        Explainer(gap, "refinecam", base_method="guided")
    with pytest.raises(GradcamError, match="gradcam has no option max_masks"):
        Explainer(gap, "refinecam", base_method="gradcam", max_masks=2)


def test_refinecam_default_layers_are_one_per_resolution(gap):
    names = [path[-1] for path in refinecam.stage_layers(gap)]
    assert names == ["conv2", "conv1"]  # the default layer (8x8), then the last 16x16 layer
    explainer = Explainer(gap, "refinecam")
    assert explainer.layer_names == ["conv2", "conv1"] and explainer.build().layer == "conv2+conv1"
    assert explainer.options == {"base_method": "gradcam++"}


def test_sess_windows_follow_the_sliding_rule():
    assert sess.scales(224) == [224 + 64 * i for i in range(12)]
    assert sess.window_starts(224, 224, 224) == [0]
    assert sess.window_starts(288, 224, 224) == [0, 64]
    assert sess.window_starts(448, 224, 112) == [0, 112, 224]
    assert len(sess.windows((224, 224))) == 122  # 1 + 4 + 4 + 4 + 9 x 4 + 16 x 3 + 25
    # a non-square input: windows of the input's own size, the scales on its short side
    assert sess.windows((16, 24), count=2, step=0.5) == [((16, 24), (0, 0)), ((24, 36), (0, 0)), ((24, 36), (0, 12)),
                                                          ((24, 36), (8, 0)), ((24, 36), (8, 12))]


def test_sess_equals_its_composition_by_hand(gap, images):
    options = dict(base_method="gradcam", sess_scales=2, sess_scale_step=0.5)  # scales 16 and 24: 1 + 4 windows
    explainer = Explainer(gap, "sess", batch_size=2, **options)  # 3 images x 5 windows in chunks of 2
    inputs, _ = explainer.prepare(images)
    ours = explainer.compute(inputs[:2], np.array([-1, 1]))
    base = Explainer(gap, "gradcam", batch_size=1)
    for i in range(2):
        whole = base.compute(inputs[i : i + 1], [ours.classes[i]])
        c = int(whole.classes[0])
        scaled = cv2.resize(inputs[i], (24, 24), interpolation=cv2.INTER_LINEAR)
        crops = [((16, 16), 0, 0, inputs[i])] + [((24, 24), y, x, scaled[y : y + 16, x : x + 16])
                                               for y in (0, 8) for x in (0, 8)]
        maps_, scores = [], []
        for _, _, _, crop in crops:
            done = base.compute(crop[None], [c])
            maps_.append(_min_max(_up(done.small_maps[0], (SIZE, SIZE))))
            scores.append(max(float(gap.model.predict(crop[None], verbose=0)[0, c]), 0.0))
        total, counts = np.zeros((SIZE, SIZE)), np.zeros((SIZE, SIZE))
        for (shape, y, x, _), m, score in zip(crops, maps_, scores):
            canvas = np.zeros(shape, np.float32)
            canvas[y : y + 16, x : x + 16] = score / max(scores) * m
            pasted = cv2.resize(canvas, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR).astype(np.float64)
            total += np.where(pasted > 0, pasted, 0)
            counts += pasted > 0
        fused = np.where(counts > 0, total / np.maximum(counts, 1), 0)
        expected = cv2.GaussianBlur(fused, (11, 11), 5.0, borderType=cv2.BORDER_REFLECT_101)
        assert expected.max() > 0
        np.testing.assert_allclose(ours.small_maps[i], expected, rtol=1e-4, atol=1e-6 * expected.max())
    assert ours.classes[1] == 1 and ours.details[0]["sess_windows"] == 5
    # a batch gives its images' maps one by one
    alone = explainer.compute(inputs[2:3], np.array([-1]))
    together = Explainer(gap, "sess", batch_size=3, **options).compute(inputs, np.array([-1, 1, -1]))
    np.testing.assert_allclose(together.small_maps[2], alone.small_maps[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(together.small_maps[:2], ours.small_maps, rtol=1e-5, atol=1e-7)


def test_sess_pool_max_and_pre_filter_by_hand():
    found = [((4, 4), (0, 0)), ((6, 6), (0, 0)), ((6, 6), (2, 2))]
    patch = np.zeros((3, 4, 4), np.float32)
    patch[0, 0, 0], patch[1, 3, 3], patch[2, 0, 0] = 1.0, 1.0, 0.5
    scores = np.array([0.2, 0.8, 0.4])
    # max pool, no blur: the weighted patches pasted and resized to 4x4, their maximum
    fused = sess.fuse(patch, scores, found, (4, 4), pool="max", blur=0)
    expected = np.zeros((4, 4))
    for (shape, (y, x)), m, s in zip(found, patch, scores):
        canvas = np.zeros(shape, np.float32)
        canvas[y : y + 4, x : x + 4] = s / 0.8 * m
        expected = np.maximum(expected, cv2.resize(canvas, (4, 4), interpolation=cv2.INTER_LINEAR))
    np.testing.assert_allclose(fused, expected, rtol=1e-6)
    # pre-filter 0.5 keeps the best half-and-more (int(3 x 0.5) = 1 dropped: the 0.2 window)
    kept = sess.fuse(patch, scores, found, (4, 4), pre_filter=0.5, pool="max", blur=0)
    assert kept[0, 0] == 0.0 and kept.max() > 0


def test_meta_methods_through_the_command(tmp_path):
    image = write_image(tmp_path / "a.png", (64, 64), seed=3)
    result = invoke_cli(image, "--model", "demo-gap", "--method", "refinecam", "--base-method", "layercam", "--json",
                        "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["base_method"] == "layercam" and "+" in record["layer"]
    assert (tmp_path / "out" / "a.png.refinecam-layercam.overlay.png").is_file()  # not the default base: named
    result = invoke_cli(image, "--model", "demo-gap", "--method", "sess", "--sess-scales", "2", "--json",
                        "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["sess_scales"] == 2 and record["maps"][0]["sess_windows"] == 5
    assert record["maps"][0]["stats"]["resolution"] == [64, 64]
    page = invoke_cli("methods", "sess")
    assert "--base-method (base_method=)" in page.stdout and "--sess-pool (sess_pool=): mean|max" in page.stdout
    wrong = invoke_cli("dilated", image, "--model", "demo-vgg", "--method", "sess")
    assert wrong.returncode == 2 and "sess" in wrong.stderr


def test_every_meta_method_is_in_the_registry_with_a_base():
    metas = [name for name, method in METHODS.items() if method.meta is not None]
    assert metas == ["refinecam", "sess"]
    for name in metas:
        assert "base-method" in METHODS[name].needs and METHODS[name].option("base_method") is not None


def test_a_meta_methods_base_is_checked_before_any_image(gap, tmp_path):
    """The base method's refusals come at build time, as one usage error, not per image; the
    base's options are recorded; eval gives each option to the methods that take it."""
    from gradcam_cli.errors import LayerError

    with pytest.raises(LayerError, match="refinecam's base method cam does not apply to gapnet at layer conv1"):
        Explainer(gap, "refinecam", base_method="cam").build()  # conv1 is not the GAP layer
    with pytest.raises(GradcamError, match="base method fullgrad's map is not a sum over channels"):
        Explainer(gap, "sess", base_method="fullgrad", eigen_smooth=True)
    explainer = Explainer(gap, "sess", base_method="scorecam", max_masks=4, sess_scales=2)
    assert explainer.details()["max_masks"] == 4 and explainer.details()["base_method"] == "scorecam"
    assert explainer.name == "sess-scorecam"
    image = write_image(tmp_path / "a.png", (64, 64), seed=3)
    result = invoke_cli("eval", image, "--model", "demo-gap", "--methods", "gradcam,sess", "--measures", "deletion",
                        "--steps", "2", "--base-method", "scorecam", "--max-masks", "4", "--sess-scales", "2",
                        "--json", "-o", tmp_path / "eval")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["method_options"]["sess"]["max_masks"] == 4 and "gradcam" not in report["method_options"]
