"""Tile sheets: equal tiles (a volume's slices, a clip's frames) laid out in one picture that a page
can crop (docs: the clips and sheets contract).

Layout: tiles of one size (h, w) laid row-major, `columns` to a row, with no gaps and no captions
inside the tiles, so that tile i lies at x = (i % columns) * w, y = (i // columns) * h. The
cells of the last row that hold no tile are black. The labels ("k=5", "frame 12 · 0.40 s") are
not drawn: they go into the layout, which the JSON record carries beside the picture's path.

Columns (a choice): as many as fit in SHEET_WIDTH pixels set the number of rows, then the tiles
are spread evenly over those rows (16 tiles of 112 px: 14 fit, so 2 rows of 8, not 14 + 2), so
the last row is as full as it can be. A tile wider than SHEET_WIDTH gets a row of its own.
"""

import math

import numpy as np

from gradcam_cli.errors import GradcamError

SHEET_WIDTH = 1600  # a sheet's width at most, in pixels, unless one tile is wider
AXES = ("d3", "frames")  # what the tiles run along: a volume's third axis, or a clip's frames


def columns_for(count, width, max_width=SHEET_WIDTH):
    """The columns of a sheet of `count` tiles `width` pixels wide (the module's docstring)."""
    fit = max(1, min(count, max_width // max(1, width)))
    rows = math.ceil(count / fit)
    return math.ceil(count / rows)


def tile_sheet(tiles, labels, indices, axis):
    """The sheet of `tiles` (N, h, w, 3) uint8 and its layout: (picture (rows * h, columns * w, 3)
    uint8, {"count", "columns", "tile": [h, w], "axis", "labels", "indices"}). labels: a string
    per tile; indices: an int per tile (the slice's k, the frame's index in the clip); axis: 'd3'
    or 'frames'. GradcamError (one line) for tiles, labels or indices that do not fit."""
    tiles = np.asarray(tiles)
    if tiles.ndim != 4 or tiles.shape[3] != 3 or 0 in tiles.shape or tiles.dtype != np.uint8:
        raise GradcamError(f"a sheet's tiles are (N, h, w, 3) uint8, N at least 1. Received: shape {tiles.shape}, "
                           f"dtype {tiles.dtype}")
    count, height, width = (int(n) for n in tiles.shape[:3])
    if len(labels) != count or len(indices) != count:
        raise GradcamError(f"a sheet needs a label and an index per tile. Received: {count} tiles, "
                           f"{len(labels)} labels, {len(indices)} indices")
    if axis not in AXES:
        raise GradcamError(f"a sheet's axis is one of {', '.join(AXES)}. Received: axis={axis!r}")
    columns = columns_for(count, width)
    rows = math.ceil(count / columns)
    picture = np.zeros((rows * height, columns * width, 3), dtype=np.uint8)  # unused cells stay black
    for i, tile in enumerate(tiles):
        y, x = (i // columns) * height, (i % columns) * width
        picture[y : y + height, x : x + width] = tile
    layout = {"count": count, "columns": columns, "tile": [height, width], "axis": axis,
              "labels": [str(label) for label in labels], "indices": [int(k) for k in indices]}
    return picture, layout


def tile(picture, layout, i):
    """Tile i cut out of a sheet `picture` by its `layout` (what a page does)."""
    height, width = layout["tile"]
    columns = layout["columns"]
    y, x = (i // columns) * height, (i % columns) * width
    return picture[y : y + height, x : x + width]
