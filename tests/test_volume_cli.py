"""Volumes through the command line, as users run it: the sample scan (sample_images/synthetic_sphere
.nii.gz and .npy) with demo-volume, a DICOM series with a tiny Conv3D model file, in-process
(conftest.invoke_cli); files opened and compared with the API's maps of the same volumes."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_records_close, invoke_cli, write_image
from PIL import Image

from gradcam_cli.explain import maps

nibabel = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")

SAMPLES = Path(__file__).resolve().parents[1] / "sample_images"
NIFTI, NPY = SAMPLES / "synthetic_sphere.nii.gz", SAMPLES / "synthetic_sphere.npy"


@pytest.fixture(scope="module")
def demo_volume(keras):
    from gradcam_cli import load_model

    return load_model("demo-volume")


def api_heat(loaded, array, method="gradcam"):
    """The API's map of `array` (D1, D2, D3[, C]): (heat before normalisation, Explanation)."""
    from gradcam_cli import Explainer

    (explained,) = Explainer(loaded, method=method)([array])
    return maps.full_map(explained.small_map, None, explained.image.shape)[0], explained


def records(result):
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def assert_picture(path):
    with Image.open(path) as picture:
        assert picture.mode == "RGB" and picture.width > 0 and picture.height > 0
        assert np.asarray(picture).std() > 0  # not one flat colour


def one_error_line(stderr, *words):
    lines = [line for line in stderr.splitlines() if line.startswith(("error:", "Error:"))]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_a_nifti_scan_through_the_cli_is_the_apis_map_with_its_affine(demo_volume, tmp_path):
    from gradcam_cli.files.volumes import read_volume

    out = tmp_path / "out"
    result = invoke_cli(NIFTI, "--model", "demo-volume", "-o", out, "--json", "--save", "raw,nifti,overlay,heatmap")
    assert result.returncode == 0, result.stderr
    (record,) = records(result)
    entry = record["maps"][0]
    stem = out / "synthetic_sphere.nii.gz.gradcam"
    assert entry["outputs"] == {"raw": f"{stem}.raw.npy", "nifti": f"{stem}.nii.gz",
                                "overlay": f"{stem}.overlay.png", "heatmap": f"{stem}.heatmap.png",
                                "sheet": f"{stem}.sheet.png"}  # with the overlay: the slices along D3
    assert entry["sheet"]["count"] == 24 and entry["sheet"]["axis"] == "d3"
    assert entry["sheet"]["labels"][:2] == ["k=0", "k=1"] and entry["sheet"]["indices"] == list(range(24))
    volume = read_volume(NIFTI)
    heat, explained = api_heat(demo_volume, volume.array)
    raw = np.load(entry["outputs"]["raw"])
    assert raw.dtype == np.float32 and raw.shape == (32, 32, 24)
    np.testing.assert_allclose(raw, heat, rtol=1e-6, atol=1e-7)  # the same numbers as the API's
    np.testing.assert_allclose(raw / raw.max(), explained.map, rtol=1e-5, atol=1e-6)
    assert entry["class"] == explained.class_index and entry["label"] == "sphere"
    assert entry["score"] == pytest.approx(explained.score, abs=1e-5)
    # the NIfTI map: the same numbers, on the input's grid and affine
    image = nibabel.load(entry["outputs"]["nifti"])
    assert image.shape == (32, 32, 24)
    np.testing.assert_allclose(image.affine, nibabel.load(NIFTI).affine, atol=1e-5)
    np.testing.assert_array_equal(image.get_fdata(dtype=np.float32), raw)
    for kind in ("overlay", "heatmap"):
        assert_picture(entry["outputs"][kind])
    # the record: the volume's own fields, the peak and its world position
    block = record["volume"]
    peak = [int(v) for v in np.unravel_index(int(np.argmax(raw)), raw.shape)]
    assert block["kind"] == "nifti" and block["shape"] == [32, 32, 24] and block["channels"] == 1
    assert block["window"] is None and block["peak_voxel"] == peak == entry["stats"]["peak_voxel"]
    np.testing.assert_allclose(block["spacing"], [1.5, 1.5, 2.5], atol=1e-5)
    np.testing.assert_allclose(block["peak_world_mm"], (volume.affine @ np.array([*peak, 1.0]))[:3], atol=1e-9)
    assert "image_size" not in record and "box" not in entry["stats"] and "peak" not in entry["stats"]
    assert entry["stats"]["resolution"] == [8, 8, 6]
    assert record["predictions"][0]["label"] == "sphere" and record["layer"] == "block3_conv"
    stored = json.loads((out / "synthetic_sphere.nii.gz.gradcam.record.json").read_text())["record"]
    assert_records_close(stored, record)


def test_a_numpy_scan_has_no_world_position_and_windowing_is_clip_and_scale(demo_volume, tmp_path):
    array = np.load(NPY).astype(np.float32)
    result = invoke_cli(NPY, "--model", "demo-volume", "-o", tmp_path / "plain", "--json", "--save", "raw")
    assert result.returncode == 0, result.stderr
    (record,) = records(result)
    raw = np.load(record["maps"][0]["outputs"]["raw"])
    np.testing.assert_allclose(raw, api_heat(demo_volume, array)[0], rtol=1e-6, atol=1e-7)
    assert record["volume"]["kind"] == "npy" and record["volume"]["peak_world_mm"] is None
    assert record["volume"]["peak_voxel"] == [int(v) for v in np.unravel_index(int(np.argmax(raw)), raw.shape)]
    # --window 0.2,0.6: the API's map of the array clipped to [0.2, 0.6] and scaled to [0, 1]
    windowed = invoke_cli(NPY, "--model", "demo-volume", "-o", tmp_path / "win", "--json", "--save", "raw",
                          "--window", "0.2,0.6")
    assert windowed.returncode == 0, windowed.stderr
    (record,) = records(windowed)
    assert record["volume"]["window"] == [0.2, 0.6]
    by_hand = (np.clip(array, 0.2, 0.6) - np.float32(0.2)) / np.float32(0.4)
    heat = api_heat(demo_volume, by_hand)[0]
    raw_windowed = np.load(record["maps"][0]["outputs"]["raw"])
    np.testing.assert_allclose(raw_windowed, heat, rtol=1e-5, atol=1e-6)
    assert not np.allclose(raw_windowed, raw, rtol=1e-3)  # the window changed the input


def test_a_folder_mixing_a_volume_and_an_image(demo_volume, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(NPY, folder / "scan.npy")
    write_image(folder / "photo.png", (20, 20), seed=3)
    (folder / "notes.txt").write_text("not an input")
    result = invoke_cli(folder, "--model", "demo-volume", "-o", tmp_path / "out", "--json", "--save", "raw")
    assert result.returncode == 1, result.stderr
    one_error_line(result.stderr, "photo.png", "demo-volume takes volumes")
    done = [r for r in records(result) if "error" not in r]
    assert [Path(r["input"]).name for r in done] == ["scan.npy"]
    assert (tmp_path / "out" / "scan.npy.gradcam.raw.npy").is_file()
    assert not list((tmp_path / "out").glob("photo.png*"))


def test_a_volume_for_a_model_of_images_is_refused_and_skipped_in_folders(keras, tmp_path):
    result = invoke_cli(NPY, "--model", "demo-gap", "-o", tmp_path / "out")
    assert result.returncode == 1
    one_error_line(result.stderr, "synthetic_sphere.npy", "demo-gap takes images")
    # in a folder, the volume is skipped (said), the image explained
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(NPY, folder / "scan.npy")
    write_image(folder / "photo.png", (40, 30), seed=3)
    result = invoke_cli(folder, "--model", "demo-gap", "-o", tmp_path / "out2")
    assert result.returncode == 0, result.stderr
    assert "skipped 1 volume(s)" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out2").iterdir() if p.suffix == ".png") == [
        "photo.png.gradcam.heatmap.png", "photo.png.gradcam.overlay.png"]


def test_nifti_of_a_numpy_scan_and_too_many_voxels_are_refused_in_one_line(keras, tmp_path):
    result = invoke_cli(NPY, "--model", "demo-volume", "-o", tmp_path / "out", "--save", "nifti")
    assert result.returncode == 1
    one_error_line(result.stderr, "synthetic_sphere.npy", "NumPy volume", "has none")
    result = invoke_cli(NIFTI, "--model", "demo-volume", "-o", tmp_path / "out", "--max-voxels", "100")
    assert result.returncode == 1
    one_error_line(result.stderr, "synthetic_sphere.nii.gz", "32x32x24 is 24,576 voxels", "100", "--max-voxels")
    assert not list((tmp_path / "out").glob("*"))


def test_skip_existing_resumes_a_volume_run(keras, tmp_path):
    out = tmp_path / "out"
    arguments = (NIFTI, "--model", "demo-volume", "-o", out, "--json", "--save", "raw,nifti,overlay")
    first = invoke_cli(*arguments)
    assert first.returncode == 0, first.stderr
    written = {path: path.stat().st_mtime_ns for path in out.iterdir()}
    assert len(written) == 5  # raw, nifti, overlay, sheet, record
    again = invoke_cli(*arguments, "--skip-existing")
    assert again.returncode == 0, again.stderr
    assert "skipped 1 scan(s) whose outputs exist" in again.stderr and "1 scan(s) explained" in again.stderr
    assert {path: path.stat().st_mtime_ns for path in out.iterdir()} == written
    assert_records_close(records(again), records(first))
    # a missing sheet: the volume is done again, its sheet written
    sheet = out / "synthetic_sphere.nii.gz.gradcam.sheet.png"
    sheet.unlink()
    redone = invoke_cli(*arguments, "--skip-existing")
    assert redone.returncode == 0 and "skipped" not in redone.stderr and sheet.is_file()
    # another method's files beside them: nothing overwritten
    before = {path: path.stat().st_mtime_ns for path in out.iterdir()}
    other = invoke_cli(NIFTI, "--model", "demo-volume", "-o", out, "--json", "--save", "overlay", "--method",
                       "layercam")
    assert other.returncode == 0, other.stderr
    assert records(other)[0]["maps"][0]["outputs"]["sheet"] == str(out / "synthetic_sphere.nii.gz.layercam.sheet.png")
    after = {path: path.stat().st_mtime_ns for path in out.iterdir()}
    assert len(after) == 5 + 3 and all(after[path] == stamp for path, stamp in before.items())  # overlay, sheet, record
    # another window is another request: done again
    windowed = invoke_cli(*arguments, "--skip-existing", "--window", "0,0.5")
    assert windowed.returncode == 0 and "skipped" not in windowed.stderr


@pytest.mark.parametrize("extra, words", [
    (["--crop"], ["crop", "volumes"]),
    (["--aug-smooth"], ["aug_smooth", "volumes"]),
    (["--layer", "block3_conv", "--layer", "block2_conv"], ["several layers", "volumes"]),
    (["--save", "raw,gradient"], ["gradient"]),
    (["--window", "400,-1000"], ["--window", "LOW must be below HIGH"]),
    (["--window", "nan,1"], ["--window", "two finite numbers"]),
    (["--window", "1"], ["--window", "LOW,HIGH"]),
    (["--max-voxels", "0"], ["--max-voxels"]),
])
def test_what_does_not_apply_to_volumes_is_one_line_exit_2(keras, tmp_path, extra, words):
    result = invoke_cli(NPY, "--model", "demo-volume", "-o", tmp_path / "out", *extra)
    assert result.returncode == 2, result.stderr
    one_error_line(result.stderr, *words)
    assert not (tmp_path / "out").exists()


def test_a_volumes_option_for_a_model_of_images_is_one_line(keras, tmp_path):
    image = write_image(tmp_path / "a.png", (40, 30), seed=1)
    for extra, word in ((["--window", "0,1"], "--window"), (["--save", "nifti"], "--save nifti")):
        result = invoke_cli(image, "--model", "demo-gap", "-o", tmp_path / "out", *extra)
        assert result.returncode == 2, result.stderr
        one_error_line(result.stderr, word, "is for volumes", "demo-gap takes images")


def test_help_states_the_volume_conventions():
    text = invoke_cli("gradcam", "--help").stdout
    flat = " ".join(text.split())
    for words in ("--window", "LOW,HIGH", "--max-voxels", "nifti", "its own axis order",
                  "never reoriented or resampled", "carries the input's affine"):
        assert words in flat, words


# -- a DICOM series and a user's Conv3D model file ------------------------------------------------------


def _dicom_slice(path, pixels, z):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality, ds.InstanceNumber = "1.2.3", "1.2.3.4", "CT", 1
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.ImagePositionPatient = ["-10", "20", f"{z:g}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = ["0.5", "0.75"]
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = pixels.astype("<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_a_dicom_series_with_a_conv3d_model_file(keras, tmp_path):
    """4 slices of 10 rows x 12 columns (written with pydicom, out of order) -> a (12, 10, 4) volume
    (columns, rows, slices), resized to the model's 8x8x6 input: the map is at the series' shape,
    the NIfTI map carries the series' affine, the world peak is the affine's."""
    from conftest import set_fixed_weights

    from gradcam_cli import load_model
    from gradcam_cli.files.volumes import read_volume

    inputs = keras.Input((8, 8, 6, 1))
    x = keras.layers.Conv3D(4, 3, padding="same", activation="relu", name="features")(inputs)
    x = keras.layers.GlobalAveragePooling3D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    set_fixed_weights(model, seed=5)
    model.save(tmp_path / "c3d.keras")
    series = tmp_path / "scans" / "series1"
    series.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k, name in zip(range(4), ("d.dcm", "b.dcm", "a.dcm", "c.dcm")):
        _dicom_slice(series / name, rng.integers(0, 2000, (10, 12)), z=30.0 + 2.5 * k)
    out = tmp_path / "out"
    result = invoke_cli(tmp_path / "scans", "--model", tmp_path / "c3d.keras", "-o", out, "--json",
                        "--save", "raw,nifti,overlay", "--window", "-1000,400")
    assert result.returncode == 0, result.stderr
    (record,) = records(result)
    assert Path(record["input"]) == series and record["volume"]["kind"] == "dicom"
    assert record["volume"]["shape"] == [12, 10, 4] and record["volume"]["window"] == [-1000.0, 400.0]
    volume = read_volume(series)
    from gradcam_cli.files.volumes import window

    heat = api_heat(load_model(str(tmp_path / "c3d.keras")), window(volume.array, -1000, 400))[0]
    raw = np.load(out / "series1.gradcam.raw.npy")
    assert raw.shape == (12, 10, 4)
    np.testing.assert_allclose(raw, heat, rtol=1e-5, atol=1e-6)
    image = nibabel.load(out / "series1.gradcam.nii.gz")
    np.testing.assert_allclose(image.affine, volume.affine, atol=1e-5)
    peak = record["volume"]["peak_voxel"]
    np.testing.assert_allclose(record["volume"]["peak_world_mm"], (volume.affine @ np.array([*peak, 1.0]))[:3])
    assert_picture(out / "series1.gradcam.overlay.png")


# -- collecting and the API's Explanation -----------------------------------------------------------


def test_collect_takes_volumes_and_series_but_never_outputs(tmp_path):
    from gradcam_cli.files.inputs import collect

    root = tmp_path / "data"
    (root / "ct" / "series").mkdir(parents=True)
    shutil.copy(NPY, root / "a.npy")
    shutil.copy(NIFTI, root / "b.nii.gz")
    np.save(root / "a.npy.gradcam.raw.npy", np.zeros((2, 2, 2), np.float32))  # an output moved here
    write_image(root / "c.png", (10, 10))
    _dicom_slice(root / "ct" / "series" / "s1", np.zeros((4, 4)), 0.0)
    _dicom_slice(root / "ct" / "series" / "s2", np.zeros((4, 4)), 1.0)
    found = collect([str(root)], volumes=True)
    assert sorted(s.name for s in found.sources) == ["a.npy", "b.nii.gz", "c.png", "ct/series"]
    assert sorted(s.name for s in found.volumes) == ["a.npy", "b.nii.gz", "ct/series"]
    assert [p.name for p in found.skipped] == ["a.npy.gradcam.raw.npy"]
    dropped = found.for_model(takes_volumes=False)
    assert [s.name for s in found.sources] == ["c.png"] and len(dropped) == 3
    images_only = collect([str(root)])
    assert [s.name for s in images_only.sources] == ["c.png"]
    named = collect([str(root / "ct" / "series")], volumes=True)
    assert [s.name for s in named.sources] == ["series"] and named.volumes == []


def test_an_explanation_of_a_volume_draws_and_saves(demo_volume, tmp_path):
    from gradcam_cli.errors import GradcamError
    from gradcam_cli.files.volumes import read_volume

    volume = read_volume(NIFTI)
    heat, explained = api_heat(demo_volume, volume.array)
    for picture in (explained.heatmap(), explained.overlay(alpha=0.5, volume=volume)):
        assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    written = explained.save(tmp_path, save=("raw", "overlay", "nifti"), volume=volume)
    np.testing.assert_allclose(np.load(written["raw"]), heat, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(nibabel.load(written["nifti"]).affine, volume.affine, atol=1e-5)
    assert_picture(written["overlay"])
    with pytest.raises(GradcamError, match="give the volume it is of"):
        explained.save(tmp_path, save=("nifti",))
    with pytest.raises(GradcamError, match="not as gradient"):
        explained.save(tmp_path, save=("gradient",))


@pytest.mark.parametrize("method", ["guided", "deconvnet"])
def test_backprop_gradients_of_a_scan_are_montages_and_raw_arrays(demo_volume, tmp_path, method):
    from gradcam_cli import Explainer
    from gradcam_cli.explain.methods.guided import guided_gradcam
    from gradcam_cli.files.volumes import read_volume

    out = tmp_path / "out"
    result = invoke_cli("guided", NIFTI, "--model", "demo-volume", "--mode", method, "-o", out, "--json",
                        "--save", "overlay,raw,gradient,gradcam")
    assert result.returncode == 0, result.stderr
    (record,) = records(result)
    entry = record["maps"][0]
    stem = out / f"synthetic_sphere.nii.gz.{method}"
    assert entry["outputs"] == {kind: f"{stem}.{ending}" for kind, ending in (
        ("overlay", "overlay.png"), ("raw", "raw.npy"), ("gradient-raw", "gradient.npy"),
        ("gradcam-raw", "gradcam.npy"), ("gradient", "gradient.png"), ("gradcam", "gradcam.png"),
        ("sheet", "sheet.png"))}
    (explained,) = Explainer(demo_volume, method=method)([read_volume(NIFTI).array])
    gradient = np.load(entry["outputs"]["gradient-raw"])
    assert gradient.dtype == np.float32 and gradient.shape == (32, 32, 24, 1)  # the model's input size, signs kept
    np.testing.assert_allclose(gradient, explained.input_gradient, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.load(entry["outputs"]["gradcam-raw"]),
                               guided_gradcam(explained.input_gradient, explained.small_map), rtol=1e-5, atol=1e-7)
    assert entry["gradient"]["resolution"] == [32, 32, 24]
    assert entry["gradient"]["rms"] == pytest.approx(float(np.sqrt(np.mean(np.square(gradient)))), rel=1e-5)
    for kind in ("gradient", "gradcam"):
        assert_picture(entry["outputs"][kind])
    saved = explained.save(tmp_path / "api", volume=read_volume(NIFTI))  # the API's defaults: the same montages
    assert sorted(saved) == ["gradcam", "gradient", "heatmap", "overlay", "sheet"]
    for kind in ("gradient", "gradcam", "overlay"):
        assert Path(saved[kind]).read_bytes() == Path(entry["outputs"][kind]).read_bytes(), kind
    again = invoke_cli("guided", NIFTI, "--model", "demo-volume", "--mode", method, "-o", out, "--json",
                       "--save", "overlay,raw,gradient,gradcam", "--skip-existing")
    assert again.returncode == 0 and "skipped 1 scan(s)" in again.stderr
    refused = invoke_cli("guided", NIFTI, "--model", "demo-volume", "--mode", method, "-o", tmp_path / "o2",
                         "--save", "gradient-gray")
    assert refused.returncode == 2
    one_error_line(refused.stderr, "gradient-gray")


@pytest.mark.parametrize("model, first, default, channels", [
    ("demo-volume", "# input 32x32x24x1 (luminance)", "block3_conv", "1"),
    ("demo-clip", "# input 8x32x32x3 (rgb)", "block3_conv", "rgb"),
    ("demo-clip-frames", "# input 8x32x32x3 (rgb)", "frames3_conv", "rgb"),
])
def test_layers_and_models_list_the_models_of_volumes_and_clips(keras, model, first, default, channels):
    """`gradcam layers` of a model of three sides prints every side of its input (it once took
    the input as height and width and failed); `gradcam models` gives its channels."""
    result = invoke_cli("layers", "--model", model)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(first)
    marked = [line.split()[1] for line in lines if line.startswith("*")]
    assert marked == [default]
    row = next(line.split() for line in invoke_cli("models").stdout.splitlines() if line.split()[:1] == [model])
    assert row[2] == channels
