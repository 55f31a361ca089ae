"""render.line_plot with more series than colours: every series named in the legend (the
picture grows to hold it), and the series past the tenth drawn dashed or dotted, so no two
lines look alike."""

import numpy as np

from gradcam_cli.files import render


def _flat_series(count):
    # Series k: a horizontal line at y = 0.02 + 0.04 k, markers off.
    return {f"series {k}": ([0.0, 1.0], [0.02 + 0.04 * k] * 2) for k in range(count)}


def test_every_series_is_in_the_legend_and_repeated_colours_are_dashed():
    count = 23
    picture = render.line_plot(_flat_series(count), (0.0, 1.0), "title", "x", markers=False, height=300)
    assert picture.shape[0] >= 34 + 8 + 22 * count  # the legend's last row fits
    assert render.line_dashes(count)[:10] == [None] * 10
    assert render.line_dashes(count)[10:20] == [render.DASHES[1]] * 10
    assert render.line_dashes(count)[20:] == [render.DASHES[2]] * 3
    colour = np.array(render.LINE_COLOURS[0], dtype=np.uint8)
    hits = np.all(picture == colour, axis=-1)
    # Plot area: left 56, 320 wide; y of a value v: 34 + (1 - v) * (300 - 10 - 34).
    row = lambda k: int(round(34 + (1 - (0.02 + 0.04 * k)) * (300 - 10 - 34)))
    solid, dashed, dotted = (int(hits[row(k), 57:376].sum()) for k in (0, 10, 20))
    assert solid >= 318
    assert 0.4 * solid < dashed < 0.85 * solid and 0.3 * solid < dotted < dashed

    def runs(k):  # separate stretches of the colour along the line
        line = hits[row(k), 57:376].astype(int)
        return int((np.diff(line) == 1).sum() + line[0])

    assert runs(0) == 1
    assert abs(runs(10) - 319 / sum(render.DASHES[1])) <= 2  # one dash per period
    assert abs(runs(20) - 319 / sum(render.DASHES[2])) <= 3
    # The legend: series 0's swatch is a filled rectangle, series 10's and 20's a line of their pattern.
    legend_x = 56 + 320 + 16
    swatch = hits[34 + 8 : 34 + 8 + render.SWATCH[1], legend_x : legend_x + render.SWATCH[0]]
    assert swatch.all()
    middle = 34 + 8 + 22 * 10 + render.SWATCH[1] // 2
    assert 0 < hits[middle, legend_x : legend_x + render.SWATCH[0]].sum() < render.SWATCH[0]


def test_ten_series_are_drawn_as_before():
    picture = render.line_plot(_flat_series(3), (0.0, 1.0), "title", "x", markers=False, height=300)
    assert picture.shape[0] == 300 + 14 + 16 + 22  # the plot's own height and its x labels
