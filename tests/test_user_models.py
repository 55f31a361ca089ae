"""The models and habits users bring: augmentation layers inside the model, 1-channel inputs,
custom layers, several outputs, heads whose softmax is not the last layer, models that output
inf, and every failure in one line. Most run in-process through Click's CliRunner."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import conv3x3_same, gap_model, set_fixed_weights, write_image
from PIL import Image

from gradcam_cli.cli import main
from gradcam_cli.explain import compute
from gradcam_cli.explain.batch import top_rank
from gradcam_cli.explain.compute import compute_maps
from gradcam_cli.explain.engine import Engine
from gradcam_cli.files.images import model_view
from gradcam_cli.models import loading


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def one_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def records(result):
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


# --- inference mode --------------------------------------------------------------------------

def _augmented(keras, with_noise_layers=True, seed=3, nested=False):
    """RandomFlip, RandomRotation, RandomZoom, GaussianNoise and Dropout around a small CNN; the
    same weights with `with_noise_layers=False` give the model without them. `nested`: the
    augmentation as a Sequential inside the model, as keras.io's "Image classification from
    scratch" builds it."""
    layers = keras.layers
    inputs = keras.Input((24, 24, 3))
    x = inputs
    if with_noise_layers:
        augmentation = [layers.RandomFlip("horizontal", seed=1), layers.RandomRotation(0.2, seed=2),
                        layers.RandomZoom(0.3, seed=3), layers.GaussianNoise(1.0)]
        if nested:
            x = keras.Sequential(augmentation, name="augmentation")(x)
        else:
            for layer in augmentation:
                x = layer(x)
    x = layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(x)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    if with_noise_layers:
        x = layers.Dropout(0.5)(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if with_noise_layers:
        x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(3, activation="softmax", name="pred")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed)
    for name in ("conv1", "bn", "conv2", "pred"):
        layer = model.get_layer(name)
        weights = [rng.normal(0, 0.3, w.shape).astype("float32") for w in layer.get_weights()]
        if name == "bn":
            weights[3] = np.abs(weights[3]) + 0.5
        layer.set_weights(weights)
    return model


@pytest.mark.parametrize("nested", [False, True])
def test_augmentation_dropout_and_noise_layers_run_in_inference_mode(keras, nested):
    model = _augmented(keras, nested=nested)
    plain = _augmented(keras, with_noise_layers=False)  # same weights, no random layers
    images = np.random.default_rng(0).uniform(0, 255, (3, 24, 24, 3)).astype("float32")
    runs = []
    for candidate in (model, model, plain):
        loaded = loading.describe(candidate, "m", (24, 24), "none", None)
        engine = Engine(loaded, ("conv2",), batch_size=3)
        runs.append(compute_maps(loaded, engine, images, [top_rank(1)] * 3))
    first, second, without = runs
    np.testing.assert_array_equal(first.small_maps, second.small_maps)  # no randomness left
    np.testing.assert_array_equal(first.probabilities, second.probabilities)
    np.testing.assert_allclose(first.small_maps, without.small_maps, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(first.probabilities, model.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(first.probabilities, without.probabilities, rtol=1e-5, atol=1e-7)
    assert first.small_maps.max() > 0


def test_augmentation_through_the_command_gives_the_same_map_twice(tmp_path, keras):
    path = tmp_path / "augmented.keras"
    _augmented(keras).save(path)
    image = write_image(tmp_path / "a.png", (24, 24), seed=4)
    for out in ("o1", "o2"):
        assert invoke(image, "--model", path, "-o", tmp_path / out, "--save", "raw", "-q").exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "o1" / "a.png.gradcam.raw.npy"),
                                  np.load(tmp_path / "o2" / "a.png.gradcam.raw.npy"))


# --- 1-channel models ------------------------------------------------------------------------

def _gray_layers(keras, inputs):
    layers = keras.layers
    x = layers.Conv2D(2, 3, padding="same", activation="relu", name="target")(inputs)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return layers.Dense(3, name="pred")(x)


def _gray_model(keras, seed=5):
    inputs = keras.Input((8, 8, 1))
    return set_fixed_weights(keras.Model(inputs, _gray_layers(keras, inputs), name="gray"), seed)


def test_one_channel_model_map_equals_a_hand_computation(tmp_path, keras):
    model = _gray_model(keras)
    path = tmp_path / "gray.keras"
    model.save(path)
    image = write_image(tmp_path / "c.png", (8, 8), seed=6)  # colour: the model gets its luminance
    result = invoke(image, "--model", path, "--preprocess", "unit", "--class", "1", "-o", tmp_path / "o",
                    "--save", "raw,overlay", "--json")
    assert result.exit_code == 0, result.output
    record = records(result)[0]
    assert record["channels"] == "luminance"
    rgb = np.asarray(Image.open(image), dtype=np.float64)
    luminance = (rgb @ [0.299, 0.587, 0.114])[..., None] / 255.0
    kernel, bias = model.get_layer("target").get_weights()
    activations = np.maximum(conv3x3_same(luminance, kernel, bias), 0)
    dense, dense_bias = model.get_layer("pred").get_weights()
    # GAP + Dense on the logit: the gradient of class 1 is W[:, 1] / (h w) at every position
    expected = np.maximum(activations @ (dense[:, 1] / 64.0), 0)
    raw = np.load(tmp_path / "o" / "c.png.gradcam.class1.raw.npy")
    np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-6)
    logits = activations.mean(axis=(0, 1)) @ dense + dense_bias
    assert record["maps"][0]["score"] == pytest.approx(logits[1], rel=1e-5, abs=1e-6)
    with Image.open(record["maps"][0]["outputs"]["overlay"]) as overlay:  # drawn on the colour original
        assert overlay.mode == "RGB" and overlay.size == (8, 8)


def test_nested_one_channel_model_and_its_layers_listing(tmp_path, keras):
    flat = _gray_model(keras)
    inner_in = keras.Input((8, 8, 1))
    inner = keras.Model(inner_in, keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="target")(inner_in),
                        name="base")
    nested = keras.Sequential([keras.Input((8, 8, 1)), inner, keras.layers.GlobalAveragePooling2D(name="gap"),
                               keras.layers.Dense(3, name="pred")])
    nested.set_weights(flat.get_weights())
    path = tmp_path / "nested_gray.keras"
    nested.save(path)
    flat.save(tmp_path / "flat_gray.keras")
    image = write_image(tmp_path / "n.png", (16, 12), seed=7)
    for name in ("nested_gray", "flat_gray"):
        result = invoke(image, "--model", tmp_path / f"{name}.keras", "-o", tmp_path / name, "--save", "raw", "-q")
        assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "nested_gray" / "n.png.gradcam.raw.npy"),
                               np.load(tmp_path / "flat_gray" / "n.png.gradcam.raw.npy"), rtol=1e-5, atol=1e-6)
    listing = invoke("layers", "--model", path)
    assert listing.exit_code == 0
    assert listing.stdout.splitlines()[0].startswith("# input 8x8x1 (luminance)")
    assert "* base/target" in listing.stdout
    guided = invoke("guided", image, "--model", path, "-o", tmp_path / "g", "-q")
    assert guided.exit_code == 0, guided.output
    with Image.open(tmp_path / "g" / "n.png.guided.gradient.png") as picture:
        assert picture.size == (16, 12)


@pytest.mark.parametrize("channels", [2, 4])
def test_other_channel_counts_are_refused_in_one_line(tmp_path, keras, channels):
    inputs = keras.Input((8, 8, channels))
    x = keras.layers.Conv2D(2, 3, activation="relu")(inputs)
    path = tmp_path / f"c{channels}.keras"
    keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))).save(path)
    result = invoke(write_image(tmp_path / "x.png"), "--model", path, "-o", tmp_path / "o")
    assert result.exit_code == 2
    assert f"takes {channels}-channel inputs" in one_line(result.stderr)


def test_one_channel_model_refuses_per_colour_preprocessing(tmp_path, keras):
    path = tmp_path / "gray.keras"
    _gray_model(keras).save(path)
    result = invoke(write_image(tmp_path / "x.png"), "--model", path, "--preprocess", "caffe", "-o", tmp_path / "o")
    assert result.exit_code == 2 and "1-channel" in one_line(result.stderr)


# --- custom layers ---------------------------------------------------------------------------

LAYER_MODULE = '''
import keras


@keras.saving.register_keras_serializable(package="{package}")
class Doubling(keras.layers.Layer):
    def call(self, x):
        return x * 2.0
'''


def test_custom_layer_loads_with_import_and_is_named_without(tmp_path, keras):
    from gradcam_cli.models.user_code import import_user_code

    module = tmp_path / "my_layers.py"
    module.write_text(LAYER_MODULE.format(package="test_custom"))
    layers = import_user_code(module)
    inputs = keras.Input((16, 16, 3))
    x = layers.Doubling(name="double")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path / "custom.keras"
    set_fixed_weights(keras.Model(inputs, outputs), 8).save(path)
    # a fresh process knows nothing of the class: the subprocess is the point here
    from conftest import run_cli

    image = write_image(tmp_path / "i.png", (16, 16))
    refused = run_cli(image, "--model", path, "-o", tmp_path / "o")
    assert refused.returncode == 2, refused.stderr
    line = one_line(refused.stderr)
    assert "'Doubling' (module my_layers)" in line and "--import" in line
    loaded = run_cli(image, "--model", path, "--import", module, "-o", tmp_path / "o", "--json")
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout)["maps"][0]["outputs"]["overlay"].endswith("i.png.gradcam.overlay.png")


def test_bad_imports_are_one_line_usage_errors(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    image = write_image(tmp_path / "i.png")
    for target, message in ((broken, "cannot import"), (tmp_path / "absent.py", "no such file"),
                            ("no_such_module_here", "No module named")):
        result = invoke(image, "--model", "demo-gap", "--import", target, "-o", tmp_path / "o")
        assert result.exit_code == 2
        assert message in one_line(result.stderr)
    assert "RuntimeError: boom" in invoke(image, "--model", "demo-gap", "--import", broken).stderr


# --- several outputs -------------------------------------------------------------------------

def _two_outputs(keras):
    inputs = keras.Input((16, 16, 3))
    trunk = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(trunk)
    classes = keras.layers.Dense(4, activation="softmax", name="classes")(pooled)
    aux = keras.layers.Dense(1, name="aux_head")(pooled)
    model = keras.Model(inputs, {"labels": classes, "aux": aux})
    single = keras.Model(inputs, classes)  # the same layers, one output
    return set_fixed_weights(model, 9), single


def test_several_outputs_need_output_by_name_or_index(tmp_path, keras):
    model, single = _two_outputs(keras)
    path, single_path = tmp_path / "two.keras", tmp_path / "one.keras"
    model.save(path)
    single.save(single_path)
    image = write_image(tmp_path / "t.png", (16, 16), seed=3)
    refused = invoke(image, "--model", path, "-o", tmp_path / "o")
    assert refused.exit_code == 2
    line = one_line(refused.stderr)
    assert "2 outputs" in line and "0: aux (1)" in line and "1: labels (4)" in line and "--output" in line
    reference = invoke(image, "--model", single_path, "-o", tmp_path / "ref", "--save", "raw", "--json")
    for choice in ("labels", "classes", "1"):  # the dict key, the layer's name, the index
        result = invoke(image, "--model", path, "--output", choice, "-o", tmp_path / choice, "--save", "raw", "--json")
        assert result.exit_code == 0, result.output
        record = records(result)[0]
        assert record["output"] == "labels"
        assert record["predictions"] == records(reference)[0]["predictions"]
        np.testing.assert_allclose(np.load(tmp_path / choice / "t.png.gradcam.raw.npy"),
                                   np.load(tmp_path / "ref" / "t.png.gradcam.raw.npy"), rtol=1e-6)
    aux = invoke(image, "--model", path, "--output", "0", "-o", tmp_path / "aux", "--json")
    assert aux.exit_code == 0 and records(aux)[0]["output"] == "aux"  # one logit unit: a binary head
    wrong = invoke(image, "--model", path, "--output", "7", "-o", tmp_path / "o")
    assert wrong.exit_code == 2 and "output 7 is out of range" in one_line(wrong.stderr)


# --- never a traceback -----------------------------------------------------------------------

def test_an_unexpected_exception_is_one_line_and_exit_1(tmp_path, monkeypatch):
    image = write_image(tmp_path / "i.png")

    def broken(self, *args, **kwargs):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(Engine, "__init__", broken)
    result = invoke(image, "--model", "demo-gap", "-o", tmp_path / "o")
    assert result.exit_code == 1
    line = one_line(result.stderr)
    assert "demo-gap" in line and "RuntimeError: injected failure" in line and "--verbose" in line
    verbose = invoke(image, "--model", "demo-gap", "-o", tmp_path / "o", "--verbose")
    assert verbose.exit_code == 1 and "Traceback" in verbose.stderr and "injected failure" in verbose.stderr


def test_a_failure_pinned_to_one_image_leaves_the_others_going(tmp_path, monkeypatch):
    folder = tmp_path / "in"
    for i in range(5):
        write_image(folder / f"p{i}.png", (20, 20), seed=i)
    Image.fromarray(np.full((20, 20, 3), 255, np.uint8)).save(folder / "white.png")
    real_run = Engine.run

    def fails_on_white(self, images, targets, **options):
        if (np.asarray(images) >= 0.999).all(axis=(1, 2, 3)).any():  # demo-gap preprocesses to 0..1
            raise FloatingPointError("a white image")
        return real_run(self, images, targets, **options)

    monkeypatch.setattr(Engine, "run", fails_on_white)
    result = invoke(folder, "--model", "demo-gap", "-o", tmp_path / "o", "-b", "4", "--json")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "white.png" in errors[0] and "FloatingPointError: a white image" in errors[0]
    done = records(result)
    assert sorted(Path(r["input"]).name for r in done if "error" not in r) == [f"p{i}.png" for i in range(5)]
    assert "5 image(s) explained, 1 failed" in result.stderr


# --- the head: sigmoid units, softmax not last, non-finite outputs -----------------------------

def test_cam_on_a_single_sigmoid_unit_explains_each_class(tmp_path, keras):
    model = gap_model(keras, classes=1, activation="sigmoid")
    path = tmp_path / "binary.keras"
    model.save(path)
    image = write_image(tmp_path / "b.png", (32, 32), seed=12)
    raws = {}
    for method in ("cam", "gradcam"):
        for c in ("0", "1"):
            result = invoke(method, image, "--model", path, "--class", c, "-o", tmp_path / "o", "--save", "raw", "-q")
            assert result.exit_code == 0, result.output
            raws[method, c] = np.load(tmp_path / "o" / f"b.png.{method}.class{c}.raw.npy")
    for c in ("0", "1"):  # Grad-CAM = CAM / (h w) with GAP + a linear unit, for each class
        assert raws["cam", c].max() > 0
        scale = raws["cam", c].max() / 256.0
        np.testing.assert_allclose(raws["gradcam", c], raws["cam", c] / 256.0, rtol=1e-4, atol=1e-3 * scale)
    assert not np.allclose(raws["cam", "0"], raws["cam", "1"])
    top = invoke("cam", image, "--model", path, "-o", tmp_path / "t", "-q")
    assert top.exit_code == 0, top.output
    figure = invoke("compare", image, "--model", path, "-o", tmp_path / "c", "-q")
    assert figure.exit_code == 0, figure.output


@pytest.mark.parametrize("tail", ["linear-activation", "softmax-reshape", "dropout-softmax-flatten"])
def test_a_softmax_before_identity_or_shape_layers_is_removed(tmp_path, keras, tail):
    layers = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    logits = layers.Dense(3, name="logits")(x)
    if tail == "linear-activation":  # the mixed-precision output pattern
        out = layers.Activation("linear", dtype="float32")(layers.Activation("softmax")(logits))
    elif tail == "softmax-reshape":
        out = layers.Reshape((3,))(layers.Softmax()(logits))
    else:
        out = layers.Flatten()(layers.Activation("softmax")(layers.Dropout(0.2)(logits)))
    model = set_fixed_weights(keras.Model(inputs, out), 13)
    images = np.random.default_rng(1).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    loaded = loading.describe(model, "m", (16, 16), "none", None)
    assert not loaded.warnings
    computed = compute_maps(loaded, Engine(loaded, ("conv",), 2), images, [0, 2])
    logit_model = keras.Model(inputs, logits)
    np.testing.assert_allclose(computed.scores, logit_model.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(computed.probabilities, model.predict(images, verbose=0), rtol=1e-5, atol=1e-7)


def test_a_softmax_that_cannot_be_removed_is_said(tmp_path, keras):
    layers = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3, activation="relu", name="conv")(inputs))
    out = layers.Dense(3, name="rescale")(layers.Dense(3, activation="softmax", name="probs")(x))
    path = tmp_path / "after.keras"
    set_fixed_weights(keras.Model(inputs, out), 14).save(path)
    result = invoke(write_image(tmp_path / "i.png", (16, 16)), "--model", path, "-o", tmp_path / "o", "--json")
    assert result.exit_code == 0, result.output
    assert "softmax of layer 'probs' is followed by Dense 'rescale'" in result.stderr
    assert "cannot be removed" in records(result)[0]["warnings"][0]


def test_a_model_that_outputs_inf_gives_valid_json_and_exit_1(tmp_path, keras):
    model = gap_model(keras, activation=None)
    kernel, bias = model.get_layer("pred").get_weights()
    model.get_layer("pred").set_weights([kernel, np.array([np.inf, 0.0, -np.inf], np.float32)])
    path = tmp_path / "inf.keras"
    model.save(path)
    folder = tmp_path / "in"
    write_image(folder / "a.png", seed=1)
    write_image(folder / "b.png", seed=2)
    result = invoke(folder, "--model", path, "-o", tmp_path / "o", "--json")
    assert result.exit_code == 1
    lines = records(result)  # every line parses: inf and NaN are null
    assert len(lines) == 2
    for record in lines:
        assert "not finite" in record["error"] and record["warning"] and record["maps"] == []
        assert None in [p["probability"] for p in record["predictions"]]
    assert "RuntimeWarning" not in result.stderr and "Traceback" not in result.stderr
    assert sum("not finite" in line for line in result.stderr.splitlines()) == 2
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    plain = invoke(folder, "--model", path, "-o", tmp_path / "o2", "-q")
    assert plain.exit_code == 1 and "RuntimeWarning" not in plain.output


# --- inputs and outputs ----------------------------------------------------------------------

def test_preprocess_on_a_named_model_is_honoured_with_a_warning(tmp_path):
    image = write_image(tmp_path / "i.png", (64, 64))
    result = invoke(image, "--model", "demo-gap", "--preprocess", "caffe", "-o", tmp_path / "o", "--json")
    assert result.exit_code == 0
    assert "preprocessing caffe replaces demo-gap's own (unit)" in result.stderr
    assert records(result)[0]["warnings"]
    own = invoke(image, "--model", "demo-gap", "--preprocess", "unit", "-o", tmp_path / "o", "--json")
    assert "warning" not in own.stderr and "warnings" not in records(own)[0]


def test_output_folder_inside_the_input_folder_and_masks_are_not_inputs(tmp_path):
    folder = tmp_path / "selfin"
    write_image(folder / "x.png", (32, 32), seed=1)
    write_image(folder / "sub" / "y.png", (32, 32), seed=2)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / "x.mask.png")
    for _ in range(2):
        result = invoke(folder, "--model", "demo-gap", "-o", folder / "out")
        assert result.exit_code == 0, result.output
        assert "1 mask file(s)" in result.stderr
    # four PNGs and two record files
    assert "2 image(s) explained" in result.stderr and "skipped 6 file(s) in the output folder" in result.stderr
    written = sorted(p.relative_to(folder / "out").as_posix() for p in (folder / "out").rglob("*.png"))
    assert written == ["sub/y.png.gradcam.heatmap.png", "sub/y.png.gradcam.overlay.png",
                       "x.png.gradcam.heatmap.png", "x.png.gradcam.overlay.png"]
    # outputs written into the input folder itself: only files named like outputs are left out
    for _ in range(2):
        again = invoke(folder / "sub", "--model", "demo-gap", "-o", folder / "sub")
        assert again.exit_code == 0 and "1 image(s) explained" in again.stderr


def test_explicit_classes_are_in_the_names_so_skip_existing_sees_them(tmp_path):
    image = write_image(tmp_path / "i.png", (64, 64))
    out = tmp_path / "o"
    assert invoke(image, "--model", "demo-gap", "--class", "0", "-o", out, "-q").exit_code == 0
    second = invoke(image, "--model", "demo-gap", "--class", "1", "--skip-existing", "-o", out)
    assert second.exit_code == 0 and "whose outputs exist" not in second.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"i.png.gradcam.class{c}.{k}" for c in (0, 1) for k in ("heatmap.png", "overlay.png",
                                                                             "record.json")]
    third = invoke(image, "--model", "demo-gap", "--class", "square", "--skip-existing", "-o", out)
    assert "skipped 1 image(s) whose outputs exist" in third.stderr  # square is class 1


def test_an_unwritable_output_folder_stops_before_any_work(tmp_path, monkeypatch):
    image = write_image(tmp_path / "i.png")
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    computed = []
    monkeypatch.setattr(Engine, "__init__", lambda self, *a, **k: computed.append(1))
    result = invoke(image, "--model", "demo-gap", "-o", blocker / "out")
    assert result.exit_code == 2
    assert "cannot write to the output folder" in one_line(result.stderr)
    itself = invoke(image, "--model", "demo-gap", "-o", blocker)  # Click's own check of the option
    assert itself.exit_code == 2 and "is a file" in itself.stderr
    compare = invoke("compare", image, "--model", "demo-gap", "-o", blocker / "out")
    assert compare.exit_code == 2 and not computed
    import os

    if os.geteuid() != 0:  # root writes into a mode-555 folder anyway
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        assert invoke(image, "--model", "demo-gap", "-o", locked / "o").exit_code == 2


def test_crop_leaves_the_pixels_outside_the_crop_as_they_were(tmp_path):
    image = write_image(tmp_path / "wide.png", (120, 60), seed=3)
    result = invoke(image, "--model", "demo-gap", "--crop", "-o", tmp_path / "o", "--json")
    assert result.exit_code == 0, result.output
    original = np.asarray(Image.open(image))
    overlay = np.asarray(Image.open(tmp_path / "o" / "wide.png.gradcam.overlay.png"))
    box = model_view(original, (64, 64), crop=True)[1]
    x0, y0, x1, y1 = box
    assert (x0, x1) != (0, 120)
    np.testing.assert_array_equal(overlay[:, :x0], original[:, :x0])
    np.testing.assert_array_equal(overlay[:, x1:], original[:, x1:])
    assert (overlay[:, x0:x1] != original[:, x0:x1]).any()


def test_broken_links_and_missing_files_are_errors_with_json_records(tmp_path):
    folder = tmp_path / "in"
    write_image(folder / "good.png", (32, 32))
    (folder / "dangling.png").symlink_to(tmp_path / "gone.png")
    result = invoke(folder, tmp_path / "missing.jpg", "--model", "demo-gap", "-o", tmp_path / "o", "--json")
    assert result.exit_code == 1
    by_input = {Path(r["input"]).name: r for r in records(result)}
    assert by_input["missing.jpg"]["error"] == "no such file or folder"
    assert "broken symbolic link" in by_input["dangling.png"]["error"]
    assert "error" not in by_input["good.png"]
    assert "1 image(s) explained, 2 failed" in result.stderr


def test_smaller_usage_errors_say_what_is_wrong(tmp_path, keras):
    image = write_image(tmp_path / "i.png", (64, 64))
    save = invoke(image, "--model", "demo-gap", "--save", "gradient", "-o", tmp_path / "o")
    assert save.exit_code == 2 and "choose from heatmap, overlay, raw," in save.output
    assert "gradient-gray" not in save.output
    layers = invoke("compare", image, "--model", "demo-gap", "--layers", "nope", "-o", tmp_path / "o")
    assert layers.exit_code == 2 and "no layer 'nope'" in layers.output
    both = invoke("compare", image, "--models", "demo-gap,demo-vgg", "--class", "5", "-o", tmp_path / "o")
    assert both.exit_code == 2 and "model demo-gap has 4 classes" in both.output
    free = tmp_path / "free.keras"
    inputs = keras.Input((None, None, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inputs))
    keras.Model(inputs, keras.layers.Dense(2)(x)).save(free)
    huge = invoke(image, "--model", free, "--input-size", "100000", "-o", tmp_path / "o")
    assert huge.exit_code == 2 and "from 8 to 8192" in huge.output and "Traceback" not in huge.output
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"0": "a", "2": "c"}))
    gap = invoke(image, "--model", free, "--input-size", "32", "--labels", labels, "-o", tmp_path / "o")
    assert gap.exit_code == 2 and "without gaps; index 1 missing" in gap.output


def test_the_cli_size_limit_is_the_loaders(keras):
    from gradcam_cli import cli

    assert cli.MAX_INPUT_SIDE == loading.MAX_INPUT_SIDE



def test_compare_pins_a_failure_to_its_image(tmp_path, monkeypatch):
    folder = tmp_path / "in"
    write_image(folder / "a.png", (20, 20), seed=1)
    Image.fromarray(np.full((20, 20, 3), 255, np.uint8)).save(folder / "white.png")
    real = compute_maps

    def fails_on_white(loaded, engine, inputs, *args, **kwargs):
        if (np.asarray(inputs) >= 0.999).all(axis=(1, 2, 3)).any():
            raise FloatingPointError("a white image")
        return real(loaded, engine, inputs, *args, **kwargs)

    monkeypatch.setattr(compute, "compute_maps", fails_on_white)
    result = invoke("compare", folder, "--model", "demo-gap", "--methods", "gradcam", "-o", tmp_path / "o")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "white.png" in errors[0] and "a white image" in errors[0]
    assert (tmp_path / "o" / "a.png.compare.png").is_file() and "1 image(s) compared, 1 failed" in result.stderr
