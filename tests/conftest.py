"""Shared fixtures: tiny models with fixed weights, image files, an offline environment."""

import math
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
from PIL import Image

# No test may download: any proxied fetch goes to a closed port on loopback and fails at once.
OFFLINE_ENV = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
               "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
os.environ.update(OFFLINE_ENV)


@pytest.fixture(scope="session")
def keras():
    from gradcam_cli.explain.runtime import import_keras

    return import_keras()


def random_batch_norm(model, rng):
    """Give every BatchNormalization layer of `model` random statistics (gamma, beta, moving mean,
    moving variance, drawn in that order from `rng`), so that folding it into a convolution is tested
    on values that change the function."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.get_weights()[0].shape
            layer.set_weights([rng.uniform(0.5, 2, channels), rng.normal(0, 0.2, channels),
                               rng.normal(0, 0.2, channels), rng.uniform(0.2, 2, channels)])
    return model


def set_fixed_weights(model, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, scale, w.shape).astype("float32") for w in model.get_weights()])
    return model


# Where two processes, two batchings or two routes compute the same figure, float32 reductions may
# differ in their last bits (threaded sums are not bit-reproducible): a Ray worker's score of
# 1333.217773 against a local run's 1333.217651. Such figures are compared to these tolerances,
# a few float32 steps (its epsilon is 1.2e-7); files, integers and strings stay exact.
FLOAT32_REL, FLOAT32_ABS = 1e-5, 1e-6
TIMING_KEYS = frozenset({"seconds"})


def assert_records_close(actual, expected, rel=FLOAT32_REL, abs=FLOAT32_ABS, ignore=TIMING_KEYS):
    """Assert that two JSON-like records (dicts, lists, numbers, strings, None, nested) are equal,
    floats to |a - b| <= max(rel |expected|, abs) (pytest.approx's rule), everything else exactly:
    the same keys, lengths, integers, booleans and strings. Keys in `ignore` (timings) are skipped
    at any depth. Every difference is listed, each at its place (record["maps"][0]["score"])."""
    __tracebackhide__ = True
    differences = []
    _compare_records(actual, expected, "record", rel, abs, ignore, differences)
    if differences:
        raise AssertionError("records differ:\n" + "\n".join(differences[:30]))


def _is_float(value):
    return isinstance(value, (float, np.floating))


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _compare_records(actual, expected, where, rel, abs_, ignore, differences):
    if isinstance(actual, np.ndarray):
        actual = actual.tolist()
    if isinstance(expected, np.ndarray):
        expected = expected.tolist()
    if isinstance(actual, dict) and isinstance(expected, dict):
        mine, theirs = set(actual) - ignore, set(expected) - ignore
        if mine != theirs:
            differences.append(f"{where}: keys {sorted(mine - theirs)} only in the first, "
                               f"{sorted(theirs - mine)} only in the second")
        for key in sorted(mine & theirs, key=str):
            _compare_records(actual[key], expected[key], f"{where}[{key!r}]", rel, abs_, ignore, differences)
    elif isinstance(actual, (list, tuple)) and isinstance(expected, (list, tuple)):
        if len(actual) != len(expected):
            differences.append(f"{where}: {len(actual)} items against {len(expected)}")
        for i, (a, b) in enumerate(zip(actual, expected)):
            _compare_records(a, b, f"{where}[{i}]", rel, abs_, ignore, differences)
    elif (_is_float(actual) or _is_float(expected)) and _is_number(actual) and _is_number(expected):
        a, b = float(actual), float(expected)
        if not (a == b or (np.isnan(a) and np.isnan(b)) or
                (np.isfinite(a) and np.isfinite(b) and math.fabs(a - b) <= max(rel * math.fabs(b), abs_))):
            differences.append(f"{where}: {a!r} != {b!r} (rel={rel}, abs={abs_})")
    elif type(actual) is not type(expected) and not (_is_number(actual) and _is_number(expected)):
        differences.append(f"{where}: {actual!r} ({type(actual).__name__}) != {expected!r} "
                           f"({type(expected).__name__})")
    elif actual != expected:
        differences.append(f"{where}: {actual!r} != {expected!r}")


def conv3x3_same(x, kernel, bias):
    """A 'same'-padded 3x3 convolution by hand: (H, W, C) x (3, 3, C, K) + (K,) -> (H, W, K)."""
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros(x.shape[:2] + (kernel.shape[3],))
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[i, j] = np.tensordot(padded[i : i + 3, j : j + 3], kernel, axes=([0, 1, 2], [0, 1, 2])) + bias
    return out


def conv3x3_same_transpose(upstream, kernel):
    """The input gradient of conv3x3_same: (H, W, K) upstream, (3, 3, C, K) kernel -> (H, W, C)."""
    height, width = upstream.shape[:2]
    padded = np.zeros((height + 2, width + 2, kernel.shape[2]))
    for i in range(height):
        for j in range(width):
            padded[i : i + 3, j : j + 3] += np.tensordot(kernel, upstream[i, j], axes=([3], [0]))
    return padded[1:-1, 1:-1]


def counting(engine, name):
    """Wrap the engine's method `name` (probabilities, upper_scores, upper_scores_ablated...): the
    row counts of its calls (the length of the last argument) land in the list returned."""
    calls, original = [], getattr(engine, name)

    def counted(*args):
        calls.append(len(args[-1]))
        return original(*args)

    setattr(engine, name, counted)
    return calls


def tiny_model(keras, softmax=True, seed=0, classes=3, name="tiny"):
    """8x8x3 -> Conv3x3(4, relu) 'target' -> Conv1x1(5, relu) 'post' -> Flatten -> Dense(classes) 'pred'."""
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="target")(inputs)
    x = layers.Conv2D(5, 1, activation="relu", name="post")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(classes, activation="softmax" if softmax else None, name="pred")(x)
    return set_fixed_weights(keras.Model(inputs, outputs, name=name), seed)


def gap_model(keras, classes=3, activation="softmax", size=32, seed=1, name="gapnet"):
    """A small CNN ending in GlobalAveragePooling2D + Dense, CAM-shaped."""
    layers = keras.layers
    inputs = keras.Input((size, size, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(classes, activation=activation, name="pred")(x)
    return set_fixed_weights(keras.Model(inputs, outputs, name=name), seed, scale=0.3)


def nested_model(keras, seed=2, size=32):
    """The fine-tuning shape: Sequential([base model, GlobalAveragePooling2D, Dense(2, softmax)])."""
    layers = keras.layers
    base_in = keras.Input((size, size, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="b_conv1")(base_in)
    x = layers.MaxPooling2D(2, name="b_pool")(x)
    x = layers.Conv2D(16, 3, padding="same", name="b_conv2")(x)
    x = layers.BatchNormalization(name="b_bn")(x)
    x = layers.ReLU(name="b_out")(x)
    base = keras.Model(base_in, x, name="base")
    model = keras.Sequential(
        [keras.Input((size, size, 3)), base, layers.GlobalAveragePooling2D(name="gap"),
         layers.Dense(2, activation="softmax", name="pred")],
        name="nested",
    )
    set_fixed_weights(model, seed, scale=0.3)
    bn = base.get_layer("b_bn")
    gamma, beta, mean, variance = bn.get_weights()
    bn.set_weights([gamma, beta, mean, np.abs(variance) + 0.5])  # a variance is positive
    return model


def write_image(path, size=(40, 30), seed=0, mode="RGB", **save_kwargs):
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(array)
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **save_kwargs)
    return path


def run_cli(*args, cwd=None, stdin=None, env=None):
    """The installed console script, in a subprocess, offline."""
    full_env = dict(os.environ, **OFFLINE_ENV, **(env or {}))
    full_env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the CLI must silence TensorFlow by itself
    return subprocess.run(["gradcam", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          input=stdin, env=full_env, timeout=600)


def invoke_cli(*args, cwd=None, stdin=None, env=None):
    """The command in-process, through Click's test runner (no interpreter start, TensorFlow
    already imported): a subprocess.CompletedProcess-like result with returncode, stdout,
    stderr. Use run_cli where the separate process is the point (the console script, what
    TensorFlow prints to the real stderr, a fresh interpreter)."""
    from click.testing import CliRunner

    from gradcam_cli.cli import main

    previous = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, [str(a) for a in args], input=stdin, env=env)
    finally:
        os.chdir(previous)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(["gradcam", *map(str, args)], result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def image_dir(tmp_path):
    folder = tmp_path / "images"
    write_image(folder / "a.png", (40, 30), seed=1)
    write_image(folder / "b.jpg", (25, 50), seed=2)
    return folder


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory, keras):
    """Small model files saved once for the CLI tests."""
    folder = tmp_path_factory.mktemp("models")
    files = {}
    files["gap"] = folder / "gap.keras"
    gap_model(keras).save(files["gap"])
    files["nested"] = folder / "nested.keras"
    nested_model(keras).save(files["nested"])
    files["nested_h5"] = folder / "nested_legacy.h5"
    nested_model(keras).save(files["nested_h5"])
    return files


def python_cli(*code):
    return subprocess.run([sys.executable, "-c", "\n".join(code)], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, **OFFLINE_ENV))


def run_on_jax(module, function):
    """Run tests/MODULE.py's FUNCTION(keras) in a fresh interpreter on the JAX backend."""
    tests = os.path.dirname(os.path.abspath(__file__))
    code = (f"import sys; sys.path.insert(0, {tests!r}); import keras; from {module} import {function}; "
            f"{function}(keras); print(keras.backend.backend(), 'ok')")
    env = dict(os.environ, **OFFLINE_ENV, KERAS_BACKEND="jax")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "jax ok" in result.stdout


def channel_map(channel_weights, result, context):
    """sum_k w_k A_k of each image of an batch.BatchResult for a registry rule giving channel
    weights (Score-CAM's, Ablation-CAM's), before the ReLU: (B, h, w)."""
    from gradcam_cli.explain.maps import weighted_sum

    return weighted_sum(result.activations, channel_weights(result, context))


def probabilities(loaded, inputs):
    """Class probabilities of prepared inputs through the one compiled scoring route (an engine's
    forward step at the model's default layer)."""
    from gradcam_cli.explain.engine import Engine

    return Engine(loaded, loaded.target_layer(None), batch_size=len(inputs)).probabilities(inputs)
