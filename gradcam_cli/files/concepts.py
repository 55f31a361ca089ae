"""Deep Feature Factorization's files (explain/concepts.py finds the concepts): per image an
overlay coloured by its strongest concept with a legend beneath, the raw heatmaps as .npy, and
the JSON records of the images and of the concepts.

Every file is written to a temporary name in its folder and renamed (outputs.write_atomic), and
an image's record, OUTDIR/NAME.concepts.record.json, last, after its files: an image with a record
on disk has all its files. The concepts' record, OUTDIR/concepts.json, is written as soon as they
are fitted, before any image, and again after each image's record with the count done, so an
interrupted run leaves the names of the concepts its images' records refer to.

The overlay starts from pytorch-grad-cam's show_factorization_on_image: each pixel takes the colour
of its strongest concept times that concept's strength, blended with the image: (1 - alpha) image +
alpha strength colour. Where no concept is strong the colour is black, so the image shows darkened
there, as in pytorch-grad-cam's. The strengths differ: pytorch-grad-cam normalises each concept's
heatmap by its own maximum over the image, so a concept barely present (a faint background part)
paints as brightly, and counts as much, as the object's; here each heatmap is first weighed by its
concept's component norm (Concepts.part_norms: a heatmap value h stands for h times that much of the
activations), then all of an image's are divided by the largest of them. A concept's strength at a
pixel is thus relative to the image's strongest concept at its peak; weak concepts show faint, and
the strongest concept of an image is the one that makes up most of its activations. The colours are
render.LINE_COLOURS (pytorch-grad-cam: gist_rainbow spread over the concepts); past ten concepts
they repeat.
"""

from pathlib import Path

import numpy as np

from gradcam_cli.explain.maps import resize_into_box
from gradcam_cli.files import render
from gradcam_cli.files.outputs import output_path, write_json, write_npy, write_png

METHOD = "concepts"  # the method in output names and records: NAME.concepts.overlay.png
SAVE_KINDS = ("overlay", "raw")
DEFAULT_SAVE = ("overlay",)
DEFAULT_ALPHA = 0.5  # pytorch-grad-cam's image_weight=0.5 (run_dff_on_image uses 0.3 for the image)
LEGEND_MIN_WIDTH = 256  # a narrower image is centred on a strip this wide, so the names can be read
CONCEPTS_RECORD = "concepts.json"  # OUTDIR/concepts.json: the concepts' record (no image output ends so)


def colours(count):
    """Each concept's colour, RGB tuples in order."""
    return render.line_colours(count)


def hex_colour(rgb):
    return "#" + "".join(f"{int(v):02x}" for v in rgb)


def strengths(image, part_norms=None):
    """An ImageConcepts' heatmaps at the image's resolution: (the strongest concept per pixel
    (H, W) int, its strength in [0, 1] (H, W), each concept's share of the image (its strength's
    mean) (k,), each concept's area (the pixels where it is strongest and not 0) (k,)).
    part_norms: (k,) each concept's weight (Concepts.part_norms; None: 1 each). The heatmaps
    times their weights are divided by the largest value of them all, so strengths compare across
    concepts. Concept by concept, so that a large photo holds two (H, W) maps, not k."""
    heatmaps = np.asarray(image.heatmaps, dtype=np.float64)
    count = heatmaps.shape[-1]
    weights = np.ones(count) if part_norms is None else np.asarray(part_norms, dtype=np.float64)
    weights = np.where(np.isfinite(weights) & (weights > 0), weights, 0.0)
    peak = float((np.nan_to_num(heatmaps, nan=0.0, posinf=0.0, neginf=0.0) * weights).max(initial=0.0))
    strongest = np.zeros(image.image_shape, np.int64)
    strength = np.zeros(image.image_shape, np.float32)
    shares = np.zeros(count)
    for c in range(count):
        part = np.nan_to_num(heatmaps[..., c], nan=0.0, posinf=0.0, neginf=0.0) * weights[c]
        relative = (part / peak if peak > 0 else np.zeros_like(part)).astype(np.float32)
        upsampled = resize_into_box(relative, image.box, image.image_shape)
        shares[c] = float(upsampled.mean())
        stronger = upsampled > strength
        strongest[stronger], strength[stronger] = c, upsampled[stronger]
    areas = np.array([float(((strongest == c) & (strength > 0)).mean()) for c in range(count)])
    return strongest, strength, shares, areas


def overlay(rgb, image, alpha=DEFAULT_ALPHA, found=None, part_norms=None):
    """The image with each pixel blended with its strongest concept's colour times its strength
    (uint8 RGB, the image's size); outside the model's view the image as it is. `found`: the
    image's `strengths`, when computed already (else computed with `part_norms`)."""
    strongest, strength, _, _ = found if found is not None else strengths(image, part_norms)
    table = np.asarray(colours(image.heatmaps.shape[-1]), dtype=np.float32)
    painted = table[strongest] * strength[..., None]
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * painted
    return render.outside_box(np.clip(np.rint(blended), 0, 255).astype(np.uint8), rgb, image.box)


def _font(width):
    from PIL import ImageFont

    size = max(11, min(20, width // 24))
    return ImageFont.load_default(size=size), size


def legend_height(count, width):
    """The legend strip's height for `count` concepts under a picture `width` pixels wide."""
    _, size = _font(max(width, LEGEND_MIN_WIDTH))
    return count * (size + 8) + 8


def legend(names, width):
    """A white strip, `width` pixels wide, naming each concept beside its colour's swatch."""
    from PIL import Image, ImageDraw

    font, size = _font(width)
    canvas = Image.new("RGB", (width, legend_height(len(names), width)), "white")
    draw = ImageDraw.Draw(canvas)
    swatch_width, swatch_height = render.SWATCH
    for row, (name, colour) in enumerate(zip(names, colours(len(names)))):
        y = 8 + row * (size + 8)
        draw.rectangle((6, y + (size - swatch_height) // 2, 6 + swatch_width - 1,
                        y + (size - swatch_height) // 2 + swatch_height - 1), fill=tuple(colour))
        text, room = name, width - swatch_width - 18
        while len(text) > 1 and draw.textlength(text, font=font) > room:
            text = text[:-2] + "\u2026"  # shorten to fit
        draw.text((12 + swatch_width, y), text, fill="black", font=font)
    return np.asarray(canvas)


def picture(rgb, image, names, alpha=DEFAULT_ALPHA, found=None):
    """The overlay with the legend beneath: max(W, LEGEND_MIN_WIDTH) wide, the overlay centred
    on white above a strip of legend_height(k, W) pixels."""
    painted = overlay(rgb, image, alpha, found)
    height, width = painted.shape[:2]
    full = max(width, LEGEND_MIN_WIDTH)
    canvas = np.full((height, full, 3), 255, dtype=np.uint8)
    left = (full - width) // 2
    canvas[:, left : left + width] = painted
    return np.concatenate([canvas, legend(names, full)])


def write_image(output_dir, source_name, input_name, rgb, image, concepts, model_name, save=DEFAULT_SAVE,
                alpha=DEFAULT_ALPHA):
    """Write an image's files (`save`: overlay, raw) as OUTDIR/NAME.concepts.KIND.png|npy, then
    its JSON record as OUTDIR/NAME.concepts.record.json, each atomically; returns the record (its
    outputs name the record file too)."""
    found = strengths(image, concepts.part_norms)
    _, _, shares, areas = found
    outputs = {}
    if "overlay" in save:
        path = output_path(output_dir, source_name, METHOD, "overlay")
        outputs["overlay"] = write_png(path, picture(rgb, image, concepts.names, alpha, found))
    if "raw" in save:
        outputs["raw"] = write_npy(output_path(output_dir, source_name, METHOD, "raw"), image.heatmaps)
    outputs["record"] = str(output_path(output_dir, source_name, METHOD, "record", extension="json"))
    record = image_record(input_name, image, concepts, model_name, shares, areas, outputs)
    write_json(outputs["record"], record)  # last: its files are in place
    return record


def write_concepts_record(output_dir, record):
    """Write the concepts' record (concepts_record) atomically as OUTDIR/concepts.json; returns its path."""
    return write_json(Path(output_dir) / CONCEPTS_RECORD, record)


def image_record(input_name, image, concepts, model_name, shares, areas, outputs):
    """An image's record: each concept's share of it and the strongest one."""
    height, width = image.image_shape
    heat_height, heat_width = image.heatmaps.shape[:2]
    return {
        "input": str(input_name),
        "model": model_name,
        "layer": concepts.layer,
        "method": METHOD,
        "image_size": [int(width), int(height)],
        "resolution": [int(heat_width), int(heat_height)],
        "fitted": bool(image.fitted),
        "concepts": [{"index": c, "name": concepts.names[c], "colour": hex_colour(colour), "share": float(shares[c]),
                      "area": float(areas[c])} for c, colour in enumerate(colours(len(concepts)))],
        "strongest": int(np.argmax(shares)),
        "outputs": outputs,
    }


def concepts_record(concepts, model_name, images_done):
    """The record of the concepts themselves: names, colours, top classes and vector norms, how
    many images the NMF was fitted on and how many were done."""
    record = {
        "concepts": [{"index": c, "name": concepts.names[c], "colour": hex_colour(colour),
                      "top_classes": [{"class": index, "label": label, "probability": probability}
                                      for index, label, probability in concepts.top_classes[c]],
                      "vector_norm": float(np.linalg.norm(concepts.vectors[c]))}
                     for c, colour in enumerate(colours(len(concepts)))],
        "model": model_name,
        "layer": concepts.layer,
        "method": METHOD,
        "images_fitted": len(concepts.fitted),
        "images": int(images_done),
    }
    if concepts.classes_note:
        record["classes_note"] = concepts.classes_note
    if concepts.warnings:
        record["warnings"] = list(concepts.warnings)
    return record
