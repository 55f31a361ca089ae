"""Grad-CAM and LayerCAM of a keras.io-style Conv3D model against pytorch-grad-cam's 5-D path on
its torch twin (benchmarks/twin/): the same weights in torch's layouts, run by the twin's own
Python (.twin/bin/python, `make twin`) in a subprocess, since torch must not load beside TensorFlow.

The model is keras.io's "3D image classification from CT scans" narrowed (Conv3D 8, 8, 16 with
max pooling and batch normalisation after each, GAP3D, Dense 16, Dropout, Dense 1 sigmoid) at a
(48, 48, 40) input; the sample scan (32, 32, 24), read from its .npy and its .nii.gz by the
library itself, is resized to that input trilinearly, and its raw maps (`save=["raw"]`) come back
at the scan's shape. pytorch-grad-cam's map on the layer's grid is upsampled to the scan with
torch's interpolate(mode="trilinear", align_corners=False), the project's convention (its own
output, min-max scaled and resized by scipy's cubic zoom, is not what is compared).

Without .twin/bin/python the tests skip, saying how to make it, except where the environment
variable CI is set: there they fail, since CI must run them (.ci/run makes the twin)."""

import importlib.util
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TWIN_PYTHON = ROOT / ".twin" / "bin" / "python"
TWIN_SCRIPT = ROOT / "benchmarks" / "twin" / "torch_twin.py"
SAMPLES = ROOT / "sample_images"
INPUT = (48, 48, 40)  # the model's input sides: the scan (32, 32, 24) is resized to it
LAYER = "conv3"  # the last Conv3D (ReLU fused): a (8, 8, 6) grid
GRID = (8, 8, 6)
CLASS = 1  # a sigmoid unit's class 1: its logit (the twin's target, sign +1)
SEED = 4


def keras_side():
    spec = importlib.util.spec_from_file_location("twin_keras_side", ROOT / "benchmarks" / "twin" / "keras_side.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def require_twin():
    if TWIN_PYTHON.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{TWIN_PYTHON} is missing and CI is set: CI must run the torch-twin comparison (`make twin`)")
    pytest.skip(f"no torch twin at {TWIN_PYTHON.parent.parent}: `make twin` makes it (torch CPU, pytorch-grad-cam)")


def pearson(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(np.corrcoef(a, b)[0, 1])


@pytest.fixture(scope="module")
def compared(tmp_path_factory, keras):
    """Ours and the twin's: {input: {"ours": {method: (grid, volume map)}, "twin": npz entries}},
    and the Keras model's logits of the resized scans."""
    require_twin()
    pytest.importorskip("nibabel")
    from gradcam_cli import Explainer, load_model
    from gradcam_cli.files.inputs import Source
    from gradcam_cli.files.volumes import read_volume

    folder = tmp_path_factory.mktemp("twin")
    side = keras_side()
    model = side.keras_io_ct(INPUT, widths=(8, 8, 16), dense=16, seed=SEED, name="narrow_ct")
    side.export(model, folder / "weights.npz")
    files = {"npy": SAMPLES / "synthetic_sphere.npy", "nii": SAMPLES / "synthetic_sphere.nii.gz"}
    volumes = {key: read_volume(path).array[..., 0].astype(np.float32) for key, path in files.items()}  # one channel
    np.savez(folder / "volumes.npz", **volumes)
    run = subprocess.run([str(TWIN_PYTHON), str(TWIN_SCRIPT), "maps", str(folder / "weights.npz"),
                          str(folder / "volumes.npz"), LAYER, str(folder / "twin.npz"), "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    with np.load(folder / "twin.npz") as stored:
        twin = {name: stored[name] for name in stored.files}

    loaded = load_model(model)
    ours = {}
    for method in ("gradcam", "layercam"):
        explainer = Explainer(loaded, method=method, layer=LAYER, batch_size=2)
        found = explainer.maps([volumes["npy"], volumes["nii"]], classes=CLASS)
        out = folder / method
        records = []
        report = explainer.write([Source(path, path.name) for path in files.values()],
                                 explainer.file_options(out, classes=(CLASS,), save=["raw"]),
                                 on_result=records.append)
        assert report.done == 2 and not report.failed
        raw = {Path(record["input"]).name: np.load(record["maps"][0]["outputs"]["raw"]) for record in records}
        for i, key in enumerate(("npy", "nii")):
            ours.setdefault(key, {})[method] = (found.batch.small_maps[i], raw[files[key].name])
    from gradcam_cli.explain.maps import resize_volume

    resized = np.stack([resize_volume(volumes[key], INPUT) for key in ("npy", "nii")])[..., None]
    cut = keras.Model(model.input, model.get_layer("dropout").output)
    dense = model.get_layer("predictions")
    features = np.asarray(cut(resized, training=False))
    logits = features @ np.asarray(dense.kernel) + np.asarray(dense.bias)
    return {"volumes": volumes, "ours": ours, "twin": twin, "logits": logits}


def test_the_twin_is_a_twin(compared):
    """The twin's logits are the Keras model's (same weights, layouts, epsilons, inference mode):
    without that, agreeing maps would mean nothing."""
    for i, key in enumerate(("npy", "nii")):
        theirs = compared["twin"][f"{key}/logits"].ravel()
        np.testing.assert_allclose(theirs, compared["logits"][i], rtol=1e-4, atol=1e-4)


def test_the_sample_scan_reads_the_same_from_npy_and_nifti(compared):
    np.testing.assert_array_equal(compared["volumes"]["npy"], compared["volumes"]["nii"])


@pytest.mark.parametrize("key", ["npy", "nii"])
@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_raw_maps_agree_with_pytorch_grad_cam(compared, key, method):
    grid, raw = compared["ours"][key][method]
    volume = compared["volumes"][key]
    twin_grid = compared["twin"][f"{key}/{method}/grid"]
    twin_volume = compared["twin"][f"{key}/{method}/volume"]
    assert grid.shape == twin_grid.shape == GRID
    assert raw.shape == twin_volume.shape == volume.shape
    assert grid.max() > 0 and grid.std() > 0 and (grid == 0).mean() < 0.9  # a map with something in it
    assert pearson(grid, twin_grid) >= 0.99
    assert pearson(raw, twin_volume) >= 0.99
    # the same numbers, not only the same shape: both are ReLU(sum_k w_k A_k) of the same logit
    np.testing.assert_allclose(grid, twin_grid, rtol=1e-3, atol=1e-4 * float(twin_grid.max()))
    np.testing.assert_allclose(raw, twin_volume, rtol=1e-3, atol=1e-4 * float(twin_volume.max()))


def test_monais_gradcam_agrees_where_it_is_installed(compared):
    """MONAI's GradCAM (its map upsampled to the model's input with the same trilinear rule; its
    default post-processing, which maps (min, max) to (1, 0), replaced by the identity) against
    ours on the model's input grid."""
    if "npy/monai/input" not in compared["twin"]:
        pytest.skip("MONAI is not installed in the twin")
    from gradcam_cli.explain.maps import resize_volume

    grid, _ = compared["ours"]["npy"]["gradcam"]
    theirs = compared["twin"]["npy/monai/input"]
    assert theirs.shape == INPUT
    assert pearson(resize_volume(grid, INPUT), theirs) >= 0.99
