"""What a run writes for a clip (a files.volumes.Volume of kind 'clip': frames (T, H, W, 3), axis 0
time; docs: the clips and sheets contract): its map's files and its record's `clip` block.
`render_map` hands a clip's map here and a volume's to files.volume_outputs.render_volume_map
(files.writing.image_events and Explanation.save call it).

Files, named as an image's (files.writing.output_paths):
  overlay  NAME.METHOD[.TAG].overlay.png: an animated PNG (APNG, looping), frame t = taken frame t
           with the map's slice t blended on (render.overlay, alpha), as an image's overlay.
  heatmap  NAME.METHOD[.TAG].heatmap.png: animated the same way, the map's slice t coloured alone.
  sheet    NAME.METHOD[.TAG].sheet.png, with the overlay: the overlay's frames as a tile sheet
           (files.sheets), labelled "frame 12 · 0.40 s" (the frame's index in the clip and its
           time; "frame 12" without an fps).
  raw      NAME.METHOD[.TAG].raw.npy: the map (T, H, W) float32 before normalisation.
  nifti    refused (a clip has no affine): files.volume_outputs.check_nifti.

One colour scale over all frames: the map is normalised by its maximum over the whole clip (a
frame where the model looks less is drawn cooler, not stretched to its own maximum). Each frame
lasts 1000 / fps ms (the clip's fps), FRAME_MS without one. A frame's picture is the frame as it
was taken (the Clip's uint8 frames; the Volume's array rounded to 0..255 when it carries no Clip).
Tiles of the sheet are the overlay's frames, shrunk (area averaging) to at most TILE_SIDE pixels on
their longer side.
"""

import cv2
import numpy as np

from gradcam_cli.errors import GradcamError
from gradcam_cli.explain import maps
from gradcam_cli.files import outputs, render, sheets

FRAME_MS = 100.0  # a frame's duration without an fps (10 frames a second)
TILE_SIDE = 256  # a sheet tile's longer side at most, in pixels


def frames_of(volume):
    """The clip's taken frames (T, H, W, 3) uint8 RGB."""
    clip = volume.clip
    if clip is not None and tuple(np.shape(clip.array)[:3]) == tuple(volume.shape):
        return np.asarray(clip.array, dtype=np.uint8)
    return np.clip(np.rint(np.asarray(volume.array, dtype=np.float32)), 0, 255).astype(np.uint8)


def frame_ms(volume):
    """How long each frame lasts in the animations, in milliseconds."""
    fps = None if volume.clip is None else volume.clip.fps
    return 1000.0 / float(fps) if fps else FRAME_MS


def frame_indices(volume):
    """The taken frames' indices in the clip (0..T-1 without a Clip)."""
    return [int(k) for k in volume.clip.indices] if volume.clip is not None else list(range(volume.shape[0]))


def frame_times(volume):
    """The taken frames' times in seconds, or None (no fps)."""
    times = None if volume.clip is None else volume.clip.times
    return None if times is None else [float(t) for t in times]


def frame_labels(volume):
    """A sheet's labels: "frame 12 · 0.40 s", or "frame 12" without times."""
    times = frame_times(volume)
    return [f"frame {k}" if times is None else f"frame {k} \u00b7 {times[t]:.2f} s"
            for t, k in enumerate(frame_indices(volume))]


def _tiles(frames):
    """The overlay's frames as a sheet's tiles: shrunk to TILE_SIDE on the longer side when larger."""
    height, width = frames.shape[1:3]
    if max(height, width) <= TILE_SIDE:
        return frames
    scale = TILE_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.stack([cv2.resize(frame, size, interpolation=cv2.INTER_AREA) for frame in frames])


def render_clip_map(label, volume, small_map, class_index, score, probability, paths, options):
    """A clip map's files (heatmap, overlay, sheet, raw: those in `paths`; nifti refused) and its
    JSON entry: a volume map's statistics (files.volume_outputs.statistics; peak_voxel is
    [t, y, x]) and, with a sheet, its layout."""
    from gradcam_cli.files.volume_outputs import check_nifti, map_entry, statistics

    check_nifti("clip", tuple(paths))
    if np.ndim(small_map) != 3:
        raise GradcamError(f"a clip's map is (t, h, w). Received: shape {np.shape(small_map)}")
    heat, normalised, empty = maps.full_map(small_map, None, volume.array.shape)
    written, layout = {}, None
    wanted = [kind for kind in ("heatmap", "overlay", "sheet") if kind in paths]
    if wanted:
        frames = frames_of(volume)
        colored = np.stack([render.colorize(frame_map, options.colormap) for frame_map in normalised])
        if "heatmap" in paths:
            written["heatmap"] = outputs.write_apng(paths["heatmap"], colored, frame_ms(volume))
        if "overlay" in paths or "sheet" in paths:
            blended = np.stack([render.overlay(frame, heat_rgb, options.alpha)
                                for frame, heat_rgb in zip(frames, colored)])
            if "overlay" in paths:
                written["overlay"] = outputs.write_apng(paths["overlay"], blended, frame_ms(volume))
            if "sheet" in paths:
                picture, layout = sheets.tile_sheet(_tiles(blended), frame_labels(volume), frame_indices(volume),
                                                    "frames")
                written["sheet"] = outputs.write_png(paths["sheet"], picture)
    if "raw" in paths:
        written["raw"] = outputs.write_npy(paths["raw"], heat)
    stats = statistics(small_map, normalised, empty)
    stats["peak_world_mm"] = None  # a clip is in no world
    return map_entry(class_index, label, score, probability, written, stats, layout)


def render_map(label, array, small_map, class_index, score, probability, paths, options, volume=None):
    """A volume's or a clip's map files and JSON entry: render_clip_map for a clip (volume.kind
    'clip'), else files.volume_outputs.render_volume_map (same arguments)."""
    from gradcam_cli.files.volume_outputs import render_volume_map

    if volume is not None and volume.kind == "clip":
        return render_clip_map(label, volume, small_map, class_index, score, probability, paths, options)
    return render_volume_map(label, array, small_map, class_index, score, probability, paths, options, volume)


def clip_record(volume, entries):
    """The record's `clip` block: the Clip's own (Clip.record(): kind, frames, size, fps, count,
    indices, times), and the frame where the first map peaks: peak_frame, its index in the clip,
    and peak_time, its time in seconds (None without an fps; both None for an empty map)."""
    block = volume.clip.record() if volume.clip is not None else {
        "kind": None, "frames": volume.shape[0], "size": list(volume.shape[1:3]), "fps": None,
        "count": volume.shape[0], "indices": frame_indices(volume), "times": None}
    peak = (entries[0]["stats"].get("peak_voxel") if entries else None)
    times = frame_times(volume)
    block["peak_frame"] = None if peak is None else frame_indices(volume)[peak[0]]
    block["peak_time"] = None if peak is None or times is None else times[peak[0]]
    return block
