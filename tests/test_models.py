"""Model loading: registry names, weights (cache, offline message, files), user files, labels."""

import json

import numpy as np
import pytest
from conftest import gap_model, nested_model

from gradcam_cli.errors import GradcamError
from gradcam_cli.models import graph, labels, loading, registry
from gradcam_cli.models.preprocess import preprocess


def test_imagenet_labels_are_keras_names():
    names = labels.imagenet_labels()
    assert len(names) == 1000
    assert names[242] == "boxer" and names[247] == "Saint_Bernard" and names[282] == "tiger_cat"
    assert names[0] == "tench" and names[999] == "toilet_tissue"


@pytest.mark.parametrize("spec,expected", [("242", 242), ("boxer", 242), ("Saint Bernard", 247),
                                           ("tiger_cat", 282), ("TABBY", 281)])
def test_class_index_accepts_indices_and_names(spec, expected):
    assert labels.class_index(spec, labels.imagenet_labels(), 1000) == expected


@pytest.mark.parametrize("spec,message", [
    ("1000", "out of range"), ("-1", "out of range"), ("crane", "several classes"),
    ("boxerx", "not a class name"), ("dog", "not a class name"),
])
def test_class_index_errors(spec, message):
    with pytest.raises(GradcamError, match=message):
        labels.class_index(spec, labels.imagenet_labels(), 1000)


def test_label_files(tmp_path):
    (tmp_path / "l.txt").write_text("cat\n\ndog\n")
    assert labels.read_labels(tmp_path / "l.txt") == ("cat", "dog")
    (tmp_path / "l.json").write_text(json.dumps({"1": "dog", "0": "cat"}))
    assert labels.read_labels(tmp_path / "l.json") == ("cat", "dog")
    (tmp_path / "k.json").write_text(json.dumps({"0": ["n1", "cat"], "1": ["n2", "dog"]}))
    assert labels.read_labels(tmp_path / "k.json") == ("cat", "dog")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(GradcamError, match="not valid JSON"):
        labels.read_labels(tmp_path / "bad.json")
    with pytest.raises(GradcamError, match="cannot read"):
        labels.read_labels(tmp_path / "absent.txt")


@pytest.mark.parametrize("spec", registry.APPLICATIONS, ids=lambda s: s.name)
def test_preprocess_mode_matches_keras_preprocess_input(keras, spec):
    import importlib

    constructor = getattr(keras.applications, spec.constructor)
    module = importlib.import_module(constructor.__module__)
    batch = np.random.default_rng(0).uniform(0, 255, (2, 5, 7, 3)).astype("float32")
    expected = module.preprocess_input(batch.copy())
    np.testing.assert_allclose(preprocess(batch, spec.preprocess), np.asarray(expected), rtol=1e-5, atol=1e-4)


def test_registry_lookup_is_case_insensitive():
    assert registry.find("VGG16").constructor == "VGG16"
    assert registry.find("efficientnet_b0").constructor == "EfficientNetB0"
    assert registry.find("resnet-50").constructor == "ResNet50"
    assert registry.find("alexnet") is None


def test_unknown_model_is_a_usage_problem(keras):
    with pytest.raises(GradcamError, match="unknown model 'alexnet'"):
        loading.load("alexnet")


def _write_legacy_weights(model, path):
    """Write `model`'s weights in the legacy (Keras 2) .h5 layout that keras.applications ships."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def test_imagenet_weights_come_from_keras_cache(keras, tmp_path, monkeypatch):
    """Offline: a weights file with Keras's expected name in KERAS_HOME/models is used."""
    spec = registry.find("mobilenetv3small")
    reference = loading.build_application(spec, "none")
    rng = np.random.default_rng(0)
    reference.set_weights([rng.normal(0, 0.05, w.shape).astype("float32") for w in reference.get_weights()])
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    _write_legacy_weights(reference, tmp_path / "kh" / "models" / spec.weights_file)
    loaded = loading.load("MobileNetV3Small")
    for got, want in zip(loaded.model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(got, want)
    # MobileNetV3's layer names are numbered per session: compare positions
    position = lambda model, path: [p for p, _ in graph.iter_layers(model)].index(path)
    from gradcam_cli.models import target_layers

    reference_layers = target_layers.annotate(graph.describe_layers(reference, (224, 224)), (224, 224))
    assert position(loaded.model, loaded.default_layer) == position(
        reference, target_layers.default_target_layer(reference, reference_layers))
    assert loaded.head.kind == "softmax" and loaded.num_classes == 1000


def test_offline_imagenet_failure_names_the_file_and_the_way_out(keras, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    spec = registry.find("mobilenetv3small")
    with pytest.raises(GradcamError) as info:
        loading.load("mobilenetv3small")
    message = str(info.value)
    assert spec.weights_file in message and str(tmp_path / "empty" / "models") in message
    # The library names its own arguments; the command line words the same error with its options
    assert "weights='PATH'" in message and "weights='none'" in message and "--weights" not in message
    assert "\n" not in message
    from gradcam_cli.cli.base import worded

    assert "--weights PATH" in worded(info.value) and "--weights none" in worded(info.value)


def test_weights_path_and_unreadable_weights(keras, tmp_path):
    reference = loading.build_application(registry.find("mobilenetv3small"), "none")
    reference.save_weights(tmp_path / "w.weights.h5")
    loaded = loading.load("mobilenetv3small", weights=str(tmp_path / "w.weights.h5"))
    for got, want in zip(loaded.model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(got, want)
    (tmp_path / "junk.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(GradcamError, match="cannot load weights file"):
        loading.load("mobilenetv3small", weights=str(tmp_path / "junk.weights.h5"))
    with pytest.raises(GradcamError, match="does not exist"):
        loading.load("mobilenetv3small", weights=str(tmp_path / "absent.h5"))


def test_user_keras_and_legacy_h5_files_with_a_nested_base(keras, tmp_path):
    model = nested_model(keras)
    images = np.random.default_rng(1).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    expected = model.predict(images, verbose=0)
    for name in ("m.keras", "m.h5"):
        model.save(tmp_path / name)
        loaded = loading.load(str(tmp_path / name), labels_file=None)
        assert loaded.default_layer == ("base", "b_out")
        assert loaded.input_size == (32, 32) and loaded.head.kind == "softmax"
        np.testing.assert_allclose(loaded.model.predict(images, verbose=0), expected, rtol=1e-5)
        assert loaded.final_path == ("pred",) and loaded.logits_call is not None


def test_lambda_layer_needs_trust(keras, tmp_path):
    layers = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    x = layers.Conv2D(4, 3, name="conv")(x)
    out = layers.Dense(2)(layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, out).save(tmp_path / "lam.keras")
    with pytest.raises(GradcamError, match=r"trust=True"):
        loading.load(str(tmp_path / "lam.keras"))
    loaded = loading.load(str(tmp_path / "lam.keras"), trust=True)
    assert loaded.default_layer == ("conv",)


def test_free_input_size_needs_input_size(keras, tmp_path):
    layers = keras.layers
    inputs = keras.Input((None, None, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    out = layers.Dense(3)(layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, out).save(tmp_path / "free.keras")
    with pytest.raises(GradcamError, match=r"input_size=\(H, W\)"):
        loading.load(str(tmp_path / "free.keras"))
    loaded = loading.load(str(tmp_path / "free.keras"), input_size=(24, 40))
    assert loaded.input_size == (24, 40)
    assert [i.shape for i in loaded.layers if i.path == loaded.default_layer] == [(24, 40, 4)]
    from gradcam_cli.explain.engine import Engine

    result = Engine(loaded, loaded.default_layer, batch_size=1).run(np.ones((1, 24, 40, 3), "float32"), np.array([0]))
    assert result.activations.shape == (1, 24, 40, 4)


def test_labels_must_match_the_number_of_classes(keras, tmp_path):
    gap_model(keras).save(tmp_path / "g.keras")
    (tmp_path / "two.txt").write_text("a\nb\n")
    with pytest.raises(GradcamError, match="2 class names were given for a model with 3 classes"):
        loading.load(str(tmp_path / "g.keras"), labels_file=str(tmp_path / "two.txt"))


@pytest.mark.parametrize("problem,content,message", [
    ("missing", None, "does not exist"),
    ("suffix", b"x", "expected a .keras or .h5"),
    ("corrupt", b"garbage", "cannot load"),
])
def test_bad_model_files(keras, tmp_path, problem, content, message):
    path = tmp_path / ("m.onnx" if problem == "suffix" else "m.keras")
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(GradcamError, match=message):
        loading.load(str(path))


def test_target_layer_paths_and_errors(keras):
    loaded = loading.describe(nested_model(keras), "nested", (32, 32), "none", None)
    assert loaded.target_layer("b_conv2") == ("base", "b_conv2")
    assert loaded.target_layer("base/b_conv2") == ("base", "b_conv2")
    assert loaded.target_layer(None) == ("base", "b_out")
    with pytest.raises(GradcamError, match="no layer 'block9' in nested; layers a map can target: .*base/b_conv2"):
        loaded.target_layer("block9")
    with pytest.raises(GradcamError, match="output shape \\(2,\\)"):
        loaded.target_layer("pred")
    shapes = {info.name: info.shape for info in loaded.layers}
    assert shapes["base"] == (16, 16, 16) and shapes["base/b_pool"] == (16, 16, 8) and shapes["gap"] == (16,)
