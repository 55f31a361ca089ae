"""Reading and writing volume files (gradcam_cli/files/volumes.py, files/dicom.py): NIfTI, NumPy
and DICOM series read as the model receives them (float32, (D1, D2, D3, C), the stored order, the
affine carried), every file measured from its header before any data, and refused in one line
naming the file. Every file is written here, in tmp_path: NIfTI and DICOM with nibabel and pydicom,
the NumPy headers by hand where they must claim what their data is not."""

import io
import sys
import zipfile

import numpy as np
import pytest

from gradcam_cli.errors import GradcamError, ImageError
from gradcam_cli.files.images import DEFAULT_MAX_PIXELS
from gradcam_cli.files.volumes import (
    DEFAULT_MAX_VOXELS,
    VOLUME_SUFFIXES,
    Volume,
    VolumeError,
    is_volume,
    read_volume,
    window,
    write_nifti,
    write_raw,
)

nibabel = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")

LIMIT = "89,478,485"
REAL = "give real numbers (bool, integers or floats)"


def _rotation(a, b, c):
    """A rotation matrix: about z by a, y by b, x by c (radians)."""
    z = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    y = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    x = np.array([[1, 0, 0], [0, np.cos(c), -np.sin(c)], [0, np.sin(c), np.cos(c)]])
    return z @ y @ x


# A rotation, 2 mm voxels (2.5 along the third axis) and an offset.
AFFINE = np.eye(4)
AFFINE[:3, :3] = _rotation(0.3, -0.2, 0.5) @ np.diag([2.0, 2.0, 2.5])
AFFINE[:3, 3] = [-90.5, 12.25, 40.0]


def _values(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).normal(0, 100, shape).astype(dtype)


def _nifti(path, array, affine=AFFINE, qform_code=1, sform_code=2):
    image = nibabel.Nifti1Image(array, affine)
    image.set_qform(affine, code=qform_code)
    image.set_sform(affine, code=sform_code)
    nibabel.save(image, path)
    return path


def _npy_header(shape, descr="<f4"):
    """A .npy file's magic and version 1.0 header claiming `shape`, with no data after it."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


# -- NIfTI ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_reads_the_array_affine_and_spacing(tmp_path, suffix):
    array = _values((5, 6, 7))
    path = _nifti(tmp_path / f"scan{suffix}", array)
    volume = read_volume(path)
    assert volume.array.dtype == np.float32 and volume.array.shape == (5, 6, 7, 1)
    np.testing.assert_array_equal(volume.array[..., 0], array)
    np.testing.assert_allclose(volume.affine, AFFINE, atol=1e-5)  # sform's float32 storage
    assert volume.affine.dtype == np.float64
    assert volume.spacing == pytest.approx((2.0, 2.0, 2.5), abs=1e-5)
    assert (volume.kind, volume.source, volume.codes, volume.shape, volume.channels) == \
        ("nifti", str(path), (1, 2), (5, 6, 7), 1)
    np.testing.assert_allclose(volume.world((2, 3, 4)), AFFINE[:3, :3] @ [2, 3, 4] + AFFINE[:3, 3], atol=1e-4)
    record = volume.record()
    assert record["shape"] == [5, 6, 7] and record["channels"] == 1 and record["kind"] == "nifti"
    assert record["spacing"] == pytest.approx([2.0, 2.0, 2.5], abs=1e-5)
    np.testing.assert_allclose(record["affine"], AFFINE, atol=1e-5)


def test_nifti_scaling_and_a_fourth_axis_kept_as_channels(tmp_path):
    stored = np.arange(2 * 3 * 4 * 3, dtype=np.int16).reshape(2, 3, 4, 3)
    image = nibabel.Nifti1Image(stored, AFFINE)
    image.header.set_slope_inter(0.5, -10.0)
    nibabel.save(image, tmp_path / "echoes.nii.gz")
    volume = read_volume(tmp_path / "echoes.nii.gz")
    assert volume.array.shape == (2, 3, 4, 3)
    np.testing.assert_array_equal(volume.array, stored * 0.5 - 10.0)


# -- NumPy ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, expected", [((4, 5, 6), (4, 5, 6, 1)), ((4, 5, 6, 2), (4, 5, 6, 2))])
def test_npy_three_and_four_axes(tmp_path, shape, expected):
    array = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    np.save(tmp_path / "v.npy", array)
    volume = read_volume(tmp_path / "v.npy")
    assert volume.array.shape == expected and volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array.reshape(shape), array)
    np.testing.assert_array_equal(volume.affine, np.eye(4))
    assert (volume.spacing, volume.kind, volume.codes) == ((1.0, 1.0, 1.0), "npy", None)


def test_npy_fortran_order_is_the_same_array(tmp_path):
    array = np.asfortranarray(_values((3, 4, 5)))
    np.save(tmp_path / "f.npy", array)
    np.testing.assert_array_equal(read_volume(tmp_path / "f.npy").array[..., 0], array)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_of_one_array(tmp_path, save):
    array = _values((3, 4, 5))
    save(tmp_path / "one.npz", scan=array)
    volume = read_volume(tmp_path / "one.npz")
    np.testing.assert_array_equal(volume.array[..., 0], array)
    assert volume.kind == "npy"


# -- refusals: one line, naming the file -----------------------------------------------------------

def _save(array, **options):
    return lambda path: np.save(path, array, **options)


def _raw(data):
    return lambda path: path.write_bytes(data)


def _npz_header_only(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("huge.npy", _npy_header((10 ** 4, 10 ** 4, 10 ** 4)))


def _huge_nifti(path):
    header = nibabel.Nifti1Header()
    header.set_data_shape((30000, 30000, 30000))
    header.set_data_dtype(np.float32)
    path.write_bytes(header.binaryblock + b"\x00" * 4)  # the header and an empty extension flag: no data


NAN = np.ones((3, 4, 5), np.float32)
NAN[0, 0, 0], NAN[1, 2, 3] = np.nan, -np.inf

REFUSALS = [
    ("two.npz", lambda p: np.savez(p, a=np.ones((2, 2, 2)), b=np.ones((2, 2, 2))),
     "a .npz of 2 arrays (a, b): give a .npz of exactly one array"),
    ("none.npz", lambda p: np.savez(p), "a .npz of no array: give a .npz of exactly one array"),
    ("flat.npy", _save(np.ones((4, 5))), "a volume has 3 axes (or 4, the last its channels); this one has 2: 4x5"),
    ("five.npy", _save(np.ones((2, 2, 2, 2, 2))),
     "a volume has 3 axes (or 4, the last its channels); this one has 5: 2x2x2x2x2"),
    ("empty.npy", _save(np.ones((4, 0, 3))), "an empty volume: its shape 4x0x3 has an axis of length 0"),
    ("complex.npy", _save(np.ones((2, 2, 2), np.complex128)),
     f"values of type complex128 cannot be read as a volume: {REAL}"),
    ("object.npy", _save(np.empty((2, 2, 2), object), allow_pickle=True),
     f"values of type object cannot be read as a volume: {REAL}"),
    ("text.npy", _save(np.full((2, 2, 2), "abc")), f"values of type <U3 cannot be read as a volume: {REAL}"),
    ("nan.npy", _save(NAN), "2 of its 60 values are not finite (NaN or infinite, or beyond float32's range): "
     "give finite values"),
    ("overflow.npy", _save(np.full((2, 2, 2), 1e39)), "8 of its 8 values are not finite (NaN or infinite, or "
     "beyond float32's range): give finite values"),
    ("huge.npy", _raw(_npy_header((10 ** 4, 10 ** 4, 10 ** 4))),
     f"volume too large: 10000x10000x10000 is 1,000,000,000,000 voxels, over the limit of {LIMIT} (max_voxels)"),
    ("huge.npz", _npz_header_only,
     f"volume too large: 10000x10000x10000 is 1,000,000,000,000 voxels, over the limit of {LIMIT} (max_voxels)"),
    ("huge.nii", _huge_nifti,
     f"volume too large: 30000x30000x30000 is 27,000,000,000,000 voxels, over the limit of {LIMIT} (max_voxels)"),
    ("huge4d.npy", _raw(_npy_header((1000, 1000, 100, 2))),
     f"volume too large: 1000x1000x100x2 is 200,000,000 voxels, over the limit of {LIMIT} (max_voxels)"),
    ("scan.png", _raw(b"\x89PNG\r\n\x1a\n"),
     "not a volume file: give a .nii.gz, .nii, .npy, .npz file or a folder of one DICOM series"),
    ("missing.npy", None, "no such file"),
]


@pytest.mark.parametrize("name, write, message", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refused_in_one_line(tmp_path, name, write, message):
    path = tmp_path / name
    if write is not None:
        write(path)
    with pytest.raises(VolumeError) as caught:
        read_volume(path)
    assert str(caught.value) == f"{path}: {message}"
    assert isinstance(caught.value, ImageError)


@pytest.mark.parametrize("name, data, start", [
    ("short.npy", _npy_header((3, 4, 5)) + b"\x00" * 10, "cannot read its data ("),
    ("junk.npy", b"not an array at all", "not a readable .npy array ("),
    ("junk.npz", b"not a zip", "not a readable .npz archive ("),
    ("junk.nii", b"\x00" * 400, "not a readable NIfTI file ("),
    ("junk.nii.gz", b"\x1f\x8b not gzip", "not a readable NIfTI file ("),
])
def test_broken_files_refused_in_one_line(tmp_path, name, data, start):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(VolumeError) as caught:
        read_volume(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: {start}") and "\n" not in text


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_a_cut_nifti_refused_in_one_line(tmp_path, suffix):
    whole = _nifti(tmp_path / f"whole{suffix}", _values((30, 40, 50))).read_bytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(VolumeError) as caught:
        read_volume(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: cannot read its data: ") and "\n" not in text


def test_the_limit_is_the_image_limit_and_spelled_for_the_command_line(tmp_path):
    assert DEFAULT_MAX_VOXELS == DEFAULT_MAX_PIXELS == 89_478_485
    np.save(tmp_path / "v.npy", np.ones((3, 4, 5), np.float32))
    assert read_volume(tmp_path / "v.npy", max_voxels=60).shape == (3, 4, 5)
    assert read_volume(tmp_path / "v.npy", max_voxels=None).shape == (3, 4, 5)
    with pytest.raises(VolumeError) as caught:
        read_volume(tmp_path / "v.npy", max_voxels=59)
    assert caught.value.worded(lambda name, python, command: "--max-voxels") == \
        f"{tmp_path / 'v.npy'}: volume too large: 3x4x5 is 60 voxels, over the limit of 59 (--max-voxels)"


@pytest.mark.parametrize("limit", [0, -1, 2.5, True, "10"])
def test_a_bad_limit_is_refused(tmp_path, limit):
    with pytest.raises(GradcamError) as caught:
        read_volume(tmp_path / "v.npy", max_voxels=limit)
    assert str(caught.value) == f"max_voxels must be a whole number of at least 1 or None. Received: {limit!r}"


@pytest.mark.parametrize("package, name, doing", [("nibabel", "scan.nii.gz", "reading NIfTI"),
                                                  ("pydicom", "series", "reading DICOM")])
def test_a_missing_package_is_one_line(tmp_path, monkeypatch, package, name, doing):
    path = tmp_path / name
    if name == "series":
        _series(path)
    else:
        _nifti(path, _values((2, 3, 4)))
    monkeypatch.setitem(sys.modules, package, None)  # import fails
    with pytest.raises(VolumeError) as caught:
        read_volume(path)
    assert str(caught.value) == f"{path}: {doing} needs {package}: pip install 'gradcam-cli[volume]'"


# -- DICOM ----------------------------------------------------------------------------------------

ROWS, COLUMNS, SLICES = 4, 6, 5
PIXEL_SPACING = (0.7, 0.8)  # between rows, between columns
ROTATION = _rotation(0.4, 0.3, -0.25)  # columns: the row direction, the column direction, the normal


def _ds(value):
    return f"{value:.8f}"[:16]


def _slice(path, pixels, position, series="1.2.826.0.1.3680043.2.1", orientation=ROTATION, slope=2, intercept=-1024,
           transfer_syntax=None, number=1, **extra):
    """One CT slice written with pydicom; `extra` overrides (None: the attribute left out)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    transfer_syntax = transfer_syntax or ExplicitVRLittleEndian
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality, ds.InstanceNumber = "1.2.3", series, "CT", number
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.ImageOrientationPatient = [_ds(v) for v in (*orientation[:, 0], *orientation[:, 1])]
    ds.PixelSpacing = [_ds(v) for v in PIXEL_SPACING]
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    data = pixels.astype("<i2").tobytes()
    ds.PixelData = encapsulate([data]) if pydicom.uid.UID(transfer_syntax).is_compressed else data
    for keyword, value in extra.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)


def _positions(count=SLICES, step=2.5, origin=(-100.0, 50.0, 20.0), steps=None):
    along = np.cumsum([0.0] + list(steps)) if steps is not None else np.arange(count) * step
    return [np.array(origin) + d * ROTATION[:, 2] for d in along]


def _series(folder, positions=None, names=None, series="1.2.826.0.1.3680043.2.1", **options):
    """A series of slices, slice k at positions[k] in a file whose name does not give its order
    (and InstanceNumbers reversed): returns the stored pixels of each slice, in slice order."""
    folder.mkdir(exist_ok=True)
    positions = _positions() if positions is None else positions
    names = names or [f"im{n:02d}.dcm" for n in np.random.default_rng(1).permutation(len(positions))]
    stored = []
    for k, position in enumerate(positions):
        pixels = np.random.default_rng(10 + k).integers(-500, 1500, (ROWS, COLUMNS)).astype(np.int16)
        _slice(folder / names[k], pixels, position, series=series, number=len(positions) - k, **options)
        stored.append(pixels)
    return stored


def _ras(point):
    return np.array([-point[0], -point[1], point[2]])


def test_a_dicom_series_sorted_rescaled_and_placed(tmp_path):
    stored = _series(tmp_path / "ct")
    (tmp_path / "ct" / "notes.txt").write_text("not a slice")
    volume = read_volume(tmp_path / "ct")
    assert (volume.kind, volume.source, volume.codes) == ("dicom", str(tmp_path / "ct"), None)
    assert volume.array.shape == (COLUMNS, ROWS, SLICES, 1)
    for k, pixels in enumerate(stored):  # (columns, rows, slices): column i of row j of slice k
        np.testing.assert_array_equal(volume.array[:, :, k, 0], (pixels.astype(np.float32) * 2 - 1024).T)
    positions = _positions()
    for k in range(SLICES):  # voxel (0, 0, k) at slice k's ImagePositionPatient, in RAS+
        np.testing.assert_allclose(volume.world((0, 0, k)), _ras(positions[k]), atol=1e-5)
    row, column = ROTATION[:, 0], ROTATION[:, 1]
    np.testing.assert_allclose(volume.world((5, 3, 2)), _ras(positions[2] + 5 * 0.8 * row + 3 * 0.7 * column),
                               atol=1e-5)
    assert volume.spacing == pytest.approx((0.8, 0.7, 2.5), abs=1e-6)


def test_a_single_slice_steps_by_its_thickness(tmp_path):
    _series(tmp_path / "one", positions=_positions(1), SliceThickness="3.0")
    volume = read_volume(tmp_path / "one")
    assert volume.array.shape == (COLUMNS, ROWS, 1, 1)
    assert volume.spacing == pytest.approx((0.8, 0.7, 3.0), abs=1e-6)


def test_two_series_refused(tmp_path):
    _series(tmp_path / "mixed", series="1.2.3.4.1")
    _series(tmp_path / "mixed", names=["b1.dcm", "b2.dcm"], positions=_positions(2), series="1.2.3.4.2")
    with pytest.raises(VolumeError) as caught:
        read_volume(tmp_path / "mixed")
    assert str(caught.value) == (f"{tmp_path / 'mixed'}: the folder holds 2 DICOM series (SeriesInstanceUID "
                                 f"1.2.3.4.1, 1.2.3.4.2): give a folder of one series")


JPEG2000 = "1.2.840.10008.1.2.4.91"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"
DICOM_REFUSALS = [
    # JPEG 2000 with Pillow installed: decoding fails; without: refused before. One message either way.
    ("jpeg2000", dict(transfer_syntax=JPEG2000),
     "im00.dcm: pydicom cannot decode its transfer syntax 'JPEG 2000 Image Compression' (1.2.840.10008.1.2.4.91) "
     "with the decoders installed: pylibjpeg or gdcm would decode it (pip install pylibjpeg pylibjpeg-openjpeg, "
     "or python-gdcm)"),
    ("jpeg-lossless", dict(transfer_syntax=JPEG_LOSSLESS),
     "im00.dcm: pydicom cannot decode its transfer syntax 'JPEG Lossless, Non-Hierarchical, First-Order "
     "Prediction (Process 14 [Selection Value 1])' (1.2.840.10008.1.2.4.70) with the decoders installed: "
     "pylibjpeg or gdcm would decode it (pip install pylibjpeg pylibjpeg-libjpeg, or python-gdcm)"),
    ("no-position", dict(ImagePositionPatient=None),
     "im00.dcm has no ImagePositionPatient (3 numbers): a series is read from each slice's position, orientation "
     "and pixel spacing"),
    ("no-orientation", dict(ImageOrientationPatient=None),
     "im00.dcm has no ImageOrientationPatient (6 numbers): a series is read from each slice's position, "
     "orientation and pixel spacing"),
    ("uneven", dict(positions=_positions(steps=[2.5, 2.5, 3.5, 2.5])),
     "unequal slice spacing: steps of 2.5 to 3.5 mm along the slice normal (tolerance 1% of the mean step, "
     "2.75 mm)"),
    ("same-place", dict(positions=_positions(steps=[2.5, 0.0, 2.5, 2.5])),
     "im01.dcm and im02.dcm lie at one position along the slice normal: several acquisitions or time points in "
     "one series are not read as one volume"),
    ("off-line", dict(positions=[p + (k == 2) * 2.0 * ROTATION[:, 0] for k, p in enumerate(_positions())]),
     "the slice positions do not lie on one line (2 mm off it)"),
    ("colour", dict(SamplesPerPixel=3), "im00.dcm is a colour image (3 samples a pixel): a series of greyscale "
     "slices is read"),
    ("multi-frame", dict(NumberOfFrames=2), "im00.dcm is a multi-frame file (2 frames): a series of one slice a "
     "file is read"),
]


@pytest.mark.parametrize("name, options, message", DICOM_REFUSALS, ids=[r[0] for r in DICOM_REFUSALS])
def test_dicom_refused_in_one_line(tmp_path, name, options, message):
    options = dict(options)
    if "transfer_syntax" in options:
        options["transfer_syntax"] = pydicom.uid.UID(options["transfer_syntax"])
    _series(tmp_path / name, names=[f"im{k:02d}.dcm" for k in range(SLICES)], **options)
    with pytest.raises(VolumeError) as caught:
        read_volume(tmp_path / name)
    assert str(caught.value) == f"{tmp_path / name}: {message}"


def test_dicom_without_rescale_keeps_the_stored_values(tmp_path):
    stored = _series(tmp_path / "mr", RescaleSlope=None, RescaleIntercept=None)
    np.testing.assert_array_equal(read_volume(tmp_path / "mr").array[..., 0], np.stack(stored, axis=-1).transpose(1, 0, 2))


def test_dicom_cut_pixel_data_refused_in_one_line(tmp_path):
    _series(tmp_path / "cut", names=[f"im{k:02d}.dcm" for k in range(SLICES)])
    dataset = pydicom.dcmread(tmp_path / "cut" / "im03.dcm")
    dataset.PixelData = dataset.PixelData[:20]
    dataset.save_as(tmp_path / "cut" / "im03.dcm")
    with pytest.raises(VolumeError) as caught:
        read_volume(tmp_path / "cut")
    text = str(caught.value)
    assert text.startswith(f"{tmp_path / 'cut'}: im03.dcm: cannot read its pixel data (") and "\n" not in text


def test_dicom_bounded_before_any_pixel(tmp_path):
    """The voxel count comes from the headers: a series whose pixel data could not be decoded at
    all is refused for its size, not for its data."""
    _series(tmp_path / "big", transfer_syntax=pydicom.uid.UID(JPEG_LOSSLESS))
    with pytest.raises(VolumeError) as caught:
        read_volume(tmp_path / "big", max_voxels=COLUMNS * ROWS * SLICES - 1)
    assert str(caught.value) == (f"{tmp_path / 'big'}: volume too large: 6x4x5 is 120 voxels, over the limit of "
                                 f"119 (max_voxels)")


def test_a_folder_without_dicom(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.dcm").write_bytes(b"\x00" * 200)  # no DICM mark
    with pytest.raises(VolumeError) as caught:
        read_volume(tmp_path / "empty")
    assert str(caught.value) == (f"{tmp_path / 'empty'}: no DICOM slice in this folder (files with the DICM mark "
                                 f"at byte 128, with Rows and Columns)")


# -- window, is_volume ------------------------------------------------------------------------------

def test_window_by_hand():
    values = np.array([-2000.0, -1000.0, -300.0, 0.0, 400.0, 3000.0])
    np.testing.assert_allclose(window(values, -1000, 400), [0.0, 0.0, 0.5, 1000 / 1400, 1.0, 1.0], rtol=1e-6)
    assert window(values, -1000, 400).dtype == np.float32


@pytest.mark.parametrize("low, high", [(400, -1000), (5, 5), (0, float("inf")), (float("nan"), 1)])
def test_window_needs_low_below_high(low, high):
    with pytest.raises(GradcamError) as caught:
        window(np.zeros(3), low, high)
    assert str(caught.value) == (f"a window's low end must be below its high end, both finite. Received: "
                                 f"window=({low!r}, {high!r})")


def test_is_volume(tmp_path):
    assert VOLUME_SUFFIXES == (".nii.gz", ".nii", ".npy", ".npz")
    for name in ("a.nii", "b.NII.GZ", "c.npy", "d.npz", "e.png", "f.gz", ".nii"):
        (tmp_path / name).write_bytes(b"x")
    found = {name: is_volume(tmp_path / name) for name in ("a.nii", "b.NII.GZ", "c.npy", "d.npz", "e.png", "f.gz",
                                                           ".nii", "absent.nii")}
    assert found == {"a.nii": True, "b.NII.GZ": True, "c.npy": True, "d.npz": True, "e.png": False,
                     "f.gz": False, ".nii": False, "absent.nii": False}
    _series(tmp_path / "ct", positions=_positions(1))
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "x.dcm").write_bytes(b"\x00" * 300)
    assert is_volume(tmp_path / "ct") and not is_volume(tmp_path / "pictures")


# -- writing -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
@pytest.mark.parametrize("source", ["nifti", "npy", "dicom"])
def test_write_nifti_round_trip(tmp_path, source, suffix):
    if source == "nifti":
        volume = read_volume(_nifti(tmp_path / "in.nii.gz", _values((6, 4, 5)), qform_code=1, sform_code=4))
    elif source == "npy":
        np.save(tmp_path / "in.npy", _values((6, 4, 5)))
        volume = read_volume(tmp_path / "in.npy")
    else:
        _series(tmp_path / "in")
        volume = read_volume(tmp_path / "in")
    heat = np.random.default_rng(3).random(volume.shape).astype(np.float32)
    out = tmp_path / "out" / f"map{suffix}"
    assert write_nifti(out, heat, volume) == str(out)
    image = nibabel.load(out)
    np.testing.assert_allclose(image.affine, volume.affine, atol=1e-5)
    np.testing.assert_array_equal(image.get_fdata(dtype=np.float32), heat)
    assert image.get_data_dtype() == np.float32
    codes = {"nifti": (1, 4), "npy": (0, 2), "dicom": (1, 1)}[source]
    assert (int(image.header["qform_code"]), int(image.header["sform_code"])) == codes
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary left
    first = out.read_bytes()
    write_nifti(out, heat, volume)
    assert out.read_bytes() == first  # the same map, the same bytes


def test_write_nifti_of_a_nifti_without_codes_keeps_its_affine(tmp_path):
    """Both codes 0: nibabel's affine is its fallback from the voxel sizes; the map says it in its sform."""
    image = nibabel.Nifti1Image(_values((4, 5, 6)), None)
    image.header.set_zooms((2.0, 3.0, 4.0))
    nibabel.save(image, tmp_path / "plain.nii")
    volume = read_volume(tmp_path / "plain.nii")
    assert volume.codes == (0, 0) and volume.spacing == (2.0, 3.0, 4.0)
    out = nibabel.load(write_nifti(tmp_path / "map.nii.gz", volume.array[..., 0], volume))
    np.testing.assert_array_equal(out.affine, volume.affine)
    assert (int(out.header["qform_code"]), int(out.header["sform_code"])) == (0, 2)


def test_write_nifti_refuses_a_map_of_another_shape(tmp_path):
    volume = Volume(np.zeros((2, 3, 4, 1), np.float32), np.eye(4), (1.0, 1.0, 1.0), "v.npy", "npy")
    with pytest.raises(GradcamError) as caught:
        write_nifti(tmp_path / "m.nii.gz", np.zeros((3, 3, 4)), volume)
    assert str(caught.value) == "a map of shape (3, 3, 4) does not fit the volume's (2, 3, 4)"
    with pytest.raises(GradcamError) as caught:
        write_nifti(tmp_path / "m.png", np.zeros((2, 3, 4)), volume)
    assert str(caught.value) == f"a NIfTI map is named *.nii.gz or *.nii. Received: {str(tmp_path / 'm.png')!r}"


def test_write_raw(tmp_path):
    heat = np.random.default_rng(4).random((3, 4, 5))
    assert write_raw(tmp_path / "m.npy", heat) == str(tmp_path / "m.npy")
    loaded = np.load(tmp_path / "m.npy", allow_pickle=False)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, heat.astype(np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npy"]


def test_only_an_affine_with_a_meaning_orients_the_volume(tmp_path):
    """A NIfTI with a qform or sform code is placed in the patient's world (its montage names the
    planes axial, coronal, sagittal); one with neither code, and a NumPy array, are not: their
    planes are the array's axes and their records give no world coordinates."""
    array = np.zeros((4, 5, 6), dtype=np.float32)
    assert read_volume(_nifti(tmp_path / "coded.nii.gz", array)).oriented
    assert not read_volume(_nifti(tmp_path / "bare.nii.gz", array, qform_code=0, sform_code=0)).oriented
    np.save(tmp_path / "plain.npy", array)
    assert not read_volume(tmp_path / "plain.npy").oriented
