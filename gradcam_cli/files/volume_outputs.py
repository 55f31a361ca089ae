"""What a run writes for a volume (files/volumes.py's conventions: the stored axis order, the
affine carried, never applied): its map's files and the parts of its record that differ from an
image's. files.writing.image_events calls these for a volume; Explanation.save for a volume's map.

Files, named as an image's (files.writing.output_paths):
  raw      NAME.METHOD[.TAG].raw.npy: the map at the volume's shape (D1, D2, D3), in the model array's
           axis order, float32, before normalisation, as an image's raw map.
  nifti    NAME.METHOD[.TAG].nii.gz: the same numbers as a NIfTI with the input's affine and codes
           (files.volumes.write_nifti); a NumPy input has no affine: refused (`check_nifti`).
  heatmap, overlay   a PNG montage of slices (files.montage.montage): the map coloured alone, or
           blended onto the volume.
  sheet    NAME.METHOD[.TAG].sheet.png, written with the overlay: the overlay's slices along D3 as a
           tile sheet (files.sheets, files.montage.d3_tiles: every slice up to 64, evenly chosen
           beyond, labelled "k=5"); the map entry's `sheet` gives its layout.
  gradient, gradcam   a backprop method's (guided, deconvnet) input gradient and Guided Grad-CAM
           product as montages (render_volume_gradients), and with raw both arrays as
           NAME.METHOD[.TAG].gradient.npy / .gradcam.npy, (D1, D2, D3, C) at the model's input size.
A clip (kind 'clip') is written by files.clip_outputs: animated PNGs and a sheet of its frames.

A map entry's statistics are an image's where they mean the same (empty, raw_max, raw_mean,
resolution: the layer's grid, here (d1, d2, d3) in array order; mean; area_above_half: here the
share of voxels at or above half the peak) plus the peak voxel (i, j, k) and its world
position; an image's peak [x, y] and box are absent. The record's `volume` block says what the
volume was: its kind, shape, channels, voxel sizes, affine, the window applied, and the first
map's peak voxel and world position (affine @ [i, j, k, 1]; null for a NumPy input, whose affine
is nobody's)."""

import numpy as np

from gradcam_cli.errors import GradcamError
from gradcam_cli.explain import maps
from gradcam_cli.files import outputs

# The kinds a volume's map is written as (files.outputs.KINDS), and the gradient pictures a backprop
# method's (guided, deconvnet) adds: montages (render_volume_gradients); no greyscale kinds.
VOLUME_SAVE = ("heatmap", "overlay", "raw", "nifti")
VOLUME_GRADIENT_SAVE = ("gradient", "gradcam")


def check_nifti(kind, save):
    """GradcamError (one line) when `save` asks for a NIfTI map of an input of `kind` ('npy', 'clip'),
    which has no affine."""
    if "nifti" in save and kind in ("npy", "clip"):
        what = "a NumPy volume (.npy, .npz)" if kind == "npy" else "a clip (video frames)"
        raise GradcamError(f"a NIfTI map carries its input's affine: {what} has none; "
                           "save raw instead (the same numbers as .npy)")


def sheet_picture(array, normalised, spacing, colormap, alpha):
    """The overlay's tile sheet of the volume `array` (D1, D2, D3, C) and its map: (picture, layout)
    (files.sheets.tile_sheet of files.montage.d3_tiles, the channels' mean the background, as the
    montage's)."""
    from gradcam_cli.files.montage import d3_tiles
    from gradcam_cli.files.sheets import tile_sheet

    background = np.asarray(array, dtype=np.float32).mean(axis=-1)
    tiles, indices = d3_tiles(background, normalised, tuple(float(s) for s in spacing), colormap=colormap,
                              alpha=alpha)
    return tile_sheet(tiles, [f"k={k}" for k in indices], indices, "d3")


def montage_picture(array, normalised, spacing, affine, colormap, alpha, overlay):
    """The map's montage (H, W, 3) uint8 (files.montage.montage) over the volume `array` (D1, D2, D3, C):
    its channels' mean is the background."""
    from gradcam_cli.files.montage import montage

    background = np.asarray(array, dtype=np.float32).mean(axis=-1)
    return montage(background, normalised, tuple(float(s) for s in spacing), affine, colormap=colormap, alpha=alpha,
                   overlay=overlay)


def statistics(small_map, normalised, empty):
    """What a volume map's record entry says of it (the module's docstring)."""
    peak = None if empty else [int(v) for v in np.unravel_index(int(np.argmax(normalised)), normalised.shape)]
    return {
        "empty": bool(empty),
        "raw_max": float(small_map.max(initial=0.0)),
        "raw_mean": float(small_map.mean()),
        "resolution": [int(n) for n in small_map.shape],
        "mean": float(normalised.mean()),
        "area_above_half": float((normalised >= 0.5).mean()),
        "peak_voxel": peak,
    }


def world(affine, voxel):
    """World millimetres [x, y, z] of `voxel` (i, j, k) by `affine`, or None (no voxel or no affine)."""
    if voxel is None or affine is None:
        return None
    return [float(v) for v in (np.asarray(affine, dtype=np.float64) @ np.array([*voxel, 1.0]))[:3]]


def render_volume_map(label, array, small_map, class_index, score, probability, paths, options, volume=None):
    """A volume map's files (heatmap, overlay, raw, nifti: those in `paths`) and its JSON entry.
    array: the volume as the model took it (D1, D2, D3, C); volume: its files.volumes.Volume (the
    affine, voxel sizes and kind), or None for an array given through the API (no NIfTI then).
    A clip's map (volume.kind 'clip') is files.clip_outputs.render_clip_map's (`render_map` picks)."""
    heat, normalised, empty = maps.full_map(small_map, None, array.shape)
    written, layout = {}, None
    affine = volume.affine if volume is not None and volume.oriented else None  # planes named only when known
    spacing = (1.0, 1.0, 1.0) if volume is None else volume.spacing
    for kind in ("heatmap", "overlay"):
        if kind in paths:
            picture = montage_picture(array, normalised, spacing, affine, options.colormap, options.alpha,
                                      kind == "overlay")
            written[kind] = outputs.write_png(paths[kind], picture)
    if "sheet" in paths:
        picture, layout = sheet_picture(array, normalised, spacing, options.colormap, options.alpha)
        written["sheet"] = outputs.write_png(paths["sheet"], picture)
    if "raw" in paths:
        written["raw"] = outputs.write_npy(paths["raw"], heat)
    if "nifti" in paths:
        if volume is None:
            raise GradcamError("a NIfTI map carries its input's affine: give the volume it is of "
                               "(files.volumes.read_volume)")
        check_nifti(volume.kind, ("nifti",))
        from gradcam_cli.files.volumes import write_nifti

        written["nifti"] = write_nifti(paths["nifti"], heat, volume)
    stats = statistics(small_map, normalised, empty)
    stats["peak_world_mm"] = world(affine, stats["peak_voxel"])
    return map_entry(class_index, label, score, probability, written, stats, layout)


def map_entry(class_index, label, score, probability, written, stats, layout):
    """A volume's or clip's map entry of its record: the class, its score and probability, the files
    written, the statistics, and the sheet's layout (files.sheets) where a sheet was written."""
    entry = {
        "class": class_index,
        "label": label,
        "score": round(score, 6),
        "probability": round(probability, 6),
        "outputs": written,
        "stats": stats,
    }
    if layout is not None:
        entry["sheet"] = layout
    return entry


def volume_record(volume, entries, window):
    """The record's `volume` block: the volume's own (files.volumes.Volume.record), the window
    applied ([low, high] or None) and the first map's peak voxel and world position."""
    block = volume.record()
    first = entries[0]["stats"] if entries else {}
    block.update(peak_voxel=first.get("peak_voxel"), peak_world_mm=first.get("peak_world_mm"),
                 window=None if window is None else [float(window[0]), float(window[1])])
    return block


def render_volume_gradients(array, gradient, product, paths, written, options, volume=None):
    """A backprop method's input gradient and its product with the map (Guided Grad-CAM) for a
    volume: the kinds in `paths` (gradient, gradcam: montages; gradient-raw, gradcam-raw: the
    arrays (D1, D2, D3, C) float32 at the model's input size, signs kept), added to `written`.
    Returns the gradient's statistics for the JSON entry.

    The picture (a choice): the gradient's MAGNITUDE, the largest |gradient| over the channels
    (maps.saliency, Simonyan et al.'s rule, as the localization measures read a volume's backprop
    map), resized trilinearly onto the volume's shape, scaled by its maximum and drawn as the
    montage's heat alone (no scan beneath, as an image's gradient picture stands alone); the sign
    is in the raw arrays only. A channel-mean would let opposite signs cancel."""
    affine = volume.affine if volume is not None and volume.oriented else None
    spacing = (1.0, 1.0, 1.0) if volume is None else volume.spacing
    for name, values in (("gradient", gradient), ("gradcam", product)):
        if name in paths:
            magnitude, _ = maps.saliency_map(values, None, array.shape)
            written[name] = outputs.write_png(paths[name], montage_picture(array, magnitude, spacing, affine,
                                                                          options.colormap, options.alpha, False))
        if f"{name}-raw" in paths:
            written[f"{name}-raw"] = outputs.write_npy(paths[f"{name}-raw"], values)
    rms = float(np.sqrt(np.mean(np.square(np.asarray(gradient, dtype=np.float64)))))
    return {"rms": rms, "empty": rms == 0.0, "resolution": [int(n) for n in np.shape(gradient)[:3]]}
