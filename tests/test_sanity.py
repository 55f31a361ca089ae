"""The cascading model-parameter randomisation test (gradcam_cli/randomisation.py): steps by hand, the
copy and the re-initialisation against Keras's own initializers, rho = 1 at the original model,
the drop of Grad-CAM's rho, the user's model untouched, determinism, batching, the figure, bad
arguments, and the measurement on demo-vgg (Adebayo et al. 2018's finding)."""

import json

import numpy as np
import pytest
from conftest import gap_model, nested_model, probabilities, tiny_model
from PIL import Image

from gradcam_cli.errors import ClassError, GradcamError, ImageError, LayerError
from gradcam_cli.evaluate import randomisation
from gradcam_cli.files import charts
from gradcam_cli.files.images import prepare


def _loaded(keras, model, size):
    from gradcam_cli.models.loading import describe

    return describe(model, model.name, (size, size), "none", None)


def _images(count, size, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


@pytest.fixture(scope="module")
def gap(keras):
    return _loaded(keras, gap_model(keras), 32)


@pytest.fixture(scope="module")
def nested(keras):
    return _loaded(keras, nested_model(keras), 32)


@pytest.fixture(scope="module")
def gap_result(gap):
    methods = ("gradcam", "cam", "guided-backprop", "guided-gradcam")
    return randomisation.cascading_randomisation(gap, _images(5, 32), methods=methods, batch_size=5, seed=0)


def _weights(loaded):
    return [w.copy() for w in loaded.model.get_weights()]


# -- steps -------------------------------------------------------------------------------------


def test_steps_are_the_weighted_layers_from_the_output_down(keras):
    tiny = _loaded(keras, tiny_model(keras), 8)  # target (conv), post (conv), flatten, pred (dense)
    assert randomisation.cascade_steps(tiny) == [randomisation.Step("original"), randomisation.Step("pred", ("pred",)),
                                          randomisation.Step("post", ("post",)), randomisation.Step("target", ("target",))]
    # grouped: 3 layers in 2 steps, the larger group at the top, each named after its lowest layer
    assert randomisation.cascade_steps(tiny, max_steps=2) == [randomisation.Step("original"), randomisation.Step("post", ("pred", "post")),
                                                       randomisation.Step("target", ("target",))]
    assert randomisation.cascade_steps(tiny, max_steps=9) == randomisation.cascade_steps(tiny)


def test_steps_enter_a_nested_model_and_include_batch_norm(nested):
    names = [step.name for step in randomisation.cascade_steps(nested)]
    assert names == ["original", "pred", "base/b_bn", "base/b_conv2", "base/b_conv1"]  # no pooling, no GAP


# -- the copy and the re-initialisation --------------------------------------------------------


def test_the_copy_of_a_nested_model_is_separate_and_computes_the_same_maps(keras, nested):
    from gradcam_cli.api import Explainer

    copy = randomisation.model_copy(nested)
    originals = {id(v) for v in nested.model.variables}
    assert copy.model is not nested.model and not any(id(v) in originals for v in copy.model.variables)
    assert copy.default_layer == nested.default_layer == ("base", "b_out")
    images = _images(3, 32)
    for method in ("gradcam", "guided"):
        maps = []
        for loaded in (nested, copy):
            explainer = Explainer(loaded, method, batch_size=3)
            inputs, _ = explainer.prepare(images)
            maps.append(explainer.compute(inputs, [0, 1, 0]))
        np.testing.assert_array_equal(maps[0].small_maps, maps[1].small_maps)
        if method == "guided":
            np.testing.assert_array_equal(maps[0].input_gradients, maps[1].input_gradients)


def test_reinitialise_draws_with_the_layers_own_initializers(keras, nested):
    copy = randomisation.model_copy(nested)
    base = copy.model.get_layer("base")
    conv, bn = base.get_layer("b_conv2"), base.get_layer("b_bn")
    mean, variance = (np.array(v) for v in (bn.moving_mean, bn.moving_variance))
    randomisation.reinitialise(conv, position=1, seed=7)
    expected = keras.initializers.GlorotUniform(seed=randomisation.weight_seed(7, 1, 0))((3, 3, 8, 16))
    np.testing.assert_array_equal(np.array(conv.kernel), np.array(expected))
    np.testing.assert_array_equal(np.array(conv.bias), np.zeros(16))  # bias_initializer: zeros
    randomisation.reinitialise(bn, position=2, seed=7)
    np.testing.assert_array_equal(np.array(bn.gamma), np.ones(16))
    np.testing.assert_array_equal(np.array(bn.beta), np.zeros(16))
    # the running statistics are not learned weights: kept
    np.testing.assert_array_equal(np.array(bn.moving_mean), mean)
    np.testing.assert_array_equal(np.array(bn.moving_variance), variance)
    assert [w.name for w in randomisation.learned_weights(bn)] == ["gamma", "beta"]


def test_normal_reinitialisation_keeps_each_tensors_scale(keras, nested):
    copy = randomisation.model_copy(nested)
    dense = copy.model.get_layer("pred")
    trained = np.array(dense.kernel)
    randomisation.reinitialise(dense, position=4, seed=3, reinit="normal")
    drawn = np.array(dense.kernel)
    rng = np.random.default_rng(randomisation.weight_seed(3, 4, 0))
    np.testing.assert_array_equal(drawn, rng.normal(0, np.sqrt(np.mean(trained.astype(np.float64) ** 2)),
                                                    trained.shape).astype(np.float32))


def test_the_users_model_is_untouched(keras, nested):
    from gradcam_cli.api import Explainer

    before = _weights(nested)
    images = _images(3, 32)
    explainer = Explainer(nested, "gradcam", batch_size=3)
    inputs, _ = explainer.prepare(images)
    maps_before = explainer.compute(inputs, [0, 1, 0]).small_maps
    result = randomisation.cascading_randomisation(nested, images, batch_size=2)
    after = nested.model.get_weights()
    assert len(after) == len(before) and all(np.array_equal(a, b) for a, b in zip(before, after))
    np.testing.assert_array_equal(Explainer(nested, "gradcam", batch_size=3).compute(inputs, [0, 1, 0]).small_maps,
                                  maps_before)
    assert [p.step for p in result.curves["gradcam"]] == [s.name for s in randomisation.cascade_steps(nested)]


# -- the figures -------------------------------------------------------------------------------


def test_rho_is_one_at_the_original_model_for_every_method(gap_result):
    for method, points in gap_result.curves.items():
        first = points[0]
        assert first.step == "original" and first.rho == 1.0 and first.rhos == (1.0,) * 5, method
        assert all(values == (1.0,) * 5 for _, values in first.figures.values()), method


def test_grad_cams_rho_drops_when_the_weights_are_randomised(gap_result):
    rho = {p.step: p.rho for p in gap_result.curves["gradcam"]}
    assert list(rho) == ["original", "pred", "conv2", "conv1"]
    assert rho["pred"] < 0.6 and rho["conv1"] < 0.0  # seed 0: 0.481, then -0.165 fully random
    # CAM reads the classifier's kernel, rebuilt at every step: on a GAP model it is Grad-CAM
    np.testing.assert_allclose([p.rho for p in gap_result.curves["cam"]], list(rho.values()), atol=1e-4)


def test_the_class_is_the_original_models_prediction(gap, gap_result):
    images = _images(5, 32)
    inputs, _ = prepare(gap, images)
    assert gap_result.classes == tuple(int(c) for c in np.argmax(probabilities(gap, inputs), axis=1))
    given = randomisation.cascading_randomisation(gap, images, methods="gradcam", classes=2, batch_size=5, metrics="spearman")
    assert given.classes == (2,) * 5 and given.metrics == ("spearman",)


def test_a_fixed_seed_gives_the_same_results_and_another_seed_others(gap, gap_result):
    images = _images(5, 32)
    again = randomisation.cascading_randomisation(gap, images, methods=gap_result.methods, batch_size=5, seed=0)
    other = randomisation.cascading_randomisation(gap, images, methods=("gradcam",), batch_size=5, seed=1)
    for method in gap_result.methods:
        assert [p.figures for p in again.curves[method]] == [p.figures for p in gap_result.curves[method]]
    assert [p.rhos for p in other.curves["gradcam"][1:]] != [p.rhos for p in gap_result.curves["gradcam"][1:]]


def test_batching_does_not_change_the_figures(gap, gap_result):
    single = randomisation.cascading_randomisation(gap, _images(5, 32), methods=gap_result.methods, batch_size=2, seed=0)
    for method in gap_result.methods:
        for a, b in zip(single.curves[method], gap_result.curves[method]):
            for metric in gap_result.metrics:
                np.testing.assert_allclose(a.figures[metric][1], b.figures[metric][1], atol=1e-5)


def test_grouped_steps_reach_the_same_random_model(gap, gap_result):
    grouped = randomisation.cascading_randomisation(gap, _images(5, 32), methods=("gradcam",), batch_size=5, max_steps=2)
    assert [s.layers for s in grouped.steps] == [(), ("pred", "conv2"), ("conv1",)]
    assert grouped.curves["gradcam"][1].rhos == gap_result.curves["gradcam"][2].rhos
    assert grouped.curves["gradcam"][-1].rhos == gap_result.curves["gradcam"][-1].rhos


def test_engines_are_built_once_for_the_whole_cascade(gap, monkeypatch):
    from gradcam_cli.explain import engine

    built, original = [], engine.Engine.__init__

    def counted(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(engine.Engine, "__init__", counted)
    randomisation.cascading_randomisation(gap, _images(3, 32), methods=("gradcam", "guided-backprop"), batch_size=3)
    assert len(built) == 1  # one engine: Grad-CAM and guided share it, over all four steps


def test_spearman_and_ssim_by_hand():
    ramp = np.tile(np.arange(8, dtype=np.float32), (8, 1)) / 7
    assert randomisation.spearman(ramp, ramp) == 1.0 and randomisation.spearman(1 - ramp, ramp) == -1.0
    assert randomisation.spearman(np.zeros((8, 8)), ramp) == 0.0  # the map lost its ranking
    assert np.isnan(randomisation.spearman(ramp, np.zeros((8, 8))))  # nothing to compare with
    assert randomisation.structural_similarity(ramp, ramp) == pytest.approx(1.0, abs=1e-12)
    assert randomisation.structural_similarity(ramp, 1 - ramp) < 0
    point = randomisation.Point("x", 0.5, (0.5, float("nan")))
    assert point.undefined == 1


def test_the_table_and_the_record(gap_result):
    table = gap_result.table().splitlines()
    assert table[0].split() == ["step", "gradcam", "cam", "guided-backprop", "guided-gradcam"]
    assert [line.split()[0] for line in table[1:]] == ["original", "pred", "conv2", "conv1"]
    assert table[1].split()[1:] == ["1.000"] * 4
    record = json.loads(json.dumps(gap_result.as_record()))
    assert record["steps"][1] == {"name": "pred", "layers": ["pred"]} and record["layer"] == "conv2"
    assert record["methods"]["gradcam"][0]["spearman"]["per_image"] == [1.0] * 5


# -- the picture -------------------------------------------------------------------------------


def _hand_made(curves):
    """A Randomisation of three steps with the given mean rhos per method (one image each)."""
    steps = [randomisation.Step("original"), randomisation.Step("pred", ("pred",)), randomisation.Step("conv1", ("conv1",))]
    points = {m: [randomisation.Point(s.name, r, (r,), {"spearman": (r, (r,))}) for s, r in zip(steps, rhos)]
              for m, rhos in curves.items()}
    return randomisation.Randomisation("hand", tuple(curves), steps, (0,), points, ("spearman",), "initializer", 0, "conv1")


def test_the_curves_picture_has_every_methods_colour(tmp_path, gap_result):
    result = _hand_made({"gradcam": (1.0, 0.2, -0.5), "guided-backprop": (1.0, 0.9, 0.7),
                         "guided-gradcam": (1.0, float("nan"), 0.1)})  # NaN: no point, the line breaks
    path = randomisation.write_curves(result, tmp_path / "curves.png")
    picture = np.asarray(Image.open(path).convert("RGB"))
    assert np.array_equal(picture, randomisation.render_curves(result))  # deterministic
    assert picture.shape == (round(charts.CURVES_SIZE[1] * charts.DPI), round(charts.CURVES_SIZE[0] * charts.DPI), 3)

    def count(colour):  # pixels within a small distance of the colour (matplotlib anti-aliases edges)
        return int((np.abs(picture.astype(int) - np.array(colour)).sum(axis=-1) <= 12).sum())

    counts = [count(colour) for colour in charts.colours(4)]
    assert counts[0] > 400 and counts[1] > 400  # lines, markers and the legend's sample
    assert 40 < counts[2] < counts[1] / 2  # the legend's sample and two markers: NaN breaks the line
    assert counts[3] == 0  # no fourth method
    # the measured result draws too, for each metric
    for metric in gap_result.metrics:
        drawn = randomisation.render_curves(gap_result, metric)
        assert drawn.dtype == np.uint8 and drawn.shape[2] == 3


# -- bad arguments -----------------------------------------------------------------------------


BAD = [
    (dict(methods=("gradcam", "nope")), GradcamError, "unknown method 'nope'"),
    (dict(methods=()), GradcamError, "at least one method"),
    (dict(metrics=("kendall",)), GradcamError, "unknown metric 'kendall'"),
    (dict(reinit="zeros"), GradcamError, "reinit"),
    (dict(max_steps=0), GradcamError, "max_steps"),
    (dict(max_steps=1.5), GradcamError, "max_steps"),
    (dict(max_steps=True), GradcamError, "max_steps"),
    (dict(batch_size=0), GradcamError, "batch size"),
    (dict(side=0), GradcamError, "side"),
    (dict(classes=[0, 1]), ClassError, "one per image (3)"),
    (dict(classes=5), ClassError, "class 5 is out of range"),
    (dict(layer="nope"), LayerError, "no layer 'nope'"),
    (dict(methods=("cam",), layer="conv1"), LayerError, "cam:"),
]


@pytest.mark.parametrize("arguments, error, message", BAD)
def test_bad_arguments_are_refused(gap, arguments, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        randomisation.cascading_randomisation(gap, _images(3, 32), **arguments)


def test_bad_images_are_refused(gap):
    with pytest.raises(GradcamError, match="at least one image"):
        randomisation.cascading_randomisation(gap, [])
    with pytest.raises(ImageError, match="image 1: expected an"):
        randomisation.cascading_randomisation(gap, [_images(1, 32)[0], np.zeros((4, 4), np.float32)])
    with pytest.raises(GradcamError, match="was not computed"):
        randomisation.render_curves(randomisation.cascading_randomisation(gap, _images(1, 32), "gradcam", metrics=()), "ssim")


# -- the measurement -------------------------------------------------------------------------


def test_demo_vgg_reproduces_the_papers_finding(keras):
    """Adebayo et al. 2018, Fig. 4: guided backpropagation stays close to its original map while the
    top layers are randomised, Grad-CAM decorrelates at once. On 20 generated scenes (about 3 s)."""
    from gradcam_cli.evaluate import scenes
    from gradcam_cli.models.loading import load

    loaded = load("demo-vgg")
    images = [scenes.generate(i, seed=1, size=64).image for i in range(20)]
    result = randomisation.cascading_randomisation(loaded, images, batch_size=20, seed=0, metrics=("spearman",))
    assert result.layer == "block4_conv2" and len(result.steps) == 11
    rho = {m: {p.step: p.rho for p in points} for m, points in result.curves.items()}
    assert all(rho[m]["original"] == 1.0 for m in result.methods)
    # the three top layers (predictions, fc1, block4_conv2) re-initialised: seeds 0-3 and both
    # reinit modes give guided backprop 0.91-0.93 and Grad-CAM -0.15 to 0.31
    assert rho["guided-backprop"]["block4_conv2"] > 0.85 and rho["gradcam"]["block4_conv2"] < 0.5
    mean = {m: np.mean([p.rho for p in points[1:]]) for m, points in result.curves.items()}
    assert mean["guided-backprop"] > mean["gradcam"] + 0.2
