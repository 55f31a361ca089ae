"""The volume demo: synthetic scans (gradcam_cli.evaluate.volume_scenes) whose one object is known
voxel by voxel, the shipped demo-volume classifier trained on them, and the sample scan of a sphere
(sample_images/synthetic_sphere.nii.gz and .npy, made by scripts/make_sample_volumes.py)."""

import importlib.util
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from conftest import random_batch_norm

from gradcam_cli.errors import ModelError
from gradcam_cli.evaluate import volume_scenes
from gradcam_cli.models import demo, loading, registry

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"


def _ball(shape, center, radius):
    grid = np.indices(shape, dtype=np.float64)
    return sum((grid[axis] - center[axis]) ** 2 for axis in range(3)) <= radius**2


def test_scans_are_deterministic_and_seeded():
    first, again = volume_scenes.generate(5, seed=3), volume_scenes.generate(5, seed=3)
    assert first.volume.tobytes() == again.volume.tobytes() and np.array_equal(first.mask, again.mask)
    assert first.volume.dtype == np.float32 and first.volume.shape == volume_scenes.VOLUME_SHAPE == (32, 32, 24)
    assert not np.array_equal(first.volume, volume_scenes.generate(5, seed=4).volume)
    assert not np.array_equal(first.volume, volume_scenes.generate(7, seed=3).volume)


def test_each_mask_is_its_object():
    """A sphere's mask is the ball of its radius about its centre (voxel count near 4/3 pi r^3), a
    cube's a solid block of side^3 voxels; the object is brighter than the voxels around it by the
    generator's contrast."""
    for index in range(40):
        scan = volume_scenes.generate(index, seed=0)
        count = int(scan.mask.sum())
        if scan.label == "sphere":
            assert np.array_equal(scan.mask, _ball(scan.mask.shape, scan.center, scan.size))
            assert count == pytest.approx(4 / 3 * np.pi * scan.size**3, rel=0.08)
            assert volume_scenes.RADII[0] <= scan.size <= volume_scenes.RADII[1]
        else:
            side = int(scan.size)
            assert count == side**3
            low = np.argwhere(scan.mask).min(axis=0)
            assert scan.mask[tuple(slice(c, c + side) for c in low)].all()
            assert np.allclose(low + (side - 1) / 2, scan.center)
        # a voxel to spare on every side
        nonzero = np.argwhere(scan.mask)
        assert nonzero.min() >= 1 and (nonzero.max(axis=0) <= np.array(scan.mask.shape) - 2).all()
        # the object against a shell of 2 voxels around it: brighter by about the contrast
        near = _grown(scan.mask, 2) & ~scan.mask
        step = scan.volume[scan.mask].mean() - scan.volume[near].mean()
        assert volume_scenes.CONTRAST[0] - 0.08 < step < volume_scenes.CONTRAST[1] + 0.08, (index, step)


def _grown(mask, steps):
    grown = mask.copy()
    for _ in range(steps):
        for axis in range(3):
            grown |= np.roll(grown, 1, axis) | np.roll(grown, -1, axis)
    return grown


def test_dataset_is_balanced_and_sizes_do_not_tell_the_class():
    volumes, labels, masks = volume_scenes.dataset(200, seed=5)
    assert volumes.shape == (200, 32, 32, 24, 1) and volumes.dtype == np.float32
    assert labels.dtype == np.int64 and masks.shape == (200, 32, 32, 24) and masks.dtype == bool
    assert np.bincount(labels).tolist() == [100, 100]
    assert volume_scenes.CLASS_NAMES == registry.VOLUME_CLASSES == ("sphere", "cube")
    scan = volume_scenes.generate(17, seed=5)
    assert np.array_equal(volumes[17, ..., 0], scan.volume) and np.array_equal(masks[17], scan.mask)
    # equal volume distributions: the object's voxel count and total brightness say nothing of its class
    counts = masks.sum(axis=(1, 2, 3))
    assert counts[labels == 0].mean() == pytest.approx(counts[labels == 1].mean(), rel=0.15)
    totals = volumes.sum(axis=(1, 2, 3, 4))
    assert abs(totals[labels == 0].mean() - totals[labels == 1].mean()) < 0.5 * totals.std()


def test_generator_and_builder_refuse_bad_arguments():
    with pytest.raises(ValueError, match=r"Received: shape=\(32, 32\)"):
        volume_scenes.generate(0, shape=(32, 32))
    for bad in [(30, 32, 24), (32, 32), 32, (4, 4, 4)]:
        with pytest.raises(ValueError, match=r"Received: input_size="):
            demo.demo_volume(input_size=bad)
    with pytest.raises(ValueError, match="Received: classes=1"):
        demo.demo_volume(classes=1)


def test_fold_batch_norm_folds_conv3d(keras):
    keras.utils.set_random_seed(4)
    trained = demo.demo_volume(input_size=(8, 8, 8), batch_norm=True)
    rng = np.random.default_rng(4)
    random_batch_norm(trained, rng)
    plain = demo.fold_batch_norm(trained, demo.demo_volume(input_size=(8, 8, 8)))
    volumes = rng.uniform(0, 1, (3, 8, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(plain.predict(volumes, verbose=0), trained.predict(volumes, verbose=0),
                               rtol=1e-4, atol=1e-6)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)


@pytest.fixture(scope="module")
def shipped(keras):
    return loading.build_registered(registry.find("demo-volume"))


def test_registry_entry():
    spec = registry.find("demo_volume")
    assert spec.name == "demo-volume" and spec.constructor == "demo_volume" and spec.file == "demo-volume.keras"
    assert spec.input_size == spec.shape == (32, 32, 24) and registry.find("demo-gap").shape == (64, 64)
    assert spec.labels == ("sphere", "cube") and spec.cam and spec.preprocess == "none"
    assert spec.default_layer == "block3_conv" and not spec.is_application


def test_shipped_model_is_small_plain_and_accurate(shipped, keras):
    """The file is well under 1 MB, the network has no batch normalisation, its default layer is
    8x8x6, and it classifies 40 scans it never saw (seed 2) with accuracy >= 0.9."""
    with resources.as_file(resources.files("gradcam_cli").joinpath("data", "demo-volume.keras")) as path:
        assert path.stat().st_size < 500_000
    assert shipped.input_shape == (None, 32, 32, 24, 1) and shipped.output_shape == (None, 2)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in shipped.layers)
    assert shipped.get_layer("block3_conv").output.shape[1:4] == (8, 8, 6)
    assert isinstance(shipped.layers[-2], keras.layers.GlobalAveragePooling3D)
    volumes, labels, _ = volume_scenes.dataset(40, seed=2)
    predicted = shipped.predict(volumes, verbose=0).argmax(axis=1)
    assert (predicted == labels).mean() >= 0.9


def test_shipped_models_cam_points_at_the_object(shipped, keras):
    """CAM by hand (Zhou et al. 2016: the last convolution's channels weighted by the class's Dense
    weights, ReLU): on 40 unseen scans its peak lies in a cell the object touches, and the object's
    cells (under a tenth of the 8x8x6 grid) hold several times their share of the map."""
    volumes, labels, masks = volume_scenes.dataset(40, seed=2)
    features = keras.Model(shipped.input, shipped.get_layer("block3_conv").output).predict(volumes, verbose=0)
    weights = shipped.get_layer("predictions").get_weights()[0]
    cams = np.maximum(np.einsum("bijkc,cb->bijk", features, weights[:, labels]), 0)
    cells = masks.reshape(40, 8, 4, 8, 4, 6, 4).any(axis=(2, 4, 6))
    peaks = cams.reshape(40, -1).argmax(axis=1)
    pointing = np.mean([cells[i].reshape(-1)[peaks[i]] for i in range(40)])
    energy = (cams * cells).sum(axis=(1, 2, 3)) / cams.sum(axis=(1, 2, 3))
    assert pointing >= 0.9
    assert energy.mean() >= 3 * cells.mean()


def test_load_demo_volume(keras):
    """The registry's loader describes demo-volume: a (32, 32, 24) input of 1 channel, its labels,
    its default layer."""
    loaded = loading.load("demo-volume")
    assert loaded.input_size == (32, 32, 24) and loaded.channels == 1 and loaded.preprocess == "none"
    assert loaded.labels == ("sphere", "cube") and loaded.default_layer == ("block3_conv",)
    assert loaded.num_classes == 2


def test_load_demo_volume_names_its_size(keras):
    with pytest.raises(ModelError, match="demo-volume takes 32x32x24 inputs"):
        loading.load("demo-volume", input_size=(64, 64))
    with pytest.raises(ModelError, match="demo-gap takes 64x64 inputs"):
        loading.load("demo-gap", input_size=(32, 32))


def _sample_script():
    spec = importlib.util.spec_from_file_location("make_sample_volumes", ROOT / "scripts" / "make_sample_volumes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sample_scan_files():
    """The .npy holds the .nii.gz's data; the NIfTI's affine is the script's, not the identity; the
    script makes the same bytes again; both files together stay under 100 KB."""
    nibabel = pytest.importorskip("nibabel")
    script = _sample_script()
    nifti, array = SAMPLES / "synthetic_sphere.nii.gz", SAMPLES / "synthetic_sphere.npy"
    assert nifti.stat().st_size + array.stat().st_size < 100_000
    image = nibabel.load(nifti)
    stored = np.load(array)
    assert stored.shape == image.shape == (32, 32, 24)
    assert np.array_equal(image.get_fdata(), stored.astype(np.float64))
    np.testing.assert_allclose(image.affine, script.AFFINE, atol=1e-5)
    assert not np.allclose(image.affine, np.eye(4), atol=0.1)
    assert np.allclose(image.header.get_zooms(), (1.5, 1.5, 2.5))
    assert image.header.get_xyzt_units()[0] == "mm"
    assert image.affine[:3, 3].tolist() == [-24.0, -30.5, 12.25]
    levels, scene = script.quantised_scan()
    assert script.nifti_bytes(levels) == nifti.read_bytes()
    assert np.array_equal(stored, (levels / script.STEPS).astype(np.float16))
    assert scene.label == "sphere"
    expected = np.clip(scene.volume, 0, 1 - 1 / script.STEPS)
    assert np.abs(stored.astype(np.float32) - expected).max() <= 0.5 / script.STEPS + 1e-6


def test_demo_volume_classifies_the_sample_as_a_sphere(shipped):
    stored = np.load(SAMPLES / "synthetic_sphere.npy").astype(np.float32)
    probabilities = shipped.predict(stored[None, ..., None], verbose=0)[0]
    assert registry.VOLUME_CLASSES[int(probabilities.argmax())] == "sphere" and probabilities.max() > 0.9


def test_grad_cam_of_the_sample_scan_sits_on_the_sphere(keras):
    """The sample scan read from its NIfTI file (files.volumes, the model's own axis order) through
    demo-volume: Grad-CAM's map comes back at the scan's shape, peaks inside the sphere, and holds
    several times the energy that the sphere's share of the voxels would give by chance."""
    pytest.importorskip("nibabel")
    from gradcam_cli import Explainer, load_model
    from gradcam_cli.files.volumes import read_volume

    volume = read_volume(SAMPLES / "synthetic_sphere.nii.gz")
    mask = volume_scenes.generate(2, seed=1).mask  # scripts/make_sample_volumes.py's scan
    for method in ("gradcam", "layercam", "cam"):
        (explained,) = Explainer(load_model("demo-volume"), method=method)([volume.array])
        heat = explained.map
        assert heat.shape == mask.shape and explained.label == "sphere"
        assert mask.reshape(-1)[int(np.argmax(heat))], method
        assert heat[mask].sum() / heat.sum() >= 3 * mask.mean(), method


def test_a_conv3d_model_file_loads_with_its_three_sides(keras, tmp_path):
    """A user's Conv3D classifier saved as .keras: its input size is its three sides, its default
    layer the last Conv3D; an input size of two sides, or of other sides, is refused in one line."""
    inputs = keras.Input((16, 12, 8, 2))
    x = keras.layers.Conv3D(4, 3, padding="same", activation="relu", name="features")(inputs)
    x = keras.layers.GlobalAveragePooling3D()(x)
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)).save(tmp_path / "c3d.keras")
    loaded = loading.load(str(tmp_path / "c3d.keras"))
    assert loaded.input_size == (16, 12, 8) and loaded.channels == 2 and loaded.default_layer == ("features",)
    with pytest.raises(ModelError, match=r"^input size 16x12: the model takes volumes \(16x12x8\): give three sides$"):
        loading.load(str(tmp_path / "c3d.keras"), input_size=(16, 12))
    with pytest.raises(ModelError, match=r"^input size 8x8x8: the model takes 16x12x8 inputs$"):
        loading.load(str(tmp_path / "c3d.keras"), input_size=(8, 8, 8))


def test_a_free_size_conv3d_model_takes_its_sides_from_the_command_line(keras, tmp_path):
    """A Conv3D file whose input sides are free: refused in one line without --input-size, and
    explained with --input-size D1,D2,D3 (the volume resized trilinearly to it, its map at its own
    shape)."""
    from conftest import invoke_cli

    inputs = keras.Input((None, None, None, 1))
    x = keras.layers.Conv3D(4, 3, padding="same", activation="relu", name="features")(inputs)
    x = keras.layers.GlobalAveragePooling3D()(x)
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)).save(tmp_path / "free.keras")
    scan = tmp_path / "scan.npy"
    np.save(scan, np.random.default_rng(0).uniform(0, 1, (10, 9, 7)).astype(np.float32))
    refused = invoke_cli(str(scan), "--model", str(tmp_path / "free.keras"), "-o", str(tmp_path / "a"))
    assert refused.returncode == 2 and "--input-size D1,D2,D3" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    done = invoke_cli(str(scan), "--model", str(tmp_path / "free.keras"), "--input-size", "8,8,6", "--save", "raw",
                      "-o", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    assert np.load(tmp_path / "b" / "scan.npy.gradcam.raw.npy").shape == (10, 9, 7)
