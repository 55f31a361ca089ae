"""--quiet means quiet: under -q, stderr carries our own error lines and nothing from libraries
(Keras's and numpy's warnings, absl/Hugging Face log records, anything C code writes to file
descriptor 2). A PNG with a bad checksum, which libpng warned about when OpenCV decoded it, is now
refused by the decoding gate before any decoder runs (tests/test_bounded_decoding.py)."""

import os
import subprocess
import warnings

import pytest
from conftest import OFFLINE_ENV, write_image

NOISY_LAYERS = '''
import logging
import os
import warnings

import keras
import numpy as np

np.log(np.zeros(1))  # numpy: RuntimeWarning: divide by zero encountered in log
warnings.warn("a library's UserWarning")
logging.getLogger("some_library").warning("retrying in 1s [Retry 1/5]")  # as huggingface_hub does
os.write(2, b"native chatter on fd 2\\n")  # as C and C++ libraries do


@keras.saving.register_keras_serializable(package="noisy")
class Mixer(keras.layers.Layer):
    """A sublayer made in __init__ and no build(): Keras warns when the model is loaded."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.layers.Dense(3)

    def call(self, x):
        return self.inner(x)
'''


@pytest.fixture(scope="module")
def noisy(tmp_path_factory, keras):
    from gradcam_cli.models.user_code import import_user_code

    folder = tmp_path_factory.mktemp("noisy")
    (folder / "noisy_layers.py").write_text(NOISY_LAYERS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layers = import_user_code(folder / "noisy_layers.py")
    inputs = keras.Input((64, 64, 3))
    x = layers.Mixer(name="mixer")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x))
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)).save(folder / "mixed.keras")
    write_image(folder / "plain.png", (64, 64), seed=1)
    return folder


def gradcam(*args, cwd):
    environment = dict(os.environ, **OFFLINE_ENV)
    environment.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the command must silence TensorFlow by itself
    return subprocess.run(["gradcam", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=environment,
                          timeout=300)


def test_under_quiet_stderr_has_only_our_error_lines(noisy):
    arguments = ("plain.png", "missing.png", "--model", "mixed.keras", "--import", "noisy_layers.py",
                 "-o", "out")
    loud = gradcam(*arguments, cwd=noisy)  # the inputs do make noise
    assert loud.returncode == 1, loud.stderr
    for noise in ("RuntimeWarning", "a library's UserWarning", "`build()` was called on layer 'mixer'",
                  "native chatter on fd 2"):
        assert noise in loud.stderr, noise
    quiet = gradcam(*arguments, "-q", cwd=noisy)
    assert quiet.returncode == 1
    assert quiet.stderr == "error: missing.png: no such file or folder\n"
    assert sorted(p.name for p in (noisy / "out").iterdir()) == [
        f"plain.png.gradcam.{kind}" for kind in ("heatmap.png", "overlay.png", "record.json")]


def test_under_quiet_a_usage_error_is_still_its_one_line(noisy):
    result = gradcam("plain.png", "--model", "mixed.keras", "--import", "noisy_layers.py", "--layer", "nope", "-q",
                     "-o", "out2", cwd=noisy)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "'nope'" in lines[0]


def test_an_offline_preset_under_quiet_is_one_line_at_once(tmp_path):
    pytest.importorskip("keras_hub")
    import time

    write_image(tmp_path / "i.png", (64, 64))
    start = time.perf_counter()
    result = gradcam("i.png", "--model", "hf://x/y", "-q", "-o", "out", cwd=tmp_path)
    assert time.perf_counter() - start < 60  # keras-hub's six retries took 49 s, with the interpreter's start
    assert result.returncode == 2
    assert result.stderr.startswith("Error: cannot load keras-hub preset 'hf://x/y': it is not in keras-hub's cache")
    assert result.stderr.count("\n") == 1 and "Retry" not in result.stderr
