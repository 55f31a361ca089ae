"""The first map fast: a run of one batch through a deep model computes its steps eagerly instead of
tracing them (explain/eager.py's eager_pays and EagerFirst), with the same maps; steps are traced
without AutoGraph, falling back to it for a layer that branches on a tensor; the command line starts
Keras without the optional integrations it never uses (explain/runtime.py's lean import); and on
JAX a second process reads its compiled programs from the persistent cache."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import OFFLINE_ENV, python_cli

SAMPLES = Path(__file__).resolve().parents[1] / "sample_images"


def deep_model(keras, blocks=21, size=32, classes=5, seed=3):
    """A plain deep network of 3 * blocks + 2 layers (Conv2D, BatchNormalization, ReLU per block)
    with fixed random weights and moving statistics: deep enough for eager_pays."""
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = inputs
    for i in range(blocks):
        x = layers.Conv2D(8, 3, padding="same", name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, variance.shape)])
    return model


@pytest.fixture(scope="module")
def deep(keras):
    from gradcam_cli.models.loading import load

    return load(deep_model(keras), preprocess="unit")


def images(count, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def test_eager_pays_for_one_batch_of_a_deep_model(deep):
    from gradcam_cli.explain.eager import EAGER_MIN_LAYERS, eager_pays
    from gradcam_cli.models.graph import iter_layers
    from gradcam_cli.models.loading import load

    assert sum(1 for _ in iter_layers(deep.model)) == 3 * 21 + 2 >= EAGER_MIN_LAYERS  # the input is not a layer
    assert eager_pays(deep, 1)
    assert not eager_pays(deep, 2) and not eager_pays(deep, None)  # several batches, or not known
    assert not eager_pays(deep, 1, jit=True)  # XLA asked for: compiled
    shallow = load("demo-vgg")
    assert sum(1 for _ in iter_layers(shallow.model)) < EAGER_MIN_LAYERS and not eager_pays(shallow, 1)


# One method per kind of step: the gradient step, the Hessian step, the input-gradient step, the
# forward step alone, the input-and-taps step, and input gradients in chunks.
METHODS = ("gradcam", "gradcam++", "shapleycam", "guided", "eigencam", "fullgrad", "smoothgrad")


@pytest.mark.parametrize("method", METHODS)
def test_maps_are_the_same_eager_or_traced(deep, method):
    from gradcam_cli.api import Explainer

    options = {"samples": 4} if method == "smoothgrad" else {}
    pictures = images(3)
    eager = Explainer(deep, method, batch_size=3, inputs=3, **options)
    traced = Explainer(deep, method, batch_size=3, **options)
    assert eager.build().engine.eager_first and not traced.build().engine.eager_first
    first, second = eager.maps(pictures, classes=[0, 2, None]), traced.maps(pictures, classes=[0, 2, None])
    if method == "smoothgrad":  # its noisy copies take several calls of one step: the second compiles it
        assert eager.build().engine.traces == {"input": 1}
    else:
        assert not eager.build().engine.traces, "one batch eagerly: nothing traced"
    assert sum(traced.build().engine.traces.values()) >= 1
    np.testing.assert_array_equal(first.classes, second.classes)
    compared = [name for name in ("small_maps", "weighted_sums", "input_gradients", "scores")
                 if getattr(second.batch, name) is not None]
    assert "small_maps" in compared and "scores" in compared
    for name in compared:
        a, b = getattr(first.batch, name), getattr(second.batch, name)
        assert a.shape == b.shape and np.abs(b).max() > 0, name
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max(), err_msg=name)


def test_a_second_call_compiles_and_agrees(deep):
    from gradcam_cli.explain.engine import Engine

    engine = Engine(deep, deep.target_layer("relu20"), batch_size=2, eager_first=True)
    inputs = np.stack(images(2)).astype(np.float32) / 255
    targets = np.array([1, -1], np.int32)
    first = engine.run(inputs, targets)
    assert not engine.traces
    second, third = engine.run(inputs, targets), engine.run(inputs, targets)
    assert engine.traces["gradients"] == 1  # traced on the second call, once
    for later in (second, third):
        np.testing.assert_array_equal(first.classes, later.classes)
        np.testing.assert_allclose(first.gradients, later.gradients, rtol=1e-4,
                                   atol=1e-5 * np.abs(later.gradients).max())


def branching_model(keras):
    """A model with a layer that branches in Python on a tensor's value (traceable only eagerly)."""
    from keras import layers, ops

    class Branching(layers.Layer):
        def call(self, x):
            if ops.mean(x) > 0:
                return x * 2.0
            return x * 0.5

        def compute_output_shape(self, shape):
            return shape

    keras.utils.set_random_seed(4)
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = Branching(name="branch")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3, name="logits")(x))


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow", reason="AutoGraph is TensorFlow's")
def test_autograph_would_not_trace_a_keras_layer_that_branches_on_a_tensor(keras):
    """Why the steps are traced without AutoGraph loses nothing: AutoGraph does not convert a Keras 3
    layer's call, so a layer that branches in Python on a tensor fails to trace with it too."""
    import tensorflow as tf

    from gradcam_cli.models.loading import load

    loaded = load(branching_model(keras), preprocess="none")
    inputs = np.full((1, 16, 16, 3), 10.0, np.float32)
    for autograph in (True, False):
        with pytest.raises(tf.errors.OperatorNotAllowedInGraphError):
            tf.function(lambda x: loaded.model(x), autograph=autograph)(inputs)
    assert np.isfinite(keras.ops.convert_to_numpy(loaded.model(inputs))).all()  # eagerly it runs


def test_the_command_line_starts_keras_without_its_optional_integrations(tmp_path):
    """A Grad-CAM run of the command line imports none of pandas, matplotlib, scikit-learn or SciPy
    (Keras imports them at start-up when installed), and writes its map; the library's own
    import_keras, for a caller's process, leaves Keras as it is."""
    run = python_cli(
        "import sys, json",
        "from gradcam_cli.cli import main",
        "try:",
        f"    main([{str(SAMPLES / 'cat.png')!r}, '--model', 'demo-vgg', '-o', {str(tmp_path)!r}, '-q'])",
        "except SystemExit as exit:",
        "    assert exit.code in (0, None), exit.code",
        "print(json.dumps(sorted(n for n in ('pandas', 'matplotlib', 'sklearn', 'scipy', 'IPython', 'ray', 'keras_hub')",
        "                      if n in sys.modules)))")
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.splitlines()[-1]) == []
    assert (tmp_path / "cat.png.gradcam.overlay.png").stat().st_size > 1000
    installed = [name for name in ("pandas", "sklearn") if __import__("importlib").util.find_spec(name)]
    library = python_cli("import sys, json", "from gradcam_cli.explain.runtime import import_keras",
                         "import_keras()", f"print(json.dumps([n for n in {installed!r} if n in sys.modules]))")
    assert library.returncode == 0, library.stderr[-2000:]
    assert json.loads(library.stdout.splitlines()[-1]) == installed


def test_a_lean_start_that_keras_refuses_starts_it_whole():
    """Should Keras need one of the hidden packages to start, it is imported again with nothing
    hidden (here absl, which TensorFlow needs, is hidden on purpose)."""
    run = python_cli("import gradcam_cli.explain.runtime as runtime", "runtime.LEAN_SKIPPED = ('absl',)",
                     "keras = runtime.import_keras(lean=True)", "import sys",
                     "print(float(keras.ops.convert_to_numpy(keras.ops.add(1.5, 2.0))), 'absl' in sys.modules)")
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-2:] == ["3.5", "True"]


def test_the_command_ends_without_tearing_down_keras_and_keeps_its_outputs(tmp_path):
    """The console script's process that loaded Keras ends through base._exit_now: the atexit
    functions still run (one registered here writes a file), the JSON lines and files are whole,
    and the exit status is the command's (0; 1 when an input is missing)."""
    marker = tmp_path / "atexit.txt"
    script = ("import atexit, sys, pathlib; "
              f"atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text('ran')); "
              "from gradcam_cli.cli import main; sys.argv[0] = 'gradcam'; main()")
    for images, status in (([SAMPLES / "cat.png"], 0), ([SAMPLES / "cat.png", tmp_path / "missing.png"], 1)):
        marker.unlink(missing_ok=True)
        out = tmp_path / f"out{status}"
        run = subprocess.run([sys.executable, "-c", script, *map(str, images), "--model", "demo-vgg", "-o", str(out),
                              "--json", "-q"], capture_output=True, text=True, env=dict(os.environ, **OFFLINE_ENV),
                             timeout=600)
        assert run.returncode == status, run.stderr[-2000:]
        assert marker.read_text() == "ran"
        records = [json.loads(line) for line in run.stdout.splitlines()]
        assert [Path(r["input"]).name for r in records if "error" not in r] == ["cat.png"]
        written = json.loads((out / "cat.png.gradcam.record.json").read_text())
        assert written["record"] == next(r for r in records if "error" not in r)
        assert (out / "cat.png.gradcam.overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_configured_backend_reads_as_keras_does(tmp_path, monkeypatch):
    from gradcam_cli.explain.runtime import configured_backend

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert configured_backend() == "tensorflow"  # no keras.json
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax"}))
    assert configured_backend() == "jax"
    (tmp_path / "keras.json").write_text("{not json")
    assert configured_backend() is None  # unknown: nothing is hidden on its account
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert configured_backend() == "tensorflow"


# Counts JAX's persistent-cache hits of the process, then runs the command line.
CACHE_PROBE = """
import sys, jax, jax.monitoring
hits = []
jax.monitoring.register_event_listener(lambda event, **kw: hits.append(event) if event.endswith("cache_hits") else None)
from gradcam_cli.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
print("hits", len(hits))
"""


@pytest.mark.slow
@pytest.mark.skipif(__import__("importlib").util.find_spec("jax") is None, reason="jax is not installed")
def test_jax_reads_compiled_programs_from_its_cache_in_a_second_process(tmp_path):
    env = dict(os.environ, **OFFLINE_ENV, KERAS_BACKEND="jax", KERAS_HOME=str(tmp_path / "home"))

    def run(out, *extra):
        args = [str(SAMPLES / "cat.png"), "--model", "demo-vgg", "-o", str(tmp_path / out), "--save", "raw", "-q", *extra]
        result = subprocess.run([sys.executable, "-c", CACHE_PROBE, *args], capture_output=True, text=True, env=env,
                                timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        return int(result.stdout.split()[-1]), np.load(tmp_path / out / "cat.png.gradcam.raw.npy")

    cold, first = run("first")
    cache = tmp_path / "home" / "jax-cache"
    assert cold == 0 and any(cache.iterdir())
    warm, second = run("second")
    assert warm > 0  # the step (and the initialisers) read back, not compiled
    np.testing.assert_array_equal(first, second)
    off, _ = run("off", "--cache-dir", "none")
    assert off == 0
