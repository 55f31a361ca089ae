"""Every picture of the README and the docs' gallery, made by the tool itself (`make gallery`).

    python scripts/gallery.py                       # all of them, into docs/images/gallery/
    python scripts/gallery.py --only gradcam,cam --out /tmp/g

Offline and deterministic: the shipped demo models (gradcam_cli/data/demo-*.keras) on the sample
images (sample_images/), no download, Keras's seeds fixed; two runs write the same bytes
(tests/test_gallery.py checks it). Writes:

  overview.png   the README's opening picture: a row per demo model on a sample scene (the input,
                 Grad-CAM, Guided Grad-CAM, CAM or attention rollout, a segment target for
                 demo-unet; a blank cell, captioned, where a method does not apply), the volume
                 montage of demo-volume on the sample scan as `gradcam --save overlay` writes it,
                 and the frames of demo-clip on the sample clip with their maps.
  volume-montage.jpg  the montage alone (demo-volume's Grad-CAM overlay of the sample scan, as
                 `gradcam --save overlay` writes it): JPEG, quality JPEG_QUALITY (the scan's noise is
                 photo-like: a PNG of it is 800 KB).
  clip-frames.png    the frames demo-clip takes from the sample clip, each with its map, side by side.
  METHOD.png     one per registered method (gradcam_cli.explain.methods.METHODS), on the same three
                 scenes (IMAGES), with demo-gap (its GAP + Dense head lets every map method run,
                 CAM included), or demo-vit for the methods that read a transformer's attention.
                 Every option at its default; a backprop method (guided, deconvnet) adds its input
                 gradient times the map (the input gradient alone, a noisy picture, would push the
                 file past 60 KB: `--save gradient` writes it).
  benchmarks/NAME.png  the benchmarks page's charts (throughput, methods, volume, latency), drawn by
                 benchmarks/charts.py from the measured figures in docs/data/benchmarks/NAME.json
                 (benchmarks/results.py: their format); nothing is measured here.
  ../../data/method-figures.json and .inc  each method's localization and faithfulness figures
                 (method_figures: gradcam_cli.evaluate.assess on the generated scenes, the model of its
                 picture), as JSON and as the Markdown the methods page includes ({include}).

Every map, overlay and gradient picture comes from the library (Explanation.overlay,
files.render.gradient_picture, explain.methods.guided.guided_gradcam, the volume montage of
Explanation.overlay); matplotlib (Agg) only lays them out and captions them.

File format: PNG quantised to a palette (PALETTE_OVERVIEW / PALETTE_METHOD colours, median cut, no
dithering: Pillow, deterministic): the pictures are flat synthetic scenes and jet maps, which a
palette keeps exact enough and small (a JPEG would blur the shapes' edges and the captions).
Written by Pillow from the rendered pixels, so no matplotlib metadata (version, date) enters
the files.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["MPLBACKEND"] = "Agg"

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_images"
OUT = ROOT / "docs" / "images" / "gallery"
IMAGES = ("synthetic_two_circle_triangle.png", "synthetic_square.png", "synthetic_cross.png")
OVERVIEW_IMAGE = "synthetic_two_circle_triangle.png"
SCAN = "synthetic_sphere.nii.gz"
CLIP = "moving_square.avi"
PALETTE_OVERVIEW = 256
PALETTE_METHOD = 128
DPI = 100
JPEG_QUALITY = 85
EXTRA = ("volume-montage", "clip-frames")  # pictures beside the overview and the methods'
BENCHMARKS = ROOT / "docs" / "data" / "benchmarks"  # the measured figures the charts are drawn from
CHARTS = ("throughput", "methods", "volume", "latency")  # benchmarks/charts.py, one chart per JSON file
PALETTE_CHART = 64
DATA = ROOT / "docs" / "data"
# method_figures: scenes of gradcam_cli.evaluate.scenes (seed 1) for localization (one-object scenes,
# two-object pairs for discrimination) and the first DELETION_SCENES of them for deletion/insertion.
SCENES, PAIRS, DELETION_SCENES, SEED = 24, 12, 12, 1
METHOD_MODEL = "demo-gap"  # every map method applies to it (CAM needs its GAP + Dense head)
ATTENTION_MODEL = "demo-vit"  # for the methods that read attention (Method.reads_attention)

# The pictures' matplotlib settings, applied around the drawing only (main), not to the importing process.
STYLE = {"font.size": 8, "font.family": "DejaVu Sans", "axes.titlesize": 8, "figure.facecolor": "white",
         "savefig.facecolor": "white"}


def save_png(figure, path, colours):
    """The figure's pixels as a palette PNG (Pillow: median cut, no dithering, optimised), no metadata."""
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3]
    plt.close(figure)
    picture = Image.fromarray(np.ascontiguousarray(pixels)).quantize(
        colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, format="PNG", optimize=True)
    return path


def blank(axis, text):
    """A cell where a method does not apply: a light frame and why, in the cell."""
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_facecolor("#f3f3f3")
    for spine in axis.spines.values():
        spine.set_color("#cccccc")
    axis.text(0.5, 0.5, text, ha="center", va="center", fontsize=7, color="#555555", wrap=True,
              transform=axis.transAxes)


def picture(axis, rgb, caption=None):
    axis.imshow(rgb, interpolation="nearest")
    axis.set_xticks([])
    axis.set_yticks([])
    for spine in axis.spines.values():
        spine.set_visible(False)
    if caption:
        axis.set_xlabel(caption, fontsize=7, labelpad=2)


def caption_of(explanation):
    """'circle 0.98' for a class; the target's spec for another target."""
    if explanation.target is not None:
        return str(explanation.target.get("spec", explanation.label))
    return f"{explanation.label} {explanation.probability:.2f}"


def guided_product(explanation):
    """Guided Grad-CAM's picture: the guided input gradient times the map, drawn by the library."""
    from gradcam_cli.explain.methods.guided import guided_gradcam
    from gradcam_cli.files import render

    product = guided_gradcam(explanation.input_gradient, explanation.small_map)
    return render.gradient_picture(product, explanation.box, explanation.image.shape)


class Models:
    """The demo models, each loaded once."""

    def __init__(self):
        self._loaded = {}

    def __getitem__(self, name):
        if name not in self._loaded:
            from gradcam_cli import load_model

            self._loaded[name] = load_model(name, device="cpu")
        return self._loaded[name]


def explain(models, model, image, method="gradcam", **arguments):
    from gradcam_cli import Explainer

    return Explainer(models[model], method=method, **arguments)([str(SAMPLES / image)])[0]


# --- the overview: a row per demo model ------------------------------------------------------------------

COLUMNS = ("input", "Grad-CAM", "Guided Grad-CAM", "CAM or attention", "segment target")


def overview_rows(models):
    """Per image model: (name, [(picture, caption) or (None, why blank)] per COLUMNS)."""
    image = OVERVIEW_IMAGE
    rgb = np.asarray(Image.open(SAMPLES / image).convert("RGB"))
    rows = []
    for model in ("demo-gap", "demo-vgg", "demo-vit"):
        grad = explain(models, model, image)
        guided = explain(models, model, image, "guided")
        if model == "demo-gap":
            third = explain(models, model, image, "cam")
            third_cell = (third.overlay(), f"CAM: {caption_of(third)}")
        elif model == "demo-vit":
            third = explain(models, model, image, "rollout")
            third_cell = (third.overlay(), f"rollout: {caption_of(third)}")
        else:
            third_cell = (None, "CAM needs a\nGAP + Dense head;\nattention, a ViT")
        rows.append((model, [(rgb, image.replace("synthetic_", "").replace(".png", "")),
                             (grad.overlay(), caption_of(grad)), (guided_product(guided), caption_of(guided)),
                             third_cell, (None, "a classifier:\nno segments")]))
    circle = explain(models, "demo-unet", image, target="segment:circle")
    guided = explain(models, "demo-unet", image, "guided", target="segment:circle")
    triangle = explain(models, "demo-unet", image, target="segment:triangle")
    rows.append(("demo-unet", [(rgb, "segmenter"), (circle.overlay(), caption_of(circle)),
                               (guided_product(guided), caption_of(guided)),
                               (None, "a segmenter:\nno GAP head,\nno attention"),
                               (triangle.overlay(), caption_of(triangle))]))
    return rows


def volume_montage(models):
    """demo-volume's Grad-CAM overlay montage of the sample scan, as the tool writes it."""
    from gradcam_cli import Explainer
    from gradcam_cli.files.volumes import read_volume

    volume = read_volume(SAMPLES / SCAN)
    [explanation] = Explainer(models["demo-volume"])(volume.array, names=[SCAN])
    return explanation.overlay(volume=volume), explanation


def clip_frames(models):
    """demo-clip's Grad-CAM on the sample clip: each taken frame with its map (one colour scale
    over the clip, as the clip's overlay and sheet are drawn), and the frames' captions."""
    from gradcam_cli import Explainer
    from gradcam_cli.files import render
    from gradcam_cli.files.clips import read_clip

    path = SAMPLES / CLIP
    loaded = models["demo-clip"]
    [explanation] = Explainer(loaded)([str(path)])
    clip = read_clip(path, frames=explanation.map.shape[0])
    frames = [render.overlay(frame, render.colorize(frame_map), 0.4)  # as files.clip_outputs blends a frame
              for frame, frame_map in zip(clip.array, explanation.map)]
    times = clip.times or [None] * len(frames)
    captions = [f"frame {k}" + ("" if t is None else f" · {t:.1f} s") for k, t in zip(clip.indices, times)]
    return frames, captions, explanation


def overview(models, path):
    rows = overview_rows(models)
    montage, scan = volume_montage(models)
    frames, frame_captions, clip = clip_frames(models)
    columns = len(COLUMNS)
    cell = 1.55
    width = columns * cell + 0.45
    montage_height = 4.6
    clip_height = 1.25
    heights = [0.25] + [cell + 0.25] * len(rows) + [montage_height + 0.35, clip_height]
    figure = plt.figure(figsize=(width, sum(heights) + 0.4), dpi=DPI)
    grid = figure.add_gridspec(len(heights), columns, height_ratios=heights, left=0.06, right=0.99, top=0.965,
                               bottom=0.01, hspace=0.25, wspace=0.06)
    figure.suptitle("gradcam-cli on its demo models (make gallery)", fontsize=10, y=0.995)
    for c, title in enumerate(COLUMNS):
        axis = figure.add_subplot(grid[0, c])
        axis.axis("off")
        axis.text(0.5, 0.0, title, ha="center", va="bottom", fontsize=8.5, fontweight="bold",
                  transform=axis.transAxes)
    for r, (model, cells) in enumerate(rows, start=1):
        for c, (rgb, caption) in enumerate(cells):
            axis = figure.add_subplot(grid[r, c])
            if rgb is None:
                blank(axis, caption)
            else:
                picture(axis, rgb, caption)
        figure.add_subplot(grid[r, 0]).axis("off")
        axis = figure.axes[-1]
        axis.text(-0.08, 0.5, model, rotation=90, ha="right", va="center", fontsize=8.5, fontweight="bold",
                  transform=axis.transAxes)
    axis = figure.add_subplot(grid[len(rows) + 1, :])
    picture(axis, montage)
    axis.set_title(f"demo-volume on {SCAN}: Grad-CAM, {scan.label} {scan.probability:.2f} "
                   "(the overlay montage `gradcam --save overlay` writes)", fontsize=7.5)
    axis.text(-0.012, 0.5, "demo-volume", rotation=90, ha="right", va="center", fontsize=8.5, fontweight="bold",
              transform=axis.transAxes)
    strip = grid[len(rows) + 2, :].subgridspec(1, len(frames), wspace=0.04)
    for t, (frame, caption) in enumerate(zip(frames, frame_captions)):
        axis = figure.add_subplot(strip[0, t])
        picture(axis, frame, caption)
        if t == 0:
            axis.text(-0.1, 0.5, "demo-clip", rotation=90, ha="right", va="center", fontsize=8.5,
                      fontweight="bold", transform=axis.transAxes)
    figure.text(0.5, 0.003 + clip_height / (sum(heights) + 0.4), f"demo-clip on {CLIP}: Grad-CAM of "
                f"'{clip.label}' ({clip.probability:.2f}), each frame taken with its map, one colour scale",
                ha="center", va="bottom", fontsize=7.5)
    return save_png(figure, path, PALETTE_OVERVIEW)


# --- one picture per method ---------------------------------------------------------------------------------

def method_model(name):
    from gradcam_cli.explain.methods import METHODS

    return ATTENTION_MODEL if METHODS[name].reads_attention else METHOD_MODEL


def method_picture(models, name, path):
    """The method's maps on IMAGES (its model; every option at its default): the overlays, and
    for a backprop method its input gradient times the map."""
    from gradcam_cli import Explainer
    from gradcam_cli.explain.methods import METHODS

    method = METHODS[name]
    model = method_model(name)
    explanations = Explainer(models[model], method=name)([str(SAMPLES / image) for image in IMAGES])
    rows = [[(e.overlay(), caption_of(e)) for e in explanations]]
    if method.backprop is not None:
        rows.append([(guided_product(e), f"{method.backprop} gradient x map") for e in explanations])
    cell = 1.45
    title, _, summary = method.summary.partition(": ")
    lines = _wrapped(summary if summary else method.summary, 62)
    top = 0.32 + 0.13 * len(lines)
    figure = plt.figure(figsize=(len(IMAGES) * cell + 0.1, len(rows) * (cell + 0.25) + top + 0.1), dpi=DPI)
    height = figure.get_figheight()
    grid = figure.add_gridspec(len(rows), len(IMAGES), left=0.01, right=0.99, bottom=0.2 / height,
                               top=1 - top / height, wspace=0.05, hspace=0.2)
    figure.text(0.5, 1 - 0.06 / height, f"{name} ({model})", ha="center", va="top", fontsize=9, fontweight="bold")
    figure.text(0.5, 1 - 0.27 / height, "\n".join(lines), ha="center", va="top", fontsize=6.5, color="#333333")
    for r, row in enumerate(rows):
        for c, (rgb, caption) in enumerate(row):
            picture(figure.add_subplot(grid[r, c]), rgb, caption)
    return save_png(figure, path, PALETTE_METHOD)


def _wrapped(text, width):
    import textwrap

    return textwrap.wrap(text, width) or [""]


# --- the benchmarks' charts and the methods' figures ------------------------------------------------------

def benchmark_charts(out):
    """The benchmarks page's charts (benchmarks/charts.py) from docs/data/benchmarks/*.json, into
    out/benchmarks/: their paths."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import charts
    import results

    paths = []
    for name in CHARTS:
        benchmark = {"volume": "bench_volume.py", "latency": "bench_latency.py"}.get(name, "bench.py")
        record = results.read(BENCHMARKS / f"{name}.json", benchmark)
        paths.append(save_png(charts.CHARTS[name](record), out / "benchmarks" / f"{name}.png", PALETTE_CHART))
    return paths


LOCALIZATION = ("pointing", "energy_in_box", "box_iou", "discrimination", "accuracy")  # the figures kept
FAITHFULNESS = ("deletion_auc", "insertion_auc")


def method_figures(models):
    """Each method's localization figures on SCENES generated scenes and PAIRS two-object ones, and
    its deletion and insertion AUCs on the first DELETION_SCENES (20 steps, to zero; insertion from
    the blurred scene), with the model of its picture (method_model), every option at its default:
    gradcam_cli.evaluate.assess's own figures, rounded to 3 places, beside chance (a uniform map; a
    centre point for pointing; a coin toss for discrimination) and the uniform map's AUCs."""
    from gradcam_cli.evaluate import assess
    from gradcam_cli.explain.methods import METHODS

    record = {"made_by": "make gallery (scripts/gallery.py), gradcam_cli.evaluate.assess", "scenes": SCENES,
              "pairs": PAIRS, "deletion_scenes": DELETION_SCENES, "seed": SEED, "models": {}}
    groups = {}
    for name in METHODS:
        groups.setdefault(method_model(name), []).append(name)
    rounded = lambda figures, keys: {k: None if figures.get(k) is None else round(figures[k], 3) for k in keys}
    for model, names in groups.items():
        located = assess.assess(models[model], names, ("localization",), count=SCENES, pairs=PAIRS, seed=SEED).report
        faithful = assess.assess(models[model], names, ("deletion",), count=DELETION_SCENES, pairs=0,
                                 seed=SEED).report
        uniform = faithful["faithfulness"]["baselines"]["uniform"]
        record["models"][model] = {
            "layer": located["layer"], "steps": faithful["faithfulness"]["steps"],
            "deletion_baseline": faithful["faithfulness"]["baseline"],
            "chance": {**rounded(located["chance"], LOCALIZATION[:4]), **rounded(uniform, FAITHFULNESS)},
            "methods": {name: {**rounded(located["methods"][name], LOCALIZATION),
                               **rounded(faithful["methods"][name], FAITHFULNESS)} for name in names}}
    return record


TABLE = "every-methods-figures"  # the methods page's heading "Every method's figures", as MyST anchors it


def figures_markdown(record):
    """The Markdown the methods page includes: a line per method between <!-- figures:NAME -->
    markers (the page's {include} takes each by :start-after: and :end-before:), then a table per model."""
    show = lambda value: "–" if value is None else f"{value:.2f}"
    lines = ["<!-- Written by make gallery (scripts/gallery.py) from method-figures.json: do not edit. -->", ""]
    head = ["| method | pointing | energy in box | box IoU | discrimination | accuracy | deletion AUC ↓ | insertion AUC ↑ |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    table = []
    for model, found in record["models"].items():
        chance = found["chance"]
        table += ["", f"{model} (layer `{found['layer']}`):", "", *head]
        for name, f in found["methods"].items():
            lines += [f"<!-- figures:{name} -->",
                      f"On {model}: pointing **{show(f['pointing'])}** (chance {show(chance['pointing'])}), energy in "
                      f"box **{show(f['energy_in_box'])}** ({show(chance['energy_in_box'])}), discrimination "
                      f"**{show(f['discrimination'])}** ({show(chance['discrimination'])}), deletion AUC "
                      f"**{show(f['deletion_auc'])}** (uniform map {show(chance['deletion_auc'])}; lower is better), "
                      f"insertion AUC **{show(f['insertion_auc'])}** ({show(chance['insertion_auc'])}; higher is "
                      f"better): [every method's figures](#{TABLE}).", f"<!-- /figures:{name} -->", ""]
            table.append(f"| `{name}` | " + " | ".join(show(f[k]) for k in (*LOCALIZATION, *FAITHFULNESS)) + " |")
        table.append("| chance, uniform map | " + " | ".join(
            "–" if k == "accuracy" else show(chance[k]) for k in (*LOCALIZATION, *FAITHFULNESS)) + " |")
    return "\n".join([*lines, "<!-- figures-table -->", *table, "<!-- /figures-table -->", ""])


def write_figures(models, data):
    """method-figures.json and method-figures.inc (figures_markdown) in `data`: their paths."""
    import json

    record = method_figures(models)
    data.mkdir(parents=True, exist_ok=True)
    (data / "method-figures.json").write_text(json.dumps(record, indent=1) + "\n")
    (data / "method-figures.inc").write_text(figures_markdown(record))
    return [data / "method-figures.json", data / "method-figures.inc"]


# --- the command ----------------------------------------------------------------------------------------

def main(argv=None):
    from gradcam_cli.explain.methods import METHODS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="the folder written (default: docs/images/gallery)")
    parser.add_argument("--data", type=Path, default=DATA,
                        help="where method-figures.json and .inc go (default: docs/data)")
    parser.add_argument("--only", default=None,
                        help="a comma-separated list of pictures to make: 'overview', method names, 'benchmarks' "
                             "(the charts), 'method-figures' (default: all)")
    args = parser.parse_args(argv)
    names = ["overview", *EXTRA, *METHODS, "benchmarks", "method-figures"]
    wanted = names if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        parser.error(f"no picture named {', '.join(unknown)}; choose from {', '.join(names)}")

    import keras

    keras.utils.set_random_seed(0)
    models = Models()
    with plt.rc_context(STYLE):
        for name in wanted:
            _make(models, name, args.out, args.data)
    return 0


def _make(models, name, out, data):
    """One picture (overview, or a method's) into `out`, or the charts, or the methods' figures
    into `data`; prints each file's path, size and time."""
    start = time.perf_counter()
    if name in ("benchmarks", "method-figures"):
        paths = benchmark_charts(out) if name == "benchmarks" else write_figures(models, data)
        for path in paths:
            print(f"{path} {path.stat().st_size / 1024:.0f} KB", flush=True)
        print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)
        return
    path = out / (f"{name}.jpg" if name == "volume-montage" else f"{name}.png")
    if name == "overview":
        overview(models, path)
    elif name == "volume-montage":
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(volume_montage(models)[0]).save(path, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    elif name == "clip-frames":
        path.parent.mkdir(parents=True, exist_ok=True)
        strip = np.concatenate(clip_frames(models)[0], axis=1)
        Image.fromarray(strip).quantize(PALETTE_METHOD, method=Image.Quantize.MEDIANCUT,
                                        dither=Image.Dither.NONE).save(path, format="PNG", optimize=True)
    else:
        method_picture(models, name, path)
    with Image.open(path) as written:
        size = written.size
    print(f"{path} {size[0]}x{size[1]} {path.stat().st_size / 1024:.0f} KB {time.perf_counter() - start:.1f} s",
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
