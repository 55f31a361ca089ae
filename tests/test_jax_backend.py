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
