"""The layers plot of `gradcam compare --layers A,B,...`: where each layer's map peaks on the image,
and how sharp it is, written beside the compare figure as NAME[.TAG].layers.png.

A figure whose cells span two or more layers gets one (`shows_layers`; `gradcam dilated --compare`
draws its three cells at one layer, and gets none). The plot is drawn from the image's compare
record, so it shows what the record says: for every map cell (a method at a layer; gradient
cells, which do not depend on the layer, are left out) its `stats.peak`, the pixel (x, y) of the
map's maximum at the image's size, and its `stats.area_above_half`, the share of the image at or
above half the map's maximum (smaller: a sharper map). Drawn by files.charts.layer_peaks
(matplotlib): the image with a numbered marker at each peak, and a bar per cell.
"""

from pathlib import Path

from gradcam_cli.files import charts

KIND = "layers"


def shows_layers(rows):
    """Whether the figure of these rows (figures.Row) gets a layers plot: its cells name two or
    more layers."""
    return len({ready.cell.layer for row in rows for ready in row.ready if ready.cell.layer}) >= 2


def layers_path(options, name):
    """OUTDIR/NAME[.TAG].layers.png, beside the figure NAME[.TAG].compare.png."""
    return Path(options.output_dir) / ".".join(part for part in (name, options.tag, KIND, "png") if part)


def peak_items(record):
    """[(label, peak (x, y) or None, area share or None)] of a compare record's map cells: label
    METHOD[ VARIANT]@LAYER, with the row's model when the record has several rows."""
    items = []
    rows = [row for row in record.get("rows") or () if isinstance(row, dict)]
    for row in rows:
        for cell in row.get("cells") or ():
            stats = cell.get("stats") or {}
            if not cell.get("applicable", True) or "area_above_half" not in stats:
                continue
            label = " ".join(str(cell[key]) for key in ("method", "variant") if cell.get(key))
            label += f"@{cell.get('layer')}" + (f" ({row.get('model')})" if len(rows) > 1 else "")
            empty = bool(stats.get("empty")) or stats.get("peak") is None
            items.append((label, None if empty else tuple(int(v) for v in stats["peak"]),
                          None if empty else float(stats["area_above_half"])))
    return items


def render_layers(images):
    """The layers plot of images [(name, uint8 RGB, compare record)]: a row per image (a --grid
    figure has several). uint8 RGB, charts.LAYERS_ROW per image."""
    panels = []
    for name, rgb, record in images:
        rows = [row for row in record.get("rows") or () if isinstance(row, dict)]
        label = rows[0].get("label", "") if len(rows) == 1 else ""
        panels.append((rgb, f"{name}" + (f": {label}" if label else ""), peak_items(record)))
    return charts.layer_peaks(panels, "where each layer's map peaks, and how much of the image it covers")
