"""The methods' own options through the command and the API, each checked against the library
function it must equal: Finer-CAM's compared classes, Integrated Gradients' completeness residual,
SmoothGrad on the guided gradient, FullGrad's word on a model without biases."""

import json

import numpy as np
import pytest
from conftest import invoke_cli, set_fixed_weights, write_image
from PIL import Image

from gradcam_cli import Explainer, load_model
from gradcam_cli.errors import GradcamError
from gradcam_cli.explain.methods.input_attribution import integrated_gradients, smoothgrad
from gradcam_cli.models.preprocess import pullback


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return write_image(tmp_path_factory.mktemp("in") / "a.png", (64, 64), seed=5)


def record(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_finercam_reports_the_classes_it_compares_with(image, tmp_path):
    out = record(invoke_cli(image, "--model", "demo-gap", "--method", "finercam", "--finer-compare", "2",
                            "--finer-alpha", "0.5", "--json", "-o", tmp_path))
    entry = out["maps"][0]
    explainer = Explainer("demo-gap", "finercam")
    inputs, _ = explainer.prepare([np.asarray(Image.open(image).convert("RGB"))])
    logits = explainer.build().engine.scores(inputs)[0]
    chosen = entry["class"]
    nearest = sorted((c for c in range(len(logits)) if c != chosen), key=lambda c: (abs(logits[c] - logits[chosen]), c))
    assert entry["compared_classes"] == nearest[:2]
    assert out["finer_alpha"] == 0.5 and out["finer_compare"] == 2


def test_integrated_gradients_reports_its_completeness_residual(image, tmp_path):
    out = record(invoke_cli(image, "--model", "demo-gap", "--method", "integrated-gradients", "--steps", "8",
                            "--json", "-o", tmp_path, "--save", "raw"))
    entry = out["maps"][0]
    explainer = Explainer("demo-gap", "integrated-gradients", steps=8)
    inputs, _ = explainer.prepare([np.asarray(Image.open(image).convert("RGB"))])
    attributions, residuals = integrated_gradients(explainer.build().engine, inputs, [entry["class"]], steps=8)
    assert entry["completeness_residual"] == pytest.approx(float(residuals[0]), rel=1e-4, abs=1e-5)
    assert entry["steps"] == 8 and entry["baseline"] == "zero"
    raw = np.load(entry["outputs"]["raw"])
    assert raw.shape == (64, 64)  # the image is the input's size: the map is the attributions, at full resolution
    np.testing.assert_allclose(raw, np.maximum(attributions[0].sum(axis=-1), 0), rtol=1e-4, atol=1e-6)


def test_guided_smoothgrad_averages_the_guided_gradient(image, tmp_path):
    out = record(invoke_cli("guided", image, "--model", "demo-gap", "--smoothgrad", "4", "--noise", "0.1", "--json",
                            "-o", tmp_path, "--save", "raw"))
    entry = out["maps"][0]
    assert entry["outputs"]["gradient-raw"].endswith("a.png.guided-smoothgrad.gradient.npy")
    assert out["smoothgrad_samples"] == 4 and out["smoothgrad_noise"] == 0.1
    model = load_model("demo-gap")
    explainer = Explainer(model, "guided")
    inputs, _ = explainer.prepare([np.asarray(Image.open(image).convert("RGB"))])
    expected = pullback(smoothgrad(explainer.build().engine, inputs, [entry["class"]], 4, 0.1, backprop="guided"),
                        model.preprocess)
    np.testing.assert_allclose(np.load(entry["outputs"]["gradient-raw"]), expected[0], rtol=1e-4, atol=1e-7)
    plain = record(invoke_cli("guided", image, "--model", "demo-gap", "--json", "-o", tmp_path, "--save", "raw"))
    assert not np.allclose(np.load(plain["maps"][0]["outputs"]["gradient-raw"]), expected[0])


def test_fullgrad_says_when_the_model_has_no_bias(keras, tmp_path, image):
    layers = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", use_bias=False, name="conv")(inputs)
    outputs = layers.Dense(3, use_bias=False)(layers.GlobalAveragePooling2D()(x))
    path = tmp_path / "nobias.keras"
    set_fixed_weights(keras.Model(inputs, outputs)).save(path)
    result = invoke_cli(image, "--model", path, "--method", "fullgrad", "--json", "-o", tmp_path / "o")
    out = record(result)
    assert "warning: fullgrad: no layer has a bias: FullGrad reduces to the input-gradient term" in result.stderr
    assert out["method_warnings"] == ["no layer has a bias: FullGrad reduces to the input-gradient term"]


@pytest.mark.parametrize("options, message", [
    ({"steps": 0, "method": "integrated-gradients"}, r"steps must be at least 1. Received: steps=0"),
    ({"finer_compare": 0, "method": "finercam"}, "finer_compare must be at least 1"),
    ({"finer_compare": 2.5, "method": "finercam"}, "finer_compare must be a whole number"),
    ({"noise": -1, "method": "smoothgrad"}, "noise must be at least 0"),
    ({"noise": float("nan"), "method": "guided"}, "noise must be finite"),
    ({"samples": 0, "method": "smoothgrad"}, "samples must be at least 1"),
    ({"scorecam_baseline": "one", "method": "scorecam"}, "scorecam_baseline: choose from none, zero"),
    ({"steps": 4}, r"gradcam has no option steps \(its options: none\)"),
    ({"max_masks": 4, "method": "finercam"}, r"finercam has no option max_masks \(its options: finer_alpha, finer_compare\)"),
    ({"stepz": 4}, "Explainer has no argument 'stepz'"),
    ({"compat": "captum"}, "compat: choose from pytorch-grad-cam, tf-keras-vis"),
    ({"network": "exact", "method": "guided"}, "input gradients"),
    ({"network": "sideways"}, "unknown network"),
    ({"network": "exact", "method": "dilated"}, "dilated copy already"),
])
def test_bad_method_options_are_refused_by_name(options, message):
    options = dict(options)
    method = options.pop("method", "gradcam")
    with pytest.raises(GradcamError, match=message):
        Explainer("demo-gap", method, **options)


def test_options_come_from_the_registry_to_the_command_and_the_record(image, tmp_path):
    """One declaration feeds the flag, the API keyword, the check and the record: the command's
    --json and the API's details agree, and an option of another method is refused in one line."""
    from gradcam_cli.explain.methods import METHODS

    out = record(invoke_cli(image, "--model", "demo-gap", "--method", "scorecam", "--max-masks", "3",
                            "--scorecam-baseline", "zero", "--json", "-o", tmp_path))
    assert out["max_masks"] == 3 and out["scorecam_baseline"] == "zero"
    defaults = {"scorecam_score": "probability", "scorecam_upsample": "half-pixel"}
    assert Explainer("demo-gap", "scorecam", max_masks=3, scorecam_baseline="zero").details() == {
        "max_masks": 3, "scorecam_baseline": "zero", **defaults}
    default = Explainer("demo-gap", "scorecam")
    assert default.options == {"max_masks": None, "scorecam_baseline": METHODS["scorecam"].option(
        "scorecam_baseline").default, **defaults} and default.details() == {"scorecam_baseline": "none", **defaults}
    wrong = invoke_cli(image, "--model", "demo-gap", "--finer-alpha", "0.5", "-o", tmp_path)
    assert wrong.returncode == 2 and wrong.stderr.strip().splitlines() == [
        "Error: gradcam has no option --finer-alpha (its options: none)"]
    page = invoke_cli("methods", "finercam")
    assert page.returncode == 0 and "--finer-compare (finer_compare=): whole number, >= 1; default 3." in page.stdout
    assert "in the JSON record: finer_alpha, finer_compare" in page.stdout
