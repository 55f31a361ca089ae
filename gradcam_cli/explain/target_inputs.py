"""What a target reads (explain/targets.py): a mask on the output's grid, a reference vector
checked. The files themselves are read by files/ (files.references.TargetFiles, handed in by
api.Explainer): explain/ receives arrays, never decodes a file."""

from pathlib import Path

import numpy as np

from gradcam_cli.explain.target_spec import TargetError

# A cell of the output's grid is inside a mask file when at least this share of it is.
MASK_SHARE = 0.5


def mask_on_grid(inside, path, grid):
    """A mask read as an (H, W) bool array (files.references.TargetFiles.mask) on a 2-D output's
    grid (h, w), or a label map's (D1, D2, D3) bool array on a 3-D output's grid (d1, d2, d3), as
    float32 0/1: a cell is inside when at least MASK_SHARE of it is. The share is the cell's box
    overlap with the mask (area averaging: cv2.INTER_AREA in 2-D, overlap_share in 3-D). TargetError
    in one line for a 2-D mask on a 3-D output or the other way round, and when no cell is inside."""
    inside = np.asarray(inside)
    grid = tuple(int(n) for n in grid)
    if inside.ndim != len(grid):
        given, wanted = ("an image mask (2-D)", "a 3-D label map (.nii, .nii.gz, .npy)") if inside.ndim == 2 else \
            ("a 3-D label map", "an image mask (.png...)")
        raise TargetError(f"the mask {str(path)!r} is {given}; the model's output is "
                          f"{'x'.join(map(str, grid))} per class: give {wanted}")
    if len(grid) == 2:
        import cv2

        share = cv2.resize(inside.astype(np.float32), (grid[1], grid[0]), interpolation=cv2.INTER_AREA)
    else:
        share = overlap_share(inside, grid)
    mask = (share >= MASK_SHARE).astype(np.float32)
    if not mask.any():
        raise TargetError(f"the mask {str(path)!r} covers no cell of the output's {'x'.join(map(str, grid))} grid "
                          f"(a cell is inside when at least half of it is)")
    return mask


def overlap_share(inside, grid):
    """Each cell of `grid` (n axes, the mask's extent divided evenly) as the share of its box that
    lies inside the bool array `inside`: area (box overlap) averaging, one axis at a time (the
    shares are products of per-axis overlaps), as cv2.INTER_AREA shrinks an image. float64."""
    share = np.asarray(inside, dtype=np.float64)
    for axis, cells in enumerate(grid):
        share = np.moveaxis(np.tensordot(_overlaps(share.shape[axis], cells), np.moveaxis(share, axis, 0), axes=1),
                            0, axis)
    return share


def _overlaps(length, cells):
    """(cells, length): the share of output cell i's extent [i L / n, (i + 1) L / n) that voxel j covers."""
    edges = np.arange(cells + 1) * (length / cells)
    low, high = edges[:-1, None], edges[1:, None]
    voxel = np.arange(length)[None, :]
    covered = np.clip(np.minimum(high, voxel + 1) - np.maximum(low, voxel), 0, None)
    return covered / (length / cells)


def read_file(files, what, path):
    """files.mask(path) or files.reference(path) (files.references.TargetFiles): TargetError in
    one line when it cannot be read."""
    if files is None:
        raise TargetError(f"{what} files are read by the API (api.Explainer): give the target there")
    if not Path(path).is_file():
        raise TargetError(f"the {what} {str(path)!r} is not a file: give "
                          + ("an image (a 3-D label map for a 3-D segmenter)" if what == "mask"
                             else "an image or a .npy vector"))
    try:
        return files.mask(path) if what == "mask" else files.reference(path)
    except (OSError, ValueError) as error:
        named = what if what == "mask" else f"reference {'vector' if Path(path).suffix.lower() == '.npy' else 'image'}"
        raise TargetError(f"cannot read the {named} {str(path)!r}: {error}") from None


def checked_reference(vector, path):
    """A reference vector refused in one line when a cosine similarity to it is undefined: a
    value that is not finite, or zero everywhere."""
    if not np.isfinite(vector).all():
        bad = int(np.size(vector) - np.isfinite(vector).sum())
        raise TargetError(f"the reference {str(path)!r} holds {bad} value(s) that are not finite (NaN or infinity "
                          "in float32): give finite numbers")
    if not vector.any():
        raise TargetError(f"the reference {str(path)!r} is zero everywhere: a similarity to it is undefined")
    return vector
