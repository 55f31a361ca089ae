"""The benchmarks page's charts, drawn from the JSON results (benchmarks/results.py) with matplotlib:
`make gallery` (scripts/gallery.py) draws them into docs/images/gallery/benchmarks/ from
docs/data/benchmarks/*.json and writes them as it writes its other pictures (palette PNGs, no
metadata). Each function takes a results dict and returns a matplotlib figure; nothing is measured.

  throughput(record)  images/s of the bare step (floor), the pipeline and tf-keras-vis, per model and batch
  methods(record)     each method's time over Grad-CAM's on each model, log scale
  volume(record)      the volume benchmark's seconds (warm, first call, whole process) and peak memory
"""

import matplotlib.pyplot as plt
import numpy as np

COLOURS = ("#4c72b0", "#dd8452", "#55a868")  # floor or ours, the second, the third
NAMES = {"vgg16": "VGG16", "resnet50": "ResNet50"}
DPI = 100


def _bars(axis, groups, series, values, colours, label_format):
    """Grouped vertical bars: values[s][g] for each series s at group g, each labelled."""
    width = 0.8 / len(series)
    for s, (name, colour) in enumerate(zip(series, colours)):
        places = np.arange(len(groups)) + (s - (len(series) - 1) / 2) * width
        drawn = axis.bar(places, values[s], width, label=name, color=colour)
        axis.bar_label(drawn, [label_format.format(v) for v in values[s]], fontsize=5.5, padding=1)
    axis.set_xticks(np.arange(len(groups)), groups)
    for side in ("top", "right"):
        axis.spines[side].set_visible(False)


def throughput(record):
    """Two panels (one per model): floor, pipeline and tf-keras-vis images/s at each batch size."""
    rows = record["throughput"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    figure, axes = plt.subplots(1, len(models), figsize=(7.2, 2.7), dpi=DPI, squeeze=False)
    for axis, model in zip(axes[0], models):
        mine = [r for r in rows if r["model"] == model]
        values = [[r["floor_img_s"] for r in mine], [r["pipeline_img_s"] for r in mine],
                  [r["tf_keras_vis_img_s"] or 0 for r in mine]]
        _bars(axis, [f"batch {r['batch']}" for r in mine], ("floor (bare step)", "pipeline (overlays written)",
                                                              "tf-keras-vis 0.8.7"), values, COLOURS, "{:g}")
        axis.set_title(NAMES.get(model, model), fontsize=8.5)
        axis.set_ylabel("images / s (higher is better)")
        axis.set_ylim(0, max(max(v) for v in values) * 1.18)
    figure.legend(*axes[0][0].get_legend_handles_labels(), fontsize=7, frameon=False, loc="lower center", ncol=3)
    figure.suptitle(f"Grad-CAM throughput, 256x256 JPEGs ({record['command']})", fontsize=8.5)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    return figure


def method_ratio(row, gradcam):
    """A method's time over Grad-CAM's; for a method timed on one image with every mask
    (s_per_image), that time over Grad-CAM's per image at the batch (1 / its img/s)."""
    if "s_per_image" in row:
        return row["s_per_image"] * gradcam["img_s"]
    return row["time_per_gradcam"]


def methods(record):
    """Horizontal bars, log scale: each method's time over Grad-CAM's, a bar per model."""
    rows = record["methods"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    names = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "gradcam"]
    found = {(r["model"], r["method"]): r for r in rows}
    figure, axis = plt.subplots(figsize=(7.2, 0.26 * len(names) + 0.9), dpi=DPI)
    height = 0.8 / len(models)
    for k, (model, colour) in enumerate(zip(models, COLOURS)):
        gradcam = found[(model, "gradcam")]
        ratios = [method_ratio(found[(model, m)], gradcam) for m in names]
        places = np.arange(len(names)) + (k - (len(models) - 1) / 2) * height
        axis.barh(places, ratios, height, color=colour, label=f"{NAMES.get(model, model)} "
                  f"(Grad-CAM {gradcam['img_s']:.1f} img/s)")
        for place, ratio, m in zip(places, ratios, names):  # the figure as measured; a derived one rounded
            text = f"{ratio:,.0f}" if "s_per_image" in found[(model, m)] else f"{ratio:g}"
            axis.text(ratio * 1.05, place, text, va="center", fontsize=5.5)
    axis.set_xscale("log")
    axis.set_xlim(0.7, max(axis.get_xlim()[1], 6000))
    axis.axvline(1, color="#555555", linewidth=0.8)
    labels = [f"{m} (one image, all masks)" if "s_per_image" in found[(models[0], m)] else m for m in names]
    axis.set_yticks(np.arange(len(names)), labels, fontsize=7)
    axis.invert_yaxis()
    axis.set_xlabel("time per image / Grad-CAM's (log scale; lower is faster)")
    axis.legend(fontsize=6.5, frameon=False, loc="upper right")
    for side in ("top", "right"):
        axis.spines[side].set_visible(False)
    axis.set_title("Each map method beside Grad-CAM on the same batch", fontsize=8.5)
    figure.tight_layout()
    return figure


def volume(record):
    """Two panels: seconds (per volume warm, first call, one-volume process) and peak memory per library."""
    rows = record["libraries"]
    figure, (seconds, memory) = plt.subplots(1, 2, figsize=(7.2, 2.6), dpi=DPI, width_ratios=(2.2, 1))
    values = [[r["per_volume_s"], r["first_call_s"], r["process_s"]] for r in rows]
    _bars(seconds, ["per volume (warm)", "first call", "one-volume process"], [r["library"] for r in rows],
          values, COLOURS, "{:g}")
    seconds.set_yscale("log")
    seconds.set_ylabel("seconds (log scale; lower is better)")
    seconds.legend(fontsize=6.5, frameon=False, loc="upper left")
    side = "x".join(str(n) for n in record["volume"])
    seconds.set_title(f"Grad-CAM of one {side} volume", fontsize=8.5)
    peaks = [r["peak_rss_mib"] for r in rows]
    drawn = memory.bar(np.arange(len(rows)), peaks, 0.6, color=COLOURS[: len(rows)])
    memory.bar_label(drawn, [f"{p:,}" for p in peaks], fontsize=6, padding=1)
    names = [r["library"].split(" ")[0].replace("pytorch-", "pytorch-\n") for r in rows]
    memory.set_xticks(np.arange(len(rows)), names, fontsize=6.5)
    memory.set_ylabel("peak RSS, MiB")
    memory.set_ylim(0, max(peaks) * 1.15)
    memory.set_title("peak memory", fontsize=8.5)
    for side in ("top", "right"):
        memory.spines[side].set_visible(False)
    figure.tight_layout()
    return figure


PHASES = (("start", "interpreter"), ("import", "imports"), ("build", "model built"),
          ("first_batch", "first map (decode, step, write)"), ("exit", "exit"))


def latency(record):
    """Where one image's process time goes, per model: gradcam's and pytorch-grad-cam's phases as
    stacked horizontal bars (bench_latency.py's phase run), each bar ending at its whole process."""
    rows = record["phases"]
    figure, axes = plt.subplots(len(rows), 1, figsize=(7.2, 1.25 + 0.95 * len(rows)), dpi=DPI, squeeze=False)
    colours = ("#bbbbbb", "#4c72b0", "#dd8452", "#55a868", "#8172b3")
    for axis, row in zip(axes[:, 0], rows):
        sides = [name for name in ("gradcam", "pytorch-grad-cam") if row.get(name)]
        for y, side in enumerate(sides):
            left = 0.0
            for (key, label), colour in zip(PHASES, colours):
                width = row[side][key]
                axis.barh(y, width, 0.6, left=left, color=colour, label=label if y == 0 else None)
                left += width
            axis.text(left + 0.05, y, f"{row[side]['total']:.2f} s", va="center", fontsize=6.5)
        axis.set_yticks(range(len(sides)), sides, fontsize=7)
        axis.invert_yaxis()
        axis.set_xlim(0, max(row[side]["total"] for side in sides) * 1.15)
        axis.set_title(f"{NAMES.get(row['model'], row['model'])}, one image: seconds from the process's start",
                       fontsize=8)
        axis.tick_params(axis="x", labelsize=6.5)
        for edge in ("top", "right"):
            axis.spines[edge].set_visible(False)
    axes[0, 0].legend(fontsize=6, frameon=False, ncol=5, loc="lower center", bbox_to_anchor=(0.5, 1.18))
    figure.tight_layout()
    return figure


CHARTS = {"throughput": throughput, "methods": methods, "volume": volume, "latency": latency}  # name -> drawing
