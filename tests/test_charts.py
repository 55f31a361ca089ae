"""files.charts (matplotlib): the pictures' sizes, that they repeat exactly, and that what they show
sits where the data puts it (lines at their values, bars at their heights, peaks where they are)."""

import numpy as np
import pytest

from gradcam_cli.errors import GradcamError
from gradcam_cli.evaluate import faithfulness_report
from gradcam_cli.files import charts


def hits(picture, colour, tolerance=12):
    """A mask of the pixels within `tolerance` (sum of channel differences) of an RGB colour."""
    return np.abs(picture.astype(int) - np.array(colour)).sum(axis=-1) <= tolerance


def size_of(inches):
    return (round(inches[1] * charts.DPI), round(inches[0] * charts.DPI), 3)


def test_a_planted_line_lies_where_its_values_put_it():
    xs = np.linspace(0.0, 1.0, 11)
    panel = charts.Panel("planted", "x", {"falling": (xs, 1.0 - xs), "half": (xs, np.full(11, 0.5))})
    picture = charts.curves([panel], "y", (0.0, 1.0))
    assert picture.shape == size_of(charts.CURVES_SIZE) and picture.dtype == np.uint8
    assert np.array_equal(picture, charts.curves([panel], "y", (0.0, 1.0)))  # the same pixels every time
    left, right, top, bottom = axes_box(picture)
    assert right - left > 500 and bottom - top > 300
    first, second = charts.colours(2)
    for fraction in (0.1, 0.25, 0.4, 0.75, 0.9):  # y = 1 - x (at 0.5 the second line crosses it, on top)
        rows = np.nonzero(hits(picture[:, int(round(left + fraction * (right - left)))], first))[0]
        assert abs(rows.mean() - (top + fraction * (bottom - top))) <= 2
    rows, columns = np.nonzero(hits(picture, second))
    legend = columns > right + 2  # the legend's sample, beside the axes
    assert legend.any() and abs(np.median(rows[~legend]) - (top + bottom) / 2) <= 2  # y = 0.5: half-way down
    assert columns[~legend].min() <= left + 2 and columns[~legend].max() >= right - 2


def axes_box(picture):
    """(left, right, top, bottom) pixel of the (first) axes' frame: the black spines, the longest
    runs of dark pixels."""
    dark = picture.max(axis=-1) < 40
    columns = np.nonzero(dark.sum(axis=0) > 0.5 * picture.shape[0])[0]
    rows = np.nonzero(dark.sum(axis=1) > 0.3 * picture.shape[1])[0]
    return columns.min(), columns.max(), rows.min(), rows.max()


def test_more_series_than_colours_change_their_line_style():
    assert charts.styles(23) == ["-"] * 10 + ["--"] * 10 + [":"] * 3
    assert charts.colours(11)[10] == charts.colours(1)[0]
    series = {f"s{k}": ([0.0, 1.0], [k / 23, k / 23]) for k in range(23)}
    picture = charts.curves([charts.Panel("many", "x", series)], "y", (0.0, 1.0))
    assert picture.shape == size_of(charts.CURVES_SIZE)


def test_categorical_steps_widen_the_figure():
    steps = [f"layer{k}" for k in range(30)]
    panel = charts.Panel("steps", "step", {"m": (range(30), np.linspace(1, -1, 30))}, x_labels=steps)
    picture = charts.curves([panel], "rho", (-1.0, 1.0), y_ticks=(-1, 0, 1))
    assert picture.shape[1] == round((3.0 + charts.STEP_WIDTH * 30) * charts.DPI)


def bar_span(picture, colour, columns=slice(None), gap=8):
    """(top row, bottom row, first column, last column) of the bar of `colour` in `columns`: the
    columns with at least 10 pixels of the colour (anti-aliased text has a few), and in each the
    longest run of them with gaps under `gap` (a hatched bar's lines break it; the value written
    above a bar does not join it); the rows are the medians over the columns."""
    mask = np.zeros(picture.shape[:2], bool)
    mask[:, columns] = hits(picture[:, columns], colour)
    kept = np.nonzero(mask.sum(axis=0) >= 10)[0]
    spans = []
    for column in kept:
        rows = np.nonzero(mask[:, column])[0]
        runs = np.split(rows, np.nonzero(np.diff(rows) > gap)[0] + 1)
        run = max(runs, key=len)
        spans.append((run[0], run[-1]))
    tops, bottoms = zip(*spans)
    return int(np.median(tops)), int(np.median(bottoms)), kept.min(), kept.max()


def test_bars_stand_at_their_values_and_references_are_grey():
    groups = [charts.BarGroup("first", {"A": 1.0, "B": 0.5, "chance": 0.25}),
              charts.BarGroup("second", {"A": 0.2, "uniform": 0.8})]
    picture = charts.bars(groups, marked=("chance", "uniform"), y_range=(0.0, 1.2))
    assert picture.shape == size_of(charts.BARS_SIZE)
    a, b = charts.colours(2)
    plot = slice(0, int(picture.shape[1] * 0.75))  # left of the legend
    a_top, zero, a_left, a_right = bar_span(picture, a, slice(0, picture.shape[1] // 2 - 60))
    b_top, b_zero, b_left, _ = bar_span(picture, b, plot)
    assert abs(b_zero - zero) <= 1 and b_left > a_right - 2  # side by side on one base
    unit = (zero - a_top) / 1.0
    assert abs((zero - b_top) - 0.5 * unit) <= 2
    chance_top, chance_zero, chance_left, _ = bar_span(picture, charts.REFERENCE_GREYS[0], plot)
    assert abs((chance_zero - chance_top) - 0.25 * unit) <= 3 and chance_left > b_left
    uniform_top, _, uniform_left, _ = bar_span(picture, charts.REFERENCE_GREYS[1], plot)
    assert abs((zero - uniform_top) - 0.8 * unit) <= 3 and uniform_left > picture.shape[1] // 2 - 60
    # the second group's A bar (0.2) is a fifth of the first's
    second_top, _, _, _ = bar_span(picture, a, slice(picture.shape[1] // 2 - 60, int(picture.shape[1] * 0.75)))
    assert abs((zero - second_top) - 0.2 * unit) <= 2
    # hatched: the reference bars carry the dark hatch lines inside them
    inside = picture[chance_top + 3 : chance_zero - 3, chance_left + 2 : chance_left + 8]
    assert hits(inside, charts.HATCH_COLOUR, tolerance=60).any()


def test_bar_groups_of_an_eval_report():
    report = {"methods": {"gradcam": {"pointing": 1.0, "energy_in_box": 0.5, "deletion_auc": 0.25,
                                      "insertion_auc": 0.9}},
              "chance": {"pointing": 0.45, "energy_in_box": 0.1, "energy_in_mask": None},
              "faithfulness": {"baselines": {"uniform": {"deletion_auc": 0.4, "insertion_auc": float("nan")}}}}
    groups, marked = faithfulness_report.bar_groups(report)
    assert marked == ("chance", "uniform")
    assert [g.title.split("\n")[0] for g in groups] == ["pointing", "energy in box", "deletion AUC", "insertion AUC"]
    assert groups[0].values == {"gradcam": 1.0, "chance": 0.45, "uniform": None}
    assert groups[3].values == {"gradcam": 0.9, "chance": None, "uniform": None}  # NaN: not drawn
    assert faithfulness_report.render_bars(report, "m").shape == size_of(charts.BARS_SIZE)
    with pytest.raises(GradcamError, match="no localization or deletion"):
        faithfulness_report.render_bars({"methods": {"gradcam": {"road_morf": 0.1}}})


def test_layer_peaks_mark_each_peak_and_bar_its_share():
    image = np.zeros((100, 100, 3), np.uint8)
    items = [("gradcam@a", (10, 10), 0.1), ("gradcam@b", (90, 90), 0.3), ("gradcam@c", None, None)]
    picture = charts.layer_peaks([(image, "scene", items)])
    assert picture.shape == size_of(charts.LAYERS_ROW)
    first, second, _ = charts.colours(3)
    image_half = slice(0, picture.shape[1] // 3)
    top1, bottom1, left1, right1 = bar_span(picture, first, image_half)
    top2, bottom2, left2, right2 = bar_span(picture, second, image_half)
    assert right1 < left2 and bottom1 < top2  # (10, 10) up and left of (90, 90)
    bars_half = slice(picture.shape[1] // 3, picture.shape[1])
    _, _, start1, end1 = bar_span(picture, first, bars_half)
    _, _, start2, end2 = bar_span(picture, second, bars_half)
    # from one base (the spine hides a few pixels of each), 30 % three times as long as 10 %
    assert abs(start1 - start2) <= 1 and abs((end2 - start2) / (end1 - start1) - 3.0) < 0.1
    two = charts.layer_peaks([(image, "one", items[:1]), (image, "two", items[1:2])])
    assert two.shape == (2 * picture.shape[0], picture.shape[1], 3)
