"""Faithfulness figures on constructed cases, each number worked out by hand: deletion and
insertion on a model that reads one quadrant, AUCs of known curves, ROAD's imputation against
the linear system solved here, Average Drop / Increase in Confidence on three images, one
scoring call per figure and batch, and ROAD's seeded noise."""

import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import counting

from gradcam_cli.errors import GradcamError
from gradcam_cli.evaluate import faithfulness as F
from gradcam_cli.evaluate import road

SAMPLES = Path(__file__).resolve().parents[1] / "sample_images"


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def quadrant_probabilities(views):
    """A 'model' that reads only the top-left quadrant: p = sigmoid(8 mean / 255 - 4) of the
    quadrant's pixels, for class 0; class 1 gets 1 - p."""
    views = np.asarray(views, dtype=np.float64)
    h, w = views.shape[1] // 2, views.shape[2] // 2
    p = sigmoid(8.0 * views[:, :h, :w].mean(axis=(1, 2, 3)) / 255.0 - 4.0)
    return np.stack([p, 1.0 - p], axis=1)


def quadrant_map(size, top, left):
    m = np.zeros((size, size), np.float32)
    half = size // 2
    m[top * half : (top + 1) * half, left * half : (left + 1) * half] = 1.0
    return m


def trapezoid(x, y):
    return sum((x[k + 1] - x[k]) * (y[k] + y[k + 1]) / 2 for k in range(len(x) - 1))


# -- deletion and insertion ----------------------------------------------------------------------


def test_the_quadrant_the_model_reads_has_the_lowest_deletion_and_highest_insertion_auc():
    view = np.full((1, 8, 8, 3), 255.0, np.float32)  # 64 pixels, 4 steps of 16
    ideal, wrong = quadrant_map(8, 0, 0), quadrant_map(8, 1, 1)
    high, low = sigmoid(4.0), sigmoid(-4.0)
    # Ideal: step 1 blacks out the whole top-left quadrant. Wrong: step 1 the bottom-right
    # quadrant; then the tied zeros go in raster order: rows 0-1 at step 2 (half the quadrant:
    # mean 127.5, p = sigmoid(0) = 0.5), rows 2-3 at step 3.
    x = [0, 0.25, 0.5, 0.75, 1]
    expected = {
        ("deletion", "ideal"): [high, low, low, low, low],
        ("deletion", "wrong"): [high, high, 0.5, low, low],
        ("insertion", "ideal"): [low, high, high, high, high],
        ("insertion", "wrong"): [low, low, 0.5, high, high],
    }
    aucs = {}
    for name, m in (("ideal", ideal), ("wrong", wrong)):
        deleted = F.deletion_curves(view, [m], [0], quadrant_probabilities, steps=4, baseline="zero")
        inserted = F.insertion_curves(view, [m], [0], quadrant_probabilities, steps=4, start="zero")
        np.testing.assert_allclose(deleted.fractions, x)
        np.testing.assert_allclose(deleted.probabilities[0], expected["deletion", name], atol=1e-12)
        np.testing.assert_allclose(inserted.probabilities[0], expected["insertion", name], atol=1e-12)
        aucs["deletion", name], aucs["insertion", name] = deleted.auc[0], inserted.auc[0]
    # By hand: 0.25 ((high + low) / 2 + 3 low) and 0.25 (high + (high + 0.5) / 2 + (0.5 + low) / 2 + low)
    assert aucs["deletion", "ideal"] == pytest.approx(0.25 * ((high + low) / 2 + 3 * low), abs=1e-12)
    assert aucs["deletion", "wrong"] == pytest.approx(0.25 * (high + (high + 0.5) / 2 + (0.5 + low) / 2 + low),
                                                       abs=1e-12)
    assert aucs["insertion", "ideal"] == pytest.approx(0.25 * ((low + high) / 2 + 3 * high), abs=1e-12)
    assert aucs["insertion", "wrong"] == pytest.approx(0.25 * (low + (low + 0.5) / 2 + (0.5 + high) / 2 + high),
                                                        abs=1e-12)
    assert aucs["deletion", "ideal"] < aucs["deletion", "wrong"]
    assert aucs["insertion", "ideal"] > aucs["insertion", "wrong"]


def test_insertion_from_the_blurred_view_ranks_the_read_quadrant_first():
    """The default insertion start, the blurred view: a model reading the top-left quadrant's
    contrast (a blurred checkerboard has almost none) gains most from the ideal map."""
    def contrast(views):
        views = np.asarray(views, dtype=np.float64)
        quadrant = views[:, : views.shape[1] // 2, : views.shape[2] // 2]
        p = sigmoid(8.0 * np.abs(quadrant - 127.5).mean(axis=(1, 2, 3)) / 127.5 - 4.0)
        return np.stack([p, 1.0 - p], axis=1)

    size = 64
    board = ((np.indices((size, size)).sum(axis=0) % 2) * 255.0).astype(np.float32)
    view = np.repeat(board[None, :, :, None], 3, axis=3)
    maps = [quadrant_map(size, 0, 0), quadrant_map(size, 1, 1), F.uniform_map((size, size))]
    curves = F.insertion_curves(np.repeat(view, 3, axis=0), maps, [0, 0, 0], contrast, steps=8)
    ideal, wrong, uniform = curves.auc
    assert curves.probabilities[0, 0] < 0.05  # the blurred board: no contrast left
    np.testing.assert_allclose(curves.probabilities[:, -1], contrast(view)[0, 0])  # the view itself
    assert ideal > uniform > wrong


def test_aucs_of_a_known_four_step_curve():
    """A probabilities callable that returns known values, one per step, in the order of the
    rows it is given: all five rows of the image come in one call."""
    values = np.array([0.9, 0.6, 0.5, 0.2, 0.1])

    def known(views):
        assert len(views) == 5
        return np.stack([values, 1.0 - values], axis=1)

    curves = F.deletion_curves(np.zeros((1, 4, 4, 3)), [np.zeros((4, 4))], [0], known, steps=4)
    np.testing.assert_allclose(curves.probabilities[0], values)
    # 0.25 ((0.9 + 0.6) / 2 + (0.6 + 0.5) / 2 + (0.5 + 0.2) / 2 + (0.2 + 0.1) / 2) = 0.25 x 1.8
    assert curves.auc[0] == pytest.approx(0.45, abs=1e-12)
    # 9 pixels in 4 steps: n_k = floor(9 k / 4) = 0, 2, 4, 6, 9, so x = 0, 2/9, 4/9, 6/9, 1
    curves = F.deletion_curves(np.zeros((1, 3, 3, 3)), [np.zeros((3, 3))], [0], known, steps=4)
    np.testing.assert_allclose(curves.fractions, [0, 2 / 9, 4 / 9, 6 / 9, 1])
    assert curves.auc[0] == pytest.approx(2 / 9 * 0.75 + 2 / 9 * 0.55 + 2 / 9 * 0.35 + 3 / 9 * 0.15, abs=1e-12)
    assert F.area_under_curve(values) == pytest.approx(0.45)


def test_each_step_changes_exactly_its_pixels_in_map_order_ties_in_raster_order():
    seen = []

    def record(views):
        seen.append(np.array(views))
        return np.ones((len(views), 2)) / 2

    view = np.arange(1, 5 * 4 * 3 + 1, dtype=np.float32).reshape(1, 5, 4, 3)
    m = np.zeros((5, 4), np.float32)
    m[4, 3], m[2, 1] = 2.0, 1.0  # then 18 tied zeros
    F.deletion_curves(view, [m], [0], record, steps=4, baseline="zero")
    rows = seen[0]
    counts = [0, 5, 10, 15, 20]  # floor(20 k / 4)
    order = [(4, 3), (2, 1)] + [(r, c) for r in range(5) for c in range(4) if (r, c) not in ((4, 3), (2, 1))]
    for k, count in enumerate(counts):
        expected = view[0].copy()
        for r, c in order[:count]:
            expected[r, c] = 0.0
        np.testing.assert_array_equal(rows[k], expected)
    np.testing.assert_array_equal(F.removal_order(m)[:2], [19, 9])
    np.testing.assert_array_equal(F.removal_order(F.uniform_map((3, 4))), np.arange(12))  # raster order


def test_baselines():
    rng = np.random.default_rng(3)
    view = rng.uniform(0, 255, (20, 30, 3)).astype(np.float32)
    np.testing.assert_array_equal(F.substrate(view, "zero"), 0.0)
    np.testing.assert_allclose(F.substrate(view, "mean"), np.broadcast_to(view.mean(axis=(0, 1)), view.shape),
                               rtol=1e-6)
    np.testing.assert_array_equal(F.substrate(view, "blur"), F.blurred(view))
    np.testing.assert_allclose(F.blurred(np.full((50, 40, 3), 77.0)), 77.0, rtol=1e-6)
    # At 224 pixels: RISE's 11 x 11 kernel, sigma 5: a point spreads 5 pixels each way, no further.
    delta = np.zeros((224, 224, 3), np.float32)
    delta[100, 120] = 1.0
    spread = F.blurred(delta)[..., 0]
    rows, cols = np.nonzero(spread > 0)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (95, 105, 115, 125)
    g = np.exp(-np.arange(-5, 6) ** 2 / (2 * 5.0**2))
    assert spread[100, 120] == pytest.approx((1 / g.sum()) ** 2, rel=1e-5)
    with pytest.raises(GradcamError, match="unknown baseline 'gray'; choose from zero, blur, mean"):
        F.deletion_curves(view[None], [np.ones((20, 30))], [0], quadrant_probabilities, baseline="gray")
    with pytest.raises(GradcamError, match="steps must be a whole number, 1 or more. Received: 0"):
        F.deletion_curves(view[None], [np.ones((20, 30))], [0], quadrant_probabilities, steps=0)


def test_maps_of_another_resolution_are_resized_to_the_view():
    view = np.full((1, 8, 8, 3), 255.0, np.float32)
    small = np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)  # the top-left quadrant, at 2 x 2
    resized = F.view_maps([small], (8, 8))[0]
    assert resized.shape == (8, 8) and resized[0, 0] == 1.0 and resized[7, 7] == 0.0
    small_curves = F.deletion_curves(view, [small], [0], quadrant_probabilities, steps=4)
    full_curves = F.deletion_curves(view, [resized], [0], quadrant_probabilities, steps=4)
    np.testing.assert_array_equal(small_curves.probabilities, full_curves.probabilities)


# -- Average Drop and Increase in Confidence ------------------------------------------------------


def brightness(views):
    """p = mean / 255 for class 0, 1 - p for class 1."""
    p = np.asarray(views, dtype=np.float64).mean(axis=(1, 2, 3)) / 255.0
    return np.stack([p, 1.0 - p], axis=1)


def test_average_drop_and_increase_in_confidence_by_hand_on_three_images():
    views = np.full((3, 4, 4, 3), 200.0, np.float32)
    half = np.zeros((4, 4), np.float32)
    half[:, :2] = 0.5  # normalised by its maximum: 1 on the left half, 0 on the right
    maps = [np.ones((4, 4)), half, half]
    classes = [0, 0, 1]
    original, observed = F.confidence_change(views, maps, classes, brightness)
    # Y: 200/255, 200/255, 55/255. O: the whole view (200/255); the left half kept, mean 100
    # (100/255); class 1 of that: 1 - 100/255 = 155/255, above its Y.
    np.testing.assert_allclose(original, [200 / 255, 200 / 255, 55 / 255])
    np.testing.assert_allclose(observed, [200 / 255, 100 / 255, 155 / 255])
    np.testing.assert_allclose(F.drops(original, observed), [0.0, 0.5, 0.0])
    assert F.average_drop_percent(original, observed) == pytest.approx(100 * 0.5 / 3)  # 16.67 %
    assert F.increase_in_confidence_percent(original, observed) == pytest.approx(100 / 3)  # 33.3 %
    assert F.drops([0.0], [0.3])[0] == 0.0  # no confidence to drop


# -- ROAD ----------------------------------------------------------------------------------------


def hand_imputation(view, removed):
    """The paper's system written out: each removed pixel = the weighted average of its
    in-image 8-neighbours (1/6 direct, 1/12 diagonal), solved with numpy.linalg.solve."""
    height, width, channels = view.shape
    unknown = [tuple(p) for p in np.argwhere(removed)]
    index = {p: n for n, p in enumerate(unknown)}
    matrix = np.zeros((len(unknown), len(unknown)))
    rhs = np.zeros((len(unknown), channels))
    for n, (r, c) in enumerate(unknown):
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                if (dr, dc) == (0, 0) or not (0 <= r + dr < height and 0 <= c + dc < width):
                    continue
                weight = 1 / 6 if dr == 0 or dc == 0 else 1 / 12
                matrix[n, n] += weight
                if (r + dr, c + dc) in index:
                    matrix[n, index[r + dr, c + dc]] -= weight
                else:
                    rhs[n] += weight * view[r + dr, c + dc]
    out = view.astype(np.float64).copy()
    out[removed] = np.linalg.solve(matrix, rhs)
    return out


def test_road_imputation_equals_the_hand_solved_system_on_a_4x4_image():
    view = np.random.default_rng(0).uniform(0, 255, (4, 4, 3))
    removed = np.array([[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1]], bool)
    imputed = road.linear_imputation(view, removed).astype(np.float64)
    expected = hand_imputation(view, removed)
    np.testing.assert_allclose(imputed, expected, atol=1e-6 * 255, rtol=0)  # float32 out: 1e-6 of the range
    np.testing.assert_array_equal(imputed[~removed], view[~removed].astype(np.float32))
    # and as the equations say: each imputed corner pixel (0, 0) is the weighted average of
    # (0, 1), (1, 0) at 1/6 and (1, 1) at 1/12, renormalised by 1/6 + 1/6 + 1/12
    corner = (expected[0, 1] / 6 + expected[1, 0] / 6 + expected[1, 1] / 12) / (5 / 12)
    np.testing.assert_allclose(expected[0, 0], corner, rtol=1e-12)
    ys, xs = np.nonzero(removed)
    solved = road._solve(view, removed, ys, xs)  # float64, before the float32 output
    np.testing.assert_allclose(solved, expected[ys, xs], atol=1e-9, rtol=0)


@pytest.mark.parametrize("shape", [(12, 20), (20, 12), (9, 9)])
def test_road_imputation_of_large_and_small_regions_and_empty_rows(shape):
    rng = np.random.default_rng(sum(shape))
    view = rng.uniform(0, 255, shape + (3,))
    removed = rng.random(shape) < 0.15  # scattered small regions
    removed[1:8, 2:9] = True  # one region of 64 pixels or more
    removed[:, 0] = False
    removed[shape[0] - 2] = True  # a full row
    removed[shape[0] - 4] = False  # an empty one
    np.testing.assert_allclose(road.linear_imputation(view, removed), hand_imputation(view, removed), atol=1e-3)
    with pytest.raises(GradcamError, match="at least one kept pixel"):
        road.linear_imputation(view, np.ones(shape, bool))


def test_road_noise_is_documented_and_seeded_per_view():
    view = np.random.default_rng(1).uniform(0, 255, (6, 5, 3))
    removed = np.zeros((6, 5), bool)
    removed[2:4, 1:4] = True
    plain = road.linear_imputation(view, removed)
    noisy = road.linear_imputation(view, removed, noise=2.55, rng=np.random.default_rng(5))
    expected = plain[removed] + 2.55 * np.random.default_rng(5).standard_normal((6, 5, 3))[removed]
    np.testing.assert_allclose(noisy[removed], expected, rtol=1e-5)
    np.testing.assert_array_equal(noisy[~removed], plain[~removed])
    assert F.ROAD_NOISE == pytest.approx(2.55)
    # the generator of view v, p = 30, MoRF: default_rng([seed, crc32(v as float32), 30, 1])
    single_map = np.arange(30, dtype=np.float32).reshape(6, 5)[::-1]
    rows = F.road_views(view, single_map, percentages=(30,), seed=7)
    digest = zlib.crc32(view.astype(np.float32).tobytes())
    removed = F._ranks(single_map) < 9  # 30 % of 30 pixels, the most relevant
    by_hand = road.linear_imputation(view.astype(np.float32), removed, F.ROAD_NOISE,
                                  np.random.default_rng([7, digest, 30, 1]))
    np.testing.assert_array_equal(rows[0], by_hand)


def road_probabilities(views):
    """A model reading the top-left 4 x 4 pixels' contrast, which imputation smooths away."""
    quadrant = np.asarray(views, dtype=np.float64)[:, :4, :4]
    p = sigmoid(np.abs(quadrant - 127.5).mean(axis=(1, 2, 3)) / 16.0 - 2.0)
    return np.stack([p, 1.0 - p], axis=1)


def test_road_is_deterministic_and_a_batch_equals_its_images_one_by_one():
    rng = np.random.default_rng(2)
    views = rng.uniform(0, 255, (3, 8, 8, 3)).astype(np.float32)
    maps = [quadrant_map(8, 0, 0) + 0.1 * rng.random((8, 8)), rng.random((8, 8)), F.uniform_map((8, 8))]
    classes = [0, 1, 0]
    morf, lerf = F.road_curves(views, maps, classes, road_probabilities)
    assert morf.shape == lerf.shape == (3, 9)
    again = F.road_curves(views, maps, classes, road_probabilities)
    np.testing.assert_array_equal(morf, again[0])
    np.testing.assert_array_equal(lerf, again[1])
    for i in range(3):
        single = F.road_curves(views[i : i + 1], maps[i : i + 1], classes[i : i + 1], road_probabilities)
        np.testing.assert_array_equal(single[0][0], morf[i])
        np.testing.assert_array_equal(single[1][0], lerf[i])
    other = F.road_curves(views, maps, classes, road_probabilities, seed=1)
    assert not np.array_equal(other[0], morf)
    # two different views get different noise: the same map, the same removed pixels
    a = F.road_views(views[0], maps[1], (50,)) - F.road_views(views[0], maps[1], (50,), noise=0.0)
    b = F.road_views(views[1], maps[1], (50,)) - F.road_views(views[1], maps[1], (50,), noise=0.0)
    assert np.abs(a).max() > 0 and not np.allclose(a, b)
    # the map of the quadrant the model reads: MoRF imputes it first (its contrast gone from
    # 10 %, 6 of its 16 pixels, on), LeRF only from 80 % (the 48 other pixels go first)
    assert morf[0].mean() < lerf[0].mean() - 0.1


# -- scoring calls, results, summary -------------------------------------------------------------


def test_all_steps_of_a_batch_go_to_one_scoring_call_per_figure():
    calls = []

    def counted(views):
        calls.append(len(views))
        return quadrant_probabilities(views)

    rng = np.random.default_rng(4)
    views = rng.uniform(0, 255, (3, 8, 8, 3)).astype(np.float32)
    maps = [quadrant_map(8, 0, 0), quadrant_map(8, 1, 1), F.uniform_map((8, 8))]
    results = F.evaluate(views, maps, [0, 0, 1], counted, method="gradcam", steps=20)
    # deletion 3 x 21, insertion 3 x 21, the masked views 3 (Y is deletion's first point), ROAD 3 x 18
    assert calls == [63, 63, 3, 54]
    calls.clear()
    F.deletion_curves(views, maps, [0, 0, 1], counted, steps=20, budget_bytes=2 * 21 * views[0].nbytes)
    assert calls == [42, 21]  # a budget of two images' curves: whole images per call
    assert [r.method for r in results] == ["gradcam"] * 3
    first = results[0]
    assert first.probability == pytest.approx(quadrant_probabilities(views[:1])[0, 0])
    assert first.deletion_curve[0] == first.insertion_curve[-1] == pytest.approx(first.probability)
    assert first.deletion_auc == pytest.approx(F.area_under_curve(first.deletion_curve, first.fractions))
    assert not first.increase and first.masked_probability == pytest.approx(first.probability)  # map = 1 there
    record = results[2].as_record()
    assert record["class"] == 1 and len(record["road_morf"]) == 9 and record["baseline"] == "zero"


def test_summary_averages_over_images_per_method():
    views = np.random.default_rng(5).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    maps = [quadrant_map(8, 0, 0), quadrant_map(8, 0, 1)]
    results = F.evaluate(views, maps, [0, 0], quadrant_probabilities, method="gradcam", steps=4)
    uniform = F.evaluate(views, [F.uniform_map((8, 8))] * 2, [0, 0], quadrant_probabilities, method="uniform",
                         steps=4, road=False)
    table = F.summary(results + uniform)
    assert list(table) == ["gradcam", "uniform"]
    figures = table["gradcam"]
    assert figures["images"] == 2
    assert figures["deletion_auc"] == pytest.approx((results[0].deletion_auc + results[1].deletion_auc) / 2)
    assert figures["average_drop_percent"] == pytest.approx(50 * (results[0].drop + results[1].drop))
    morf = np.mean([r.road_morf for r in results], axis=0)
    lerf = np.mean([r.road_lerf for r in results], axis=0)
    assert figures["road_combined"] == pytest.approx((lerf.mean() - morf.mean()) / 2)
    np.testing.assert_allclose(figures["deletion_curve"], np.mean([r.deletion_curve for r in results], axis=0))
    # a uniform map keeps the whole view: no drop, never an increase; no ROAD figures asked for
    assert table["uniform"]["average_drop_percent"] == 0.0
    assert table["uniform"]["increase_in_confidence_percent"] == 0.0
    assert "road_combined" not in table["uniform"]


def test_random_maps_are_seeded():
    np.testing.assert_array_equal(F.random_map((5, 6), seed=3), F.random_map((5, 6), seed=3))
    assert not np.array_equal(F.random_map((5, 6), seed=3), F.random_map((5, 6), seed=4))
    assert F.uniform_map((5, 6, 3)).shape == (5, 6)


def test_with_the_engine_of_a_real_model(keras):
    """The callable as the CLI builds it: preprocess the RGB views, score with the engine's
    compiled, chunked forward step; Y equals the probability the map's batch reported."""
    from gradcam_cli import Explainer, load_model
    from gradcam_cli.files.images import load_rgb, model_view
    from gradcam_cli.models.preprocess import preprocess

    loaded = load_model("demo-gap")
    explainer = Explainer(loaded, batch_size=2)
    engine = explainer.build().engine
    rgbs = [load_rgb(SAMPLES / "cat.png"), load_rgb(SAMPLES / "synthetic_circle.png")]
    inputs, _ = explainer.prepare(rgbs)
    computed = explainer.compute(inputs, [-1, -1])
    views = np.stack([model_view(rgb, loaded.input_size)[0] for rgb in rgbs])
    calls = counting(engine, "probabilities")
    probabilities = lambda rgb: engine.probabilities(preprocess(rgb, loaded.preprocess))
    results = F.evaluate(views, computed.small_maps, computed.classes, probabilities, method="gradcam", steps=5)
    assert calls == [12, 12, 2, 36]
    for i, result in enumerate(results):
        assert result.probability == pytest.approx(float(computed.probabilities[i, computed.classes[i]]), abs=1e-5)
        assert 0.0 <= result.deletion_auc <= 1.0 and 0.0 <= result.insertion_auc <= 1.0
