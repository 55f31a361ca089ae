"""The JAX side of the gradient seam gives the TensorFlow side's numbers (which the other tests
check by hand): Grad-CAM, guided and deconvnet input gradients, and a dilated copy. Skipped
where jax is not installed (CI keeps TensorFlow only)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import OFFLINE_ENV

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")

SAMPLES = Path(__file__).resolve().parents[1] / "sample_images"
RUNS = (("guided", "--mode", "guided"), ("guided", "--mode", "deconvnet"), ("dilated",), ("gradcam",))


def run_with(backend, out):
    env = dict(os.environ, **OFFLINE_ENV, KERAS_BACKEND=backend)
    for command in RUNS:
        result = subprocess.run([sys.executable, "-m", "gradcam_cli", *command, str(SAMPLES / "synthetic_cross.png"),
                                 str(SAMPLES / "cat.png"), "--model", "demo-vgg", "-o", str(out), "--save", "raw",
                                 "-q", "-b", "2"], capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stderr
    return sorted(out.glob("*.npy"))


def test_jax_backend_matches_tensorflow(tmp_path):
    jax_files = run_with("jax", tmp_path / "jax")
    tf_files = run_with("tensorflow", tmp_path / "tf")
    assert [f.name for f in jax_files] == [f.name for f in tf_files] and len(jax_files) == 16
    for ours, theirs in zip(jax_files, tf_files):
        a, b = np.load(ours), np.load(theirs)
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max(), err_msg=ours.name)


EVERY_METHOD = """
import os, sys, numpy as np
from PIL import Image
from gradcam_cli import Explainer, load_model
from gradcam_cli.explain.methods import METHODS
# CAM needs demo-gap's head, dilated copies demo-vgg, the attention methods a transformer
models = [load_model("demo-gap"), load_model("demo-vgg"), load_model(os.environ["VIT_MODEL"])]
images = [np.asarray(Image.open(p).convert("RGB")) for p in sys.argv[2:]]
maps = {}
for name in ("gradcam", "ablationcam"):  # a token layer's grid; Ablation-CAM through the whole model
    for i, e in enumerate(Explainer(models[2], name, batch_size=2)(images)):
        maps[f"{name}/vit/{i}"] = e.small_map
for name, method in METHODS.items():
    model = models[1] if method.network else models[2] if method.reads_attention else models[0]
    quick = {"max_masks": 8, "samples": 4, "steps": 4, "sess_scales": 2}  # each method takes those it has
    explain = Explainer(model, name, batch_size=2, **{k: v for k, v in quick.items() if method.option(k)})
    for i, e in enumerate(explain(images)):
        maps[f"{name}/{i}"] = e.small_map
        maps[f"{name}/{i}/class"] = np.array(e.class_index)
        if e.input_gradient is not None:
            maps[f"{name}/{i}/gradient"] = e.input_gradient
np.savez(sys.argv[1], **maps)
"""


def test_every_method_gives_the_same_maps_on_jax(tmp_path, keras):
    """Each registered method through the API on both backends (Score-CAM with 8 masks,
    SmoothGrad with 4 samples, Integrated Gradients with 4 steps, to stay quick); the attention
    methods and Grad-CAM at a token layer on a small ViT."""
    from gradcam_cli.models.vit import vit

    keras.utils.set_random_seed(2)
    vit(input_size=(64, 64), patch_size=16, prefix=1).save(tmp_path / "vit.keras")
    images = [str(SAMPLES / "synthetic_cross.png"), str(SAMPLES / "synthetic_two_circle_triangle.png")]
    arrays = {}
    for backend in ("jax", "tensorflow"):
        env = dict(os.environ, **OFFLINE_ENV, KERAS_BACKEND=backend, VIT_MODEL=str(tmp_path / "vit.keras"))
        result = subprocess.run([sys.executable, "-c", EVERY_METHOD, str(tmp_path / f"{backend}.npz"), *images],
                                capture_output=True, text=True, env=env, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        arrays[backend] = np.load(tmp_path / f"{backend}.npz")
    from gradcam_cli.explain.methods import METHODS

    assert sorted(arrays["jax"].files) == sorted(arrays["tensorflow"].files)
    assert {key.split("/")[0] for key in arrays["jax"].files} == set(METHODS)
    for key in arrays["tensorflow"].files:
        a, b = arrays["jax"][key], arrays["tensorflow"][key]
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * (np.abs(b).max() + 1e-12), err_msg=key)


def test_targets_on_jax_match_tensorflow(tmp_path):
    """A segment target on demo-unet (Grad-CAM, Seg-Eigen-CAM) and a box target on a small
    detector: the same maps on both backends (the targets are written in keras.ops)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_targets import tiny_detector

    detector = tmp_path / "detector.keras"
    tiny_detector().save(detector)
    runs = [("--model", "demo-unet", "--target", "segment:circle", "--method", method)
            for method in ("gradcam", "segeigencam")]
    runs.append(("--model", str(detector), "--layer", "feat", "--target", "box:24,24,120,120"))  # 0.5..2.5 of its 4x4 input
    found = {}
    for backend in ("jax", "tensorflow"):
        env = dict(os.environ, **OFFLINE_ENV, KERAS_BACKEND=backend)
        out = tmp_path / backend
        for k, run in enumerate(runs):
            result = subprocess.run([sys.executable, "-m", "gradcam_cli", str(SAMPLES / "synthetic_circle.png"), *run,
                                     "-o", str(out / str(k)), "--save", "raw", "-q"], capture_output=True, text=True,
                                    env=env, timeout=600)
            assert result.returncode == 0, result.stderr
        found[backend] = sorted(out.rglob("*.npy"))
    assert [f.relative_to(tmp_path / "jax") for f in found["jax"]] == \
        [f.relative_to(tmp_path / "tensorflow") for f in found["tensorflow"]] and len(found["jax"]) == 3
    for ours, theirs in zip(found["jax"], found["tensorflow"]):
        a, b = np.load(ours), np.load(theirs)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max(), err_msg=ours.name)
