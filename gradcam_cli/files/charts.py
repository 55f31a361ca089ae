"""Charts drawn with matplotlib: line charts (eval's deletion and insertion curves, the
randomisation cascade), grouped bar charts (the eval table) and the layers plot of `compare
--layers` (where each layer's map peaks, and how much of the image lies above half its maximum).

Every chart is a uint8 RGB array (files.outputs.write_png writes it atomically, as every picture
of the tool is written), drawn on matplotlib's Agg canvas through the object API (a `Figure` and
its `FigureCanvasAgg`), never pyplot: no global figure state, no GUI backend, safe in threads.
matplotlib is imported inside each function, so `gradcam --help` does not import it.

Output is deterministic: a fixed size in inches and DPI (the size grows only with what is shown,
by a stated rule), matplotlib's default style (rcParams reset inside the drawing, so a user's
matplotlibrc does not change the picture), its bundled DejaVu Sans font, no timestamps (the PNG is
encoded by OpenCV from the pixels, with no metadata).

Colours: matplotlib's tab10 cycle for methods and layers; past ten series the colours repeat and
the line style changes (solid, dashed, dotted) so every series stays distinguishable. Reference
rows (chance, baselines) are drawn in greys with hatching in bar charts and dashed in line charts,
and the legend says so.
"""

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

DPI = 100
CURVES_SIZE = (10.0, 4.6)  # inches, at DPI: 1000 x 460 pixels
BARS_SIZE = (10.0, 4.8)  # 1000 x 480 pixels
LAYERS_ROW = (10.0, 3.6)  # per image: 1000 x 360 pixels
STEP_WIDTH = 0.45  # a categorical line chart (randomisation): inches per x label, past its minimum width
STYLES = ("-", "--", ":")
# Reference rows of a bar chart: grey shades and hatches, in turn.
REFERENCE_GREYS = ((140, 140, 140), (180, 180, 180), (210, 210, 210), (110, 110, 110))  # RGB
HATCH_COLOUR = (64, 64, 64)
REFERENCE_HATCHES = ("//", "\\\\", "xx", "..")


@dataclass
class Panel:
    """One line chart's axes: its title, the x axis' label and its series {name: (xs, ys)} in
    order (NaN or None breaks a line). x_labels: category names at x = 0, 1, ... (written
    upwards); otherwise x runs over x_range."""

    title: str
    x_label: str
    series: dict
    x_labels: list | None = None
    x_range: tuple = (0.0, 1.0)


@dataclass
class BarGroup:
    """One measure of a bar chart: its title and {row name: value} (None: not measured)."""

    title: str
    values: dict = field(default_factory=dict)


def colours(count):
    """Each series' colour, tab10 in turn (RGB, 0-255)."""
    from matplotlib import colormaps

    table = colormaps["tab10"].colors
    return [tuple(int(round(255 * c)) for c in table[k % len(table)]) for k in range(count)]


def styles(count):
    """Each series' line style: solid for the first ten, then dashed, then dotted, in turn."""
    return [STYLES[(k // 10) % len(STYLES)] for k in range(count)]


@contextmanager
def _figure(size):
    """A matplotlib Figure of `size` inches at DPI on an Agg canvas, drawn with the default style."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context():
        matplotlib.rcParams.update({k: v for k, v in matplotlib.rcParamsDefault.items() if k != "backend"})
        matplotlib.rcParams.update({"font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 10,
                                    "svg.hashsalt": "gradcam-cli", "path.simplify": False})
        figure = Figure(figsize=size, dpi=DPI, layout="constrained")
        FigureCanvasAgg(figure)
        yield figure


def _pixels(figure):
    """The figure as uint8 RGB pixels (its canvas drawn on white)."""
    figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[:, :, :3])


def _rgb(colour):
    return tuple(c / 255.0 for c in colour)


def curves(panels, y_label, y_range, y_ticks=None, dashed=(), title="", size=CURVES_SIZE):
    """Line charts side by side as a uint8 RGB image: one axes per Panel, every series with its
    colour (`colours`) and style (`styles`) in the order of the first panel's series, one legend
    on the right naming each series. y runs over `y_range` on every panel (values clipped to
    it), ticks at `y_ticks` (default matplotlib's); names in `dashed` (references: baselines)
    are drawn dashed and thinner whatever their place. Panels with x_labels widen the figure:
    STEP_WIDTH inches per label beyond size[0]'s room. title: the figure's, above the panels."""
    names = list(dict.fromkeys(name for panel in panels for name in panel.series))
    palette, line_styles = colours(len(names)), styles(len(names))
    steps = max((len(p.x_labels) for p in panels if p.x_labels), default=0)
    width = max(size[0], 3.0 + STEP_WIDTH * steps * len(panels))
    low, high = (float(v) for v in y_range)
    with _figure((width, size[1])) as figure:
        axes = figure.subplots(1, len(panels), squeeze=False)[0]
        handles = {}
        for ax, panel in zip(axes, panels):
            for k, name in enumerate(names):
                if name not in panel.series:
                    continue
                xs, ys = panel.series[name]
                ys = np.clip(np.array([np.nan if y is None else y for y in ys], dtype=np.float64), low, high)
                reference = name in dashed
                (line,) = ax.plot(np.asarray(list(xs), dtype=np.float64), ys, color=_rgb(palette[k]),
                                  linestyle="--" if reference else line_styles[k], linewidth=1.4 if reference else 2.0,
                                  marker="o" if panel.x_labels else None, markersize=4, label=name)
                handles.setdefault(name, line)
            ax.set_title(panel.title)
            ax.set_xlabel(panel.x_label)
            ax.set_ylabel(y_label)
            ax.set_ylim(low, high)
            if y_ticks is not None:
                ax.set_yticks(list(y_ticks))
            if panel.x_labels:
                ax.set_xticks(range(len(panel.x_labels)), [str(label) for label in panel.x_labels], rotation=90)
                ax.set_xlim(-0.3, max(1, len(panel.x_labels) - 1) + 0.3)
            else:
                ax.set_xlim(*panel.x_range)
            ax.grid(True, color="#e0e0e0", linewidth=0.8)
            if low < 0.0 < high:
                ax.axhline(0.0, color="#969696", linewidth=0.8)
        if handles:
            figure.legend([handles[n] for n in names if n in handles],
                          [n + (" (baseline)" if n in dashed else "") for n in names if n in handles],
                          loc="outside right upper", frameon=False)
        if title:
            figure.suptitle(title)
        return _pixels(figure)


def bars(groups, marked=(), title="", y_label="", y_range=None, size=BARS_SIZE):
    """A grouped bar chart as a uint8 RGB image: one group per BarGroup (its title beneath), in
    each a bar per row name that has a value there (the order of first appearance, centred on
    the group), its value written above it, a legend of the rows. Rows named in `marked`
    (chance, baselines) are grey and hatched; the others take `colours` in turn. y_range: default from min(0, values) to
    max(1, values) with a margin above."""
    rows = list(dict.fromkeys(name for group in groups for name in group.values))
    plain = [name for name in rows if name not in marked]
    palette = dict(zip(plain, colours(len(plain))))
    values = [float(v) for g in groups for v in g.values.values() if v is not None and np.isfinite(v)]
    if y_range is None:
        low, high = min([0.0] + values), max([1.0] + values)
        y_range = (low, high + 0.06 * (high - low))
    present = [[name for name in rows if group.values.get(name) is not None] for group in groups]
    width = 0.8 / max([1] + [len(names) for names in present])
    with _figure(size) as figure:
        ax = figure.subplots()
        reference = 0
        for name in rows:
            xs = [g for g, names in enumerate(present) if name in names]
            heights = [float(groups[g].values[name]) for g in xs]
            offsets = [(present[g].index(name) - (len(present[g]) - 1) / 2) * width for g in xs]
            if name in marked:
                style = {"color": _rgb(REFERENCE_GREYS[reference % len(REFERENCE_GREYS)]),
                         "hatch": REFERENCE_HATCHES[reference % len(REFERENCE_HATCHES)], "edgecolor": _rgb(HATCH_COLOUR),
                         "linewidth": 0.6}
                reference += 1
            else:
                style = {"color": _rgb(palette[name])}
            drawn = ax.bar([x + offset for x, offset in zip(xs, offsets)], heights, width=width,
                           label=name + (" (reference)" if name in marked else ""), **style)
            ax.bar_label(drawn, fmt="%.2f", fontsize=7, padding=2)
        ax.set_xticks(range(len(groups)), [group.title for group in groups])
        ax.set_xlim(-0.5, len(groups) - 0.5)
        ax.set_ylim(*y_range)
        ax.set_ylabel(y_label)
        ax.set_title(title)
        ax.grid(True, axis="y", color="#e0e0e0", linewidth=0.8)
        ax.set_axisbelow(True)
        ax.axhline(0.0, color="black", linewidth=0.8)
        figure.legend(loc="outside right upper", frameon=False)
        return _pixels(figure)


def layer_peaks(panels, title="", size=LAYERS_ROW):
    """Where each layer's map peaks, and how spread it is: per panel (an image) a row of two
    axes, the image with a numbered marker at each map's peak, and horizontal bars of each map's
    share of the image at or above half its maximum (smaller: sharper). panels: a list of
    (uint8 RGB image, panel title, [(label, peak (x, y) or None, area share or None)]); a label's
    colour is the same in every panel (first appearance order). The figure is size[1] inches
    tall per panel."""
    labels = list(dict.fromkeys(label for _, _, items in panels for label, _, _ in items))
    palette = dict(zip(labels, colours(len(labels))))
    with _figure((size[0], size[1] * max(1, len(panels)))) as figure:
        grid = figure.subplots(max(1, len(panels)), 2, squeeze=False, width_ratios=(1, 1.6))
        for (image_ax, bar_ax), (rgb, heading, items) in zip(grid, panels):
            image_ax.imshow(rgb, interpolation="antialiased")
            image_ax.set_title(heading)
            image_ax.set_xticks([])
            image_ax.set_yticks([])
            for number, (label, peak, _) in enumerate(items, 1):
                if peak is None:
                    continue
                image_ax.plot([peak[0]], [peak[1]], marker="o", markersize=11, color=_rgb(palette[label]),
                              markeredgecolor="white", markeredgewidth=1.5)
                image_ax.annotate(str(number), (peak[0], peak[1]), color="white", fontsize=7, ha="center",
                                  va="center", fontweight="bold")
            names = [f"{number}. {label}" for number, (label, _, _) in enumerate(items, 1)]
            shares = [0.0 if area is None else 100.0 * float(area) for _, _, area in items]
            positions = list(range(len(items)))
            bar_ax.barh(positions, shares, color=[_rgb(palette[label]) for label, _, _ in items], height=0.6)
            for y, (share, (_, peak, area)) in enumerate(zip(shares, items)):
                text = "empty map" if area is None or peak is None else \
                    f"{share:.1f}%  peak ({peak[0]}, {peak[1]})"
                bar_ax.annotate(text, (share, y), xytext=(4, 0), textcoords="offset points", va="center",
                                fontsize=8)
            bar_ax.set_yticks(positions, names)
            bar_ax.invert_yaxis()
            bar_ax.set_xlim(0.0, max([10.0] + shares) * 1.45)
            bar_ax.set_xlabel("% of the image at or above half the map's maximum (smaller: sharper)")
            bar_ax.grid(True, axis="x", color="#e0e0e0", linewidth=0.8)
            bar_ax.set_axisbelow(True)
        if title:
            figure.suptitle(title)
        return _pixels(figure)
