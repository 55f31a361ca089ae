"""What a target reads (explain/targets.py): a mask on the output's grid, a reference vector
checked. The files themselves are read by files/ (files.references.TargetFiles, handed in by
api.Explainer): explain/ receives arrays, never decodes a file."""

from pathlib import Path

import numpy as np

from gradcam_cli.explain.target_spec import TargetError

# A cell of the output's grid is inside a mask file when at least this share of it is.
MASK_SHARE = 0.5


def mask_on_grid(inside, path, grid):
    """A mask read as an (H, W) bool array (files.references.TargetFiles.mask) on the output's
    grid (h, w) as float32 0/1: a cell is inside when at least MASK_SHARE of it is. TargetError
    when no cell is."""
    import cv2

    share = cv2.resize(np.asarray(inside, np.float32), (int(grid[1]), int(grid[0])), interpolation=cv2.INTER_AREA)
    mask = (share >= MASK_SHARE).astype(np.float32)
    if not mask.any():
        raise TargetError(f"the mask {str(path)!r} covers no cell of the output's {grid[0]}x{grid[1]} grid "
                          f"(a cell is inside when at least half of it is)")
    return mask


def read_file(files, what, path):
    """files.mask(path) or files.reference(path) (files.references.TargetFiles): TargetError in
    one line when it cannot be read."""
    if files is None:
        raise TargetError(f"{what} files are read by the API (api.Explainer): give the target there")
    if not Path(path).is_file():
        raise TargetError(f"the {what} {str(path)!r} is not a file: give "
                          + ("an image" if what == "mask" else "an image or a .npy vector"))
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
