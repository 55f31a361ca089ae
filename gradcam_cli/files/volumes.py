"""Volume files (CT, MRI, any 3-D array) in and maps out: NIfTI, NumPy and DICOM series.

A volume leaves here as the model receives it (docs: the volumes conventions): its array, float32,
in the order it is stored, never reoriented, resampled or transposed, with a channel axis appended
to a 3-axis array; a 4-axis array keeps its fourth axis as the channels (an fMRI's time points or
a multi-echo scan's echoes are each a channel: no volume of them is taken silently). Its affine
(voxel index -> world millimetres) goes with it, to be carried to the outputs, never applied.

  - NIfTI (.nii, .nii.gz), read by nibabel: `get_fdata(dtype=float32)`, in nibabel's (X, Y, Z)
    order, its scaling (scl_slope, scl_inter) applied; the affine is `img.affine` (the sform's
    when its code is set, else the qform's), and the qform and sform codes are kept for the maps.
  - NumPy (.npy, or a .npz of exactly one array): the array as stored; the affine is the identity.
  - DICOM: a folder of one series, read by pydicom (files/dicom.py: the order of the slices, the
    rescale and the affine).

Every file passes one gate before any data is read: its shape, from its header, gives the voxel
count (every axis's length multiplied, a fourth axis included), checked against `max_voxels`
(default: the number that --max-pixels takes by default, files/images.py's DEFAULT_MAX_PIXELS).
nibabel and pydicom come with the `volume` extra and are imported here only, when needed.
"""

import gzip
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradcam_cli.errors import GradcamError, ImageError, argument, one_line
from gradcam_cli.files.images import DEFAULT_MAX_PIXELS
from gradcam_cli.files.outputs import write_atomic, write_npy

# The suffixes of volume files (a folder of DICOM files is a volume too: is_volume).
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".npy", ".npz")
# The default voxel limit: the same number as the image pixel limit (Pillow's own).
DEFAULT_MAX_VOXELS = DEFAULT_MAX_PIXELS
# What a volume's stored values may be: bool, signed and unsigned integers, floats.
_REAL_KINDS = "biuf"
_EXTRA = "pip install 'gradcam-cli[volume]'"


class VolumeError(ImageError):
    """One volume file or DICOM folder could not be used: the message names it and says why."""


@dataclass(frozen=True, eq=False)
class Volume:
    """A volume as the model receives it.

    array:   (D1, D2, D3, C) float32, the stored order (a channel axis appended to a 3-axis array).
    affine:  (4, 4) float64, voxel index (i, j, k, 1) -> world millimetres (NIfTI's RAS+ world;
             the identity for .npy and .npz).
    spacing: the voxel sizes in mm, the norms of the affine's first three columns (1s for NumPy).
    source:  the path read; kind: 'nifti', 'npy', 'dicom', or 'clip' (a video's frames (T, H, W, 3)).
    codes:   (qform_code, sform_code) of a NIfTI input; None for the others.
    clip:    for kind 'clip', the files.clips.Clip it came from (frame indices, times); else None.
    """

    array: np.ndarray
    affine: np.ndarray
    spacing: tuple
    source: str
    kind: str
    codes: tuple = None
    clip: object = None

    @property
    def shape(self):
        """The three spatial axes' lengths (D1, D2, D3)."""
        return tuple(int(n) for n in self.array.shape[:3])

    @property
    def channels(self):
        return int(self.array.shape[3])

    @property
    def oriented(self):
        """Whether the affine places the volume in a patient's world: DICOM's, and a NIfTI's with a
        qform or sform code. A NumPy array's identity, or a NIfTI's without codes, tells no anatomy."""
        return self.kind == "dicom" or (self.kind == "nifti" and (self.codes is None or any(self.codes)))

    def world(self, index):
        """World millimetres of voxel `index` = (i, j, k) (whole or fractional): affine @ [i, j, k, 1]."""
        i, j, k = (float(v) for v in index)
        return (self.affine @ np.array([i, j, k, 1.0]))[:3]

    def record(self):
        """What a JSON record says of the volume: its kind, shape, channels, voxel sizes and affine."""
        return {"kind": self.kind, "shape": list(self.shape), "channels": self.channels,
                "spacing": [float(s) for s in self.spacing], "affine": self.affine.tolist()}


def clip_volume(clip):
    """A files.clips.Clip as the volume a video model takes (the clips contract): its frames
    (T, H, W, 3) as float32 RGB 0..255 (the model's preprocessing comes later, as an image's), the
    identity affine, voxel sizes 1, kind 'clip', the Clip kept for its frame indices and times."""
    return Volume(clip.array.astype(np.float32), np.eye(4), (1.0, 1.0, 1.0), clip.source, "clip", None, clip)


def spacing_of(affine):
    """The voxel sizes of `affine`: the norms of its first three columns (what nibabel's
    `voxel_sizes` gives)."""
    return tuple(float(n) for n in np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0))


def window(array, low, high):
    """`array` clipped to [low, high] and scaled to [0, 1] (float32): a CT window such as
    -1000, 400. GradcamError unless low < high, both finite."""
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise GradcamError(f"a window's low end must be below its high end, both finite. "
                           f"Received: {argument('window', f'({low!r}, {high!r})', f'{low},{high}')}")
    clipped = np.clip(np.asarray(array, dtype=np.float32), np.float32(low), np.float32(high))
    return ((clipped - np.float32(low)) / np.float32(high - low)).astype(np.float32, copy=False)


def volume_suffix(path):
    """The volume suffix `path`'s name ends with (case ignored), or None."""
    name = Path(path).name.lower()
    return next((suffix for suffix in VOLUME_SUFFIXES if name.endswith(suffix) and len(name) > len(suffix)), None)


def is_volume(path):
    """Whether `path` is a volume: a file named *.nii, *.nii.gz, *.npy or *.npz, or a folder with a
    DICOM file directly in it (the DICM mark at byte 128; 132 bytes of each file read at most,
    stopping at the first DICOM file)."""
    path = Path(path)
    if path.is_dir():
        from gradcam_cli.files.dicom import holds_dicom

        return holds_dicom(path)
    return path.is_file() and volume_suffix(path) is not None


def _check_max_voxels(max_voxels):
    if max_voxels is not None and (isinstance(max_voxels, bool) or not isinstance(max_voxels, (int, np.integer))
                                   or max_voxels < 1):
        raise GradcamError(f"{argument('max_voxels')} must be a whole number of at least 1 or None. "
                           f"Received: {max_voxels!r}")


def check_shape(shape, max_voxels):
    """The gate: a stored shape of 3 or 4 axes, none of them empty, of at most `max_voxels` values
    (None: no limit). VolumeError (without the file's name) otherwise."""
    shape = tuple(int(n) for n in shape)
    spelled = "x".join(str(n) for n in shape) or "()"
    if not 3 <= len(shape) <= 4:
        raise VolumeError(f"a volume has 3 axes (or 4, the last its channels); this one has {len(shape)}: {spelled}")
    if min(shape) < 1:
        raise VolumeError(f"an empty volume: its shape {spelled} has an axis of length 0")
    count = int(np.prod(shape, dtype=object))
    if max_voxels is not None and count > max_voxels:
        raise VolumeError(f"volume too large: {spelled} is {count:,} voxels, over the limit of {max_voxels:,} "
                          f"({argument('max_voxels')})")


def check_dtype(dtype):
    """VolumeError for stored values that are not real numbers (complex, object, strings, records)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in _REAL_KINDS or dtype.shape:
        raise VolumeError(f"values of type {dtype} cannot be read as a volume: give real numbers "
                          f"(bool, integers or floats)")


def as_model_array(array):
    """The stored array as the model receives it: float32, (D1, D2, D3, C). VolumeError when a
    value is not finite (counted), or when the float32 cast overflows."""
    with np.errstate(over="ignore", invalid="ignore"):
        values = np.asarray(array).astype(np.float32, copy=False)
    bad = values.size - int(np.count_nonzero(np.isfinite(values)))
    if bad:
        raise VolumeError(f"{bad:,} of its {values.size:,} values are not finite (NaN or infinite, "
                          f"or beyond float32's range): give finite values")
    return values[..., None] if values.ndim == 3 else values


def read_volume(path, max_voxels=DEFAULT_MAX_VOXELS):
    """The Volume at `path` (a NIfTI or NumPy file, or a folder of one DICOM series). Its voxel
    count is read from its header and checked against `max_voxels` (None: no limit) before any
    data. VolumeError with one line naming the file for anything that cannot be read as a volume."""
    _check_max_voxels(max_voxels)
    path = Path(path)
    try:
        if path.is_dir():
            return _dicom(path, max_voxels)
        suffix = volume_suffix(path)
        if suffix is None:
            raise VolumeError(f"not a volume file: give a {', '.join(VOLUME_SUFFIXES)} file or a folder "
                              f"of one DICOM series")
        if not path.exists():
            raise VolumeError("no such file")
        if suffix in (".nii", ".nii.gz"):
            return _nifti(path, max_voxels)
        return _numpy(path, max_voxels)
    except ImageError as error:  # the reason (its argument tokens kept), named by the file
        raise VolumeError(f"{path}: {error.args[0]}") from None
    except PermissionError:
        raise VolumeError(f"{path}: permission denied") from None
    except OSError as error:
        raise VolumeError(f"{path}: cannot read: {error.strerror or one_line(error, 120)}") from None


def _needs(package, doing):
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError:
        raise VolumeError(f"{doing} needs {package}: {_EXTRA}") from None


def _nifti(path, max_voxels):
    nibabel = _needs("nibabel", "reading NIfTI")
    try:
        image = nibabel.load(path)  # the header alone: the data stays on disk (a lazy array proxy)
    except (nibabel.filebasedimages.ImageFileError, nibabel.spatialimages.HeaderDataError, OSError, EOFError,
            ValueError) as error:
        raise VolumeError(f"not a readable NIfTI file ({one_line(error, 120)})") from None
    header = image.header
    check_shape(header.get_data_shape(), max_voxels)
    check_dtype(header.get_data_dtype())
    try:
        array = image.get_fdata(dtype=np.float32)
    except (OSError, EOFError, ValueError) as error:
        raise VolumeError(f"cannot read its data: {one_line(error, 120)}") from None
    affine = np.array(image.affine, dtype=np.float64)
    codes = (int(header["qform_code"]), int(header["sform_code"]))
    return Volume(as_model_array(array), affine, spacing_of(affine), str(path), "nifti", codes)


def _npy_header(stream):
    """(shape, dtype) from a .npy header (files.headers.read_npy_header), the stream left after it."""
    from gradcam_cli.files.headers import NpyVersionError, read_npy_header

    try:
        shape, _, dtype = read_npy_header(stream)
    except NpyVersionError as error:
        major, minor = error.version
        raise VolumeError(f"a .npy file of format version {major}.{minor}: versions 1.0 and 2.0 are read") from None
    except (ValueError, EOFError) as error:
        raise VolumeError(f"not a readable .npy array ({one_line(error, 120)})") from None
    return shape, dtype


def _read_npy(open_stream, max_voxels):
    """The array of the .npy stream that open_stream() opens (twice: the header, then the data)."""
    with open_stream() as stream:
        shape, dtype = _npy_header(stream)
    check_shape(shape, max_voxels)
    check_dtype(dtype)
    from numpy.lib import format as npy

    try:
        with open_stream() as stream:
            array = npy.read_array(stream, allow_pickle=False)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as error:
        raise VolumeError(f"cannot read its data ({one_line(error, 120)})") from None
    if array.shape != tuple(shape):
        raise VolumeError(f"its data is not of the shape its header says ({shape})")
    return array


def _numpy(path, max_voxels):
    if volume_suffix(path) == ".npy":
        array = _read_npy(lambda: open(path, "rb"), max_voxels)
    else:
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as error:
            raise VolumeError(f"not a readable .npz archive ({one_line(error, 120)})") from None
        with archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            if len(members) != 1:
                names = ", ".join(m.filename.removesuffix(".npy") for m in members[:10])
                more = ", ..." if len(members) > 10 else ""
                held = f"{len(members)} arrays ({names}{more})" if members else "no array"
                raise VolumeError(f"a .npz of {held}: give a .npz of exactly one array")
            array = _read_npy(lambda: archive.open(members[0]), max_voxels)
    affine = np.eye(4)
    return Volume(as_model_array(array), affine, spacing_of(affine), str(path), "npy")


def _dicom(folder, max_voxels):
    from gradcam_cli.files.dicom import read_series

    pydicom = _needs("pydicom", "reading DICOM")
    array, affine = read_series(pydicom, folder, lambda shape: check_shape(shape, max_voxels))
    return Volume(as_model_array(array), affine, spacing_of(affine), str(folder), "dicom", None)


# -- writing ----------------------------------------------------------------------------------

def _codes(volume):
    """(qform_code, sform_code) for a map of `volume`: a NIfTI input's own; 1 (scanner) for DICOM;
    2 (aligned) for NumPy's identity. Where a NIfTI input had both codes 0 (its affine nibabel's
    fallback from the voxel sizes), the map gets sform code 2 so that readers find the same affine."""
    if volume.kind == "nifti" and volume.codes is not None and any(volume.codes):
        return volume.codes
    return (1, 1) if volume.kind == "dicom" else (0, 2)


def write_nifti(path, map_array, volume):
    """Write `map_array` (the volume's (D1, D2, D3) shape, or with a fourth axis) as a float32 NIfTI
    with the volume's affine and NIfTI codes (_codes), atomically: gzip-compressed when `path` ends
    in .nii.gz (with a zero timestamp: the same map gives the same bytes), plain for .nii. Returns
    the path as a string."""
    map_array = np.asarray(map_array, dtype=np.float32)
    if map_array.ndim not in (3, 4) or map_array.shape[:3] != volume.shape:
        raise GradcamError(f"a map of shape {map_array.shape} does not fit the volume's {volume.shape}")
    name = Path(path).name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        raise GradcamError(f"a NIfTI map is named *.nii.gz or *.nii. Received: {str(path)!r}")
    nibabel = _needs("nibabel", "writing NIfTI")
    qform_code, sform_code = _codes(volume)
    image = nibabel.Nifti1Image(map_array, volume.affine)
    image.header.set_data_dtype(np.float32)
    image.set_qform(volume.affine, code=qform_code)
    image.set_sform(volume.affine, code=sform_code)
    data = image.to_bytes()
    if name.endswith(".gz"):
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as stream:
            stream.write(data)
        data = buffer.getvalue()
    write_atomic(path, data)
    return str(path)


def write_raw(path, map_array):
    """Write a map as a float32 .npy (np.save), atomically. Returns the path as a string."""
    return write_npy(path, map_array)
