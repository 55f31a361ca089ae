"""A folder of one DICOM series as an array and its affine (files/volumes.py makes it a Volume).

The array's axes are (columns, rows, slices): voxel (i, j, k) is column i of row j of the k-th
slice, as nibabel's DICOM wrappers (nibabel.nicom) and a NIfTI file's own storage order give it,
so that a DICOM series and the NIfTI a converter makes of it are indexed alike. Nothing is
flipped: where a converter (dcm2niix) flips the rows, the affine says so instead.

The slices are sorted by their position along the slice normal: n = row x column, the cross
product of ImageOrientationPatient's two direction cosines, dotted with ImagePositionPatient (not
by InstanceNumber or file name). Each slice's values are its stored values x RescaleSlope +
RescaleIntercept (Hounsfield units for CT).

The affine is the standard DICOM-to-NIfTI one (nibabel's "DICOM orientation" page, dcm2niix):
in DICOM's patient frame (LPS+), voxel (i, j, k) lies at

    P0 + i * dc * r + j * dr * c + k * s,

r and c ImageOrientationPatient's row and column direction cosines, dr and dc PixelSpacing's row
and column spacing (PixelSpacing is [between rows, between columns]), P0 the first slice's
ImagePositionPatient (the centre of its first pixel) and s the step from one slice's position to
the next ((P_last - P0) / (N - 1): a tilted gantry's shear is kept). NIfTI's world is RAS+, so the
affine is diag(-1, -1, 1, 1) times that matrix: a viewer places the maps where a converted scan
lies. A single slice steps along n by SpacingBetweenSlices, else SliceThickness, else 1 mm.

Read only: the files directly in the folder that carry the DICM mark at byte 128; files without
Rows and Columns (a DICOMDIR, a structured report) are not slices and are passed over. Refused in
one line: no slice, several series, a multi-frame or colour file, a slice without position,
orientation or spacing, slices that differ in size, orientation or spacing, two slices at one
position, unequal steps between slices (beyond SLICE_TOLERANCE), positions off one line, and a
transfer syntax pydicom cannot decode with the decoders installed.
"""

import os
from pathlib import Path

import numpy as np

from gradcam_cli.errors import ImageError, one_line

# Slices are equally spaced when each step along the normal is within 1% of the mean step (and
# within 1 micrometre for tiny steps): DS values carry ~16 significant characters, scanners
# round positions to 0.01 mm or finer.
SLICE_TOLERANCE = 0.01
_TOLERANCE_MM = 1e-3
# Where a DICOM file's "DICM" mark lies, after its 128-byte preamble.
_DICM_OFFSET = 128


def _is_dicom_file(path):
    """Whether the file at `path` carries the DICM mark at byte 128 (132 bytes read)."""
    try:
        with open(path, "rb") as stream:
            return stream.read(_DICM_OFFSET + 4)[_DICM_OFFSET:] == b"DICM"
    except OSError:
        return False


def dicom_files(folder):
    """The DICOM files directly in `folder`, sorted by name."""
    with os.scandir(folder) as entries:
        files = sorted(Path(entry.path) for entry in entries if entry.is_file())
    return [path for path in files if _is_dicom_file(path)]


def holds_dicom(folder):
    """Whether a file directly in `folder` is a DICOM file (stops at the first one)."""
    try:
        with os.scandir(folder) as entries:
            return any(entry.is_file() and _is_dicom_file(entry.path) for entry in entries)
    except OSError:
        return False


def _plugins(transfer_syntax):
    """What to install so that pydicom decodes `transfer_syntax`."""
    if transfer_syntax == "1.2.840.10008.1.2.5":
        return "pylibjpeg pylibjpeg-rle"
    if transfer_syntax.startswith(("1.2.840.10008.1.2.4.9", "1.2.840.10008.1.2.4.20")):
        return "pylibjpeg pylibjpeg-openjpeg"
    return "pylibjpeg pylibjpeg-libjpeg"


def _undecodable(name, transfer_syntax):
    return ImageError(f"{name}: pydicom cannot decode its transfer syntax '{transfer_syntax.name}' "
                      f"({transfer_syntax}) with the decoders installed: pylibjpeg or gdcm would decode it "
                      f"(pip install {_plugins(str(transfer_syntax))}, or python-gdcm)")


def _check_decodable(name, transfer_syntax):
    from pydicom.pixels import get_decoder

    try:
        available = get_decoder(transfer_syntax).is_available
    except NotImplementedError:  # video, private syntaxes: nothing would decode them into slices
        raise ImageError(f"{name}: transfer syntax '{transfer_syntax.name}' ({transfer_syntax}) holds no "
                         f"slice pydicom can decode") from None
    if not available:
        raise _undecodable(name, transfer_syntax)


def _numbers(dataset, keyword, count, name):
    value = dataset.get(keyword)
    try:
        values = [float(v) for v in value] if value is not None else []
    except (TypeError, ValueError):
        values = []
    if len(values) != count or not np.all(np.isfinite(values)):
        raise ImageError(f"{name} has no {keyword} ({count} numbers): a series is read from each slice's "
                         f"position, orientation and pixel spacing")
    return np.array(values, dtype=np.float64)


def _headers(pydicom, folder):
    """[(path, header dataset)] of the slices in `folder`: headers only (stop_before_pixels)."""
    slices = []
    for path in dicom_files(folder):
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as error:
            raise ImageError(f"{path.name}: not a readable DICOM file ({one_line(error, 120)})") from None
        if "Rows" in dataset and "Columns" in dataset:
            slices.append((path, dataset))
    if not slices:
        raise ImageError("no DICOM slice in this folder (files with the DICM mark at byte 128, with Rows and "
                         "Columns)")
    series = sorted({str(dataset.get("SeriesInstanceUID", "")) for _, dataset in slices})
    if len(series) > 1:
        shown = ", ".join(series[:3]) + (", ..." if len(series) > 3 else "")
        raise ImageError(f"the folder holds {len(series)} DICOM series (SeriesInstanceUID {shown}): give a "
                         f"folder of one series")
    return slices


def _geometry(slices):
    """(slices sorted along the normal, their (rows, columns), the LPS+ affine)."""
    first_name = slices[0][0].name
    size = (int(slices[0][1].Rows), int(slices[0][1].Columns))
    orientation = _numbers(slices[0][1], "ImageOrientationPatient", 6, first_name)
    spacing = _numbers(slices[0][1], "PixelSpacing", 2, first_name)
    positions = []
    for path, dataset in slices:
        frames = int(dataset.get("NumberOfFrames") or 1)
        if frames > 1:
            raise ImageError(f"{path.name} is a multi-frame file ({frames} frames): a series of one slice a "
                             f"file is read")
        if int(dataset.get("SamplesPerPixel") or 1) != 1:
            raise ImageError(f"{path.name} is a colour image ({dataset.SamplesPerPixel} samples a pixel): a "
                             f"series of greyscale slices is read")
        if (int(dataset.Rows), int(dataset.Columns)) != size:
            raise ImageError(f"slices of different sizes: {first_name} is {size[0]}x{size[1]} (rows x "
                             f"columns), {path.name} {dataset.Rows}x{dataset.Columns}")
        for keyword, first in (("ImageOrientationPatient", orientation), ("PixelSpacing", spacing)):
            if not np.allclose(_numbers(dataset, keyword, len(first), path.name), first, rtol=1e-4, atol=1e-4):
                raise ImageError(f"slices of different {keyword}: {first_name} and {path.name}")
        positions.append(_numbers(dataset, "ImagePositionPatient", 3, path.name))
    row, column = orientation[:3], orientation[3:]
    normal = np.cross(row, column)
    if not np.isclose(np.linalg.norm(normal), 1.0, atol=1e-3):
        raise ImageError(f"{first_name}: its ImageOrientationPatient is not two perpendicular unit directions")
    positions = np.array(positions)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    slices, positions, along = [slices[i] for i in order], positions[order], along[order]
    count = len(slices)
    if count > 1:
        steps = np.diff(along)
        mean = (along[-1] - along[0]) / (count - 1)
        tolerance = max(_TOLERANCE_MM, SLICE_TOLERANCE * abs(mean))
        shared = np.flatnonzero(steps <= _TOLERANCE_MM)
        if shared.size:
            first, second = slices[shared[0]][0].name, slices[shared[0] + 1][0].name
            raise ImageError(f"{first} and {second} lie at one position along the slice normal: several "
                             f"acquisitions or time points in one series are not read as one volume")
        if np.max(np.abs(steps - mean)) > tolerance:
            raise ImageError(f"unequal slice spacing: steps of {steps.min():.4g} to {steps.max():.4g} mm along "
                             f"the slice normal (tolerance {SLICE_TOLERANCE:.0%} of the mean step, {mean:.4g} mm)")
        step = (positions[-1] - positions[0]) / (count - 1)
        off = np.linalg.norm(positions - positions[0] - np.arange(count)[:, None] * step, axis=1)
        if off.max() > tolerance:
            raise ImageError(f"the slice positions do not lie on one line ({off.max():.4g} mm off it)")
    else:
        dataset = slices[0][1]
        thickness = dataset.get("SpacingBetweenSlices") or dataset.get("SliceThickness") or 1.0
        step = normal * float(thickness)
    affine = np.eye(4)
    affine[:3, 0] = row * spacing[1]  # i: along a row, one column to the next
    affine[:3, 1] = column * spacing[0]  # j: down a column, one row to the next
    affine[:3, 2] = step
    affine[:3, 3] = positions[0]
    return slices, size, affine


def read_series(pydicom, folder, check_shape):
    """(array (columns, rows, slices) float32 in rescaled units, the NIfTI (RAS+) affine) of the
    one series in `folder`. check_shape((columns, rows, slices)) runs on the headers' figures
    before any pixel is decoded. ImageError (without the folder's name) when it cannot be read."""
    slices, (rows, columns), affine = _geometry(_headers(pydicom, folder))
    check_shape((columns, rows, len(slices)))
    for transfer_syntax in sorted({str(d.file_meta.get("TransferSyntaxUID", "")) for _, d in slices}):
        name = next(p.name for p, d in slices if str(d.file_meta.get("TransferSyntaxUID", "")) == transfer_syntax)
        _check_decodable(name, pydicom.uid.UID(transfer_syntax))
    array = np.empty((columns, rows, len(slices)), dtype=np.float32)
    for index, (path, header) in enumerate(slices):
        transfer_syntax = pydicom.uid.UID(str(header.file_meta.get("TransferSyntaxUID", "")))
        try:
            dataset = pydicom.dcmread(path)
            # decoded only at the size measured (the file may have changed since its header was read)
            same = (dataset.get("Rows"), dataset.get("Columns")) == (rows, columns)
            pixels = dataset.pixel_array if same else None
        except Exception as error:  # pydicom's decoders raise many kinds (RuntimeError, ValueError, OSError...)
            if transfer_syntax.is_compressed:
                raise _undecodable(path.name, transfer_syntax) from None
            raise ImageError(f"{path.name}: cannot read its pixel data ({one_line(error, 120)})") from None
        if pixels is None or pixels.shape != (rows, columns):
            raise ImageError(f"{path.name}: its pixel data is not the {rows}x{columns} its header said")
        slope, intercept = header.get("RescaleSlope"), header.get("RescaleIntercept")
        slope, intercept = 1.0 if slope is None else float(slope), 0.0 if intercept is None else float(intercept)
        array[:, :, index] = (pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)).T
    return array, np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
