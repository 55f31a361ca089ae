"""The files a target reads (explain/targets.py): masks (images, or 3-D label maps) and reference
vectors or images.

explain/ receives arrays, never paths: api.Explainer hands explain.targets.bind a TargetFiles,
which reads through files/'s one gate (images.py: the pixel limit before any decoder) and
checks a .npy reference from its header before loading it.
"""

from dataclasses import dataclass

import numpy as np

from gradcam_cli.errors import ImageError
from gradcam_cli.files.headers import NpyVersionError, read_npy_header
from gradcam_cli.files.images import load_rgb, read_mask

# The most values a .npy reference may hold (10^8: 400 MB as float32), checked from its header.
MAX_VECTOR_VALUES = 10 ** 8
# The dtypes a reference vector may have: bool, integers, floats (no objects, strings, complex).
VECTOR_KINDS = "biuf"


def read_vector(path):
    """A .npy file as a flat float32 vector, checked from its header before any value is read:
    a .npy array (not empty, not another file), of a real dtype (bool, integer, float), of at
    most MAX_VECTOR_VALUES values. ImageError with the reason otherwise. Values that are not
    finite in float32 are left for the caller (explain.targets) to refuse."""
    try:
        with open(path, "rb") as file:
            try:
                shape, fortran, dtype = read_npy_header(file)
            except NpyVersionError as error:
                raise ImageError(f"a .npy file of format version {error.version[0]}.{error.version[1]}: save it "
                                 "with numpy.save") from None
            except (ValueError, EOFError, SyntaxError, TypeError) as error:
                empty = file.seek(0, 2) == 0
                raise ImageError("an empty file, not a .npy array" if empty else
                                 f"not a .npy array ({' '.join(str(error).split())[:120]})") from None
            if dtype.kind not in VECTOR_KINDS or dtype.fields is not None or dtype.subdtype is not None:
                raise ImageError(f"values of type {dtype}: give real numbers (float, integer or bool)")
            count = int(np.prod(shape, dtype=object))
            if count == 0:
                raise ImageError(f"an array of shape {tuple(shape)} holds no values")
            if count > MAX_VECTOR_VALUES:
                raise ImageError(f"an array of shape {tuple(shape)} ({count:,} values), over the limit of "
                                 f"{MAX_VECTOR_VALUES:,}")
            try:
                values = np.fromfile(file, dtype=dtype, count=count)
            except (ValueError, MemoryError) as error:
                raise ImageError(f"cannot read its values: {error}") from None
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except OSError as error:
        raise ImageError(f"cannot read: {error.strerror or error}") from None
    if values.size != count:
        raise ImageError(f"the file is cut short: its header gives {count:,} values, it holds {values.size:,}")
    values = values.reshape(tuple(shape), order="F" if fortran else "C")
    with np.errstate(over="ignore"):
        return values.astype(np.float32).reshape(-1)


def read_label_map(path, max_voxels=None):
    """A 3-D label map (NIfTI, .npy or .npz, files.volumes.read_volume: bounded by `max_voxels`,
    default its own limit; nibabel's axis order, as the scans are read) as a (D1, D2, D3) bool
    array: the voxels whose label is non-zero, by the rule of images.read_mask (values are labels,
    never scaled or thresholded otherwise; a label 2 counts). ImageError (files.volumes.VolumeError)
    in one line for a file that is not one volume of one channel."""
    from gradcam_cli.files.volumes import DEFAULT_MAX_VOXELS, VolumeError, read_volume

    volume = read_volume(path, DEFAULT_MAX_VOXELS if max_voxels is None else max_voxels)
    if volume.channels != 1:
        raise VolumeError(f"{path}: a label map has one value per voxel; this one has {volume.channels} on a fourth "
                          "axis")
    return volume.array[..., 0] != 0


@dataclass(frozen=True)
class TargetFiles:
    """How explain.targets reads the files a target names: `embed(rgb) -> (D,)` runs a reference
    image through the model (api.Explainer supplies it)."""

    embed: object = None

    def mask(self, path):
        """The mask at `path`: a volume file (.nii, .nii.gz, .npy, .npz) as a (D1, D2, D3) bool
        label map (read_label_map), any other file as an (H, W) bool array (images.read_mask's
        rule). ImageError."""
        from gradcam_cli.files.volumes import volume_suffix

        return read_label_map(path) if volume_suffix(path) is not None else read_mask(path)

    def reference(self, path):
        """The reference vector at `path`: a .npy file (read_vector), or an image embedded by
        the model. ImageError when it cannot be read."""
        from pathlib import Path

        if Path(path).suffix.lower() == ".npy":
            return read_vector(path)
        if self.embed is None:
            raise ImageError("a reference image needs the model to embed it")
        return np.asarray(self.embed(load_rgb(path)), dtype=np.float32).reshape(-1)
