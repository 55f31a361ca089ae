"""The contract every registered method keeps, run over the registry: map shapes, finite and
non-negative maps, a batch equal to its images one by one, deterministic results, an explicit
class honoured, and a nested model explained like the flat one."""

from pathlib import Path

import numpy as np
import pytest
from conftest import set_fixed_weights

from gradcam_cli import Explainer
from gradcam_cli.explain.methods import METHODS
from gradcam_cli.models import loading

SIZE = 32


def _layers(keras):
    layers = keras.layers
    return [layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Conv2D(12, 3, padding="same", activation="relu", name="conv2")]


@pytest.fixture(scope="module")
def models(keras):
    """The same weights as a flat model and as a base model nested in a Sequential; a plain
    chain with global pooling and a linear head, so that every method applies (CAM, the
    dilated copies, the guided ReLUs)."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = inputs
    for layer in _layers(keras):
        x = layer(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    flat = set_fixed_weights(keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="pred")(x)), 4, 0.3)
    base_in = keras.Input((SIZE, SIZE, 3))
    y = base_in
    for layer in _layers(keras):
        y = layer(y)
    base = keras.Model(base_in, y, name="base")
    nested = keras.Sequential([keras.Input((SIZE, SIZE, 3)), base, keras.layers.GlobalAveragePooling2D(name="gap"),
                               keras.layers.Dense(3, activation="softmax", name="pred")], name="nested")
    nested.set_weights(flat.get_weights())
    describe = lambda model: loading.describe(model, model.name, (SIZE, SIZE), "unit", ("a", "b", "c"))
    return describe(flat), describe(nested)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(3)]


# The attention methods read a transformer's attention: tests/test_transformers.py keeps their contract.
@pytest.mark.parametrize("method", [m for m, spec in METHODS.items() if not spec.reads_attention])
def test_every_method_keeps_the_contract(models, images, method):
    flat, nested = models
    explain = Explainer(flat, method=method, layer="conv2", batch_size=3)
    batch = explain(images)
    # dilated copies keep the input's size; pixel methods (FullGrad, SmoothGrad, IG) map the input itself, and
    # meta-methods (RefineCAM, SESS) give their maps at the input's size
    at_input = {"plain-input-gradients", "base-method"} & set(METHODS[method].needs)
    layer_size = SIZE if METHODS[method].network or at_input else SIZE // 2
    for e in batch:
        assert e.small_map.shape == (layer_size, layer_size) and e.map.shape == (SIZE, SIZE)
        assert np.isfinite(e.small_map).all() and (e.small_map >= 0).all()
        assert np.isfinite(e.map).all() and e.map.min() >= 0 and e.map.max() <= 1
    assert any(e.small_map.max() > 0 for e in batch)
    one_by_one = Explainer(flat, method=method, layer="conv2", batch_size=1)
    for image, together in zip(images, batch):
        alone = one_by_one([image])[0]
        assert alone.class_index == together.class_index
        np.testing.assert_allclose(together.small_map, alone.small_map, rtol=1e-4, atol=1e-6 * (1 + alone.small_map.max()))
    again = explain(images)
    for first, second in zip(batch, again):
        np.testing.assert_array_equal(first.small_map, second.small_map)
    for wanted in (0, 2):
        chosen = explain(images, classes=[wanted])
        assert [e.class_index for e in chosen] == [wanted] * 3 and all(e.tag == f"class{wanted}" for e in chosen)
    nested_maps = Explainer(nested, method=method, layer="base/conv2", batch_size=3)(images)
    for in_flat, in_nested in zip(batch, nested_maps):
        assert in_nested.class_index == in_flat.class_index
        np.testing.assert_allclose(in_nested.small_map, in_flat.small_map, rtol=1e-4,
                                   atol=1e-5 * (1 + in_flat.small_map.max()))


@pytest.mark.parametrize("method", [m for m, spec in METHODS.items() if spec.backprop is None and not spec.reads_attention])
def test_every_map_method_runs_through_the_command(tmp_path, keras, method):
    """`gradcam gradcam --method NAME --save raw` on a demo model and on a user's .keras file;
    the raw map equals the API's map for the same image."""
    from click.testing import CliRunner
    from conftest import gap_model
    from PIL import Image

    from gradcam_cli.cli import main

    user_file = tmp_path / "user.keras"
    gap_model(keras).save(user_file)
    image = tmp_path / "scene.png"
    Image.open(Path(__file__).resolve().parents[1] / "sample_images" / "synthetic_cross.png").save(image)
    for model in ("demo-vgg", str(user_file)):
        out = tmp_path / method / model.replace("/", "_")
        result = CliRunner().invoke(main, ["gradcam", str(image), "--model", model, "--method", method,
                                           "--save", "raw", "-o", str(out), "-q"])
        if method in ("cam",) and model == "demo-vgg":  # a Flatten head: refused, pointing to Grad-CAM
            assert result.exit_code == 2 and "use `gradcam gradcam`" in result.stderr
            continue
        assert result.exit_code == 0, result.output
        raw = np.load(out / f"scene.png.{method}.raw.npy")
        e = Explainer(model, method=method, batch_size=1)([image])[0]
        np.testing.assert_allclose(raw, e.map * raw.max(), rtol=1e-4, atol=1e-5 * (raw.max() + 1e-12))
