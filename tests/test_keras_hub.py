"""keras-hub models (the [hub] extra), built offline from their constructors with random
weights: ViT, DeiT, Swin, a DINOv2 backbone with registers under a Dense head, and keras-hub's
ResNet, EfficientNet and MobileNet. Their layers inside subclassed blocks are listed and
targeted, the preset's preprocessing is the classifier's `predict`'s, Grad-CAM at the default
layer equals a hand replay of the blocks, and presets load from a folder and fail offline in one
line."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

from gradcam_cli import Explainer, load_model  # noqa: E402
from gradcam_cli.errors import GradcamError  # noqa: E402


def _images(size, count=2, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]


@pytest.fixture(scope="module")
def vit(keras):
    keras.utils.set_random_seed(1)
    backbone = keras_hub.models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2,
                                            hidden_dim=32, mlp_dim=64)
    converter = keras_hub.layers.ViTImageConverter(image_size=(32, 32), scale=1 / 127.5, offset=-1.0)
    preprocessor = keras_hub.models.ViTImageClassifierPreprocessor(image_converter=converter)
    return keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=5, preprocessor=preprocessor)


def test_a_vit_classifier_is_listed_block_by_block_with_the_default_at_the_last_ln_1(vit):
    loaded = load_model(vit)
    names = [info.name for info in loaded.layers]
    backbone = vit.backbone.name
    for block in (1, 2):
        for part in ("ln_1", "mha", "ln_2", "mlp"):
            assert f"{backbone}/vit_encoder/transformer_block_{block}/{part}" in names
    assert loaded.default_layer == (backbone, "vit_encoder", "transformer_block_2", "ln_1")
    grid = loaded.grid_of(loaded.default_layer)
    assert (grid.height, grid.width, grid.prefix) == (4, 4, 1)
    # the MLP's dropout runs twice a pass: listed, not a target
    dropout = next(info for info in loaded.layers if info.name.endswith("transformer_block_1/mlp/dropout"))
    assert dropout.calls == 2 and not dropout.mappable
    with pytest.raises(GradcamError, match="is called 2 times in one forward pass .* a map needs a layer called once"):
        loaded.target_layer("transformer_block_1/mlp/dropout")


def test_the_preprocessing_is_the_classifiers_predict(vit):
    from gradcam_cli.files.images import prepare

    loaded = load_model(vit)
    rgb = _images((40, 56), 1)[0]
    inputs, boxes = prepare(loaded, [rgb])
    assert boxes == [(8, 0, 48, 40)]  # the converter's centre crop to the model's square
    np.testing.assert_allclose(vit(inputs), vit.predict(rgb[None], verbose=0), rtol=1e-5, atol=1e-5)


def test_gradcam_at_the_default_layer_equals_a_hand_replay_of_the_blocks(vit, keras):
    import tensorflow as tf

    images = _images((32, 32), 3, seed=5)
    maps = Explainer(vit, "gradcam", batch_size=2)(images, classes=[3])
    encoder = vit.backbone.get_layer("vit_encoder")
    x = tf.constant(np.stack(images).astype(np.float32) / 127.5 - 1.0)
    tokens = vit.backbone.get_layer("vit_patching_and_embedding")(x)
    for block in encoder.encoder_layers[:-1]:
        tokens = block(tokens)
    last = encoder.encoder_layers[-1]
    with tf.GradientTape() as tape:
        y = last.layer_norm_1(tokens)
        tape.watch(y)
        mixed = last.mha(y, y) + tokens
        out = mixed + last.mlp(last.layer_norm_2(mixed))
        logits = vit.get_layer("predictions")(encoder.layer_norm(out)[:, 0])
        score = tf.reduce_sum(logits[:, 3])
    np.testing.assert_allclose(logits, vit(np.stack(images).astype(np.float32) / 127.5 - 1.0), rtol=1e-5, atol=1e-5)
    gradients = tape.gradient(score, y).numpy()[:, 1:].reshape(3, 4, 4, 32)
    activations = y.numpy()[:, 1:].reshape(3, 4, 4, 32)
    want = np.maximum(np.einsum("bhwk,bk->bhw", activations, gradients.mean(axis=(1, 2))), 0)
    assert want.max() > 0
    for explanation, expected in zip(maps, want):
        np.testing.assert_allclose(explanation.small_map, expected, rtol=1e-4, atol=1e-6 * expected.max())


def _deit(keras):
    keras.utils.set_random_seed(2)
    backbone = keras_hub.models.DeiTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2,
                                             hidden_dim=32, intermediate_dim=64)
    return keras_hub.models.DeiTImageClassifier(backbone=backbone, num_classes=5)


def _swin(keras):
    keras.utils.set_random_seed(3)
    backbone = keras_hub.models.SwinTransformerBackbone(image_shape=(32, 32, 3), embed_dim=16, depths=[2, 2],
                                                        num_heads=[2, 2], window_size=4, patch_size=4)
    return keras_hub.models.SwinTransformerImageClassifier(backbone=backbone, num_classes=5)


def _dinov2(keras):
    """A DINOv2 backbone with 4 registers under a Dense head on its class token."""
    keras.utils.set_random_seed(4)
    backbone = keras_hub.models.DINOV2Backbone(patch_size=8, num_layers=2, hidden_dim=32, num_heads=2,
                                               intermediate_dim=64, num_register_tokens=4, image_shape=(32, 32, 3),
                                               position_embedding_shape=(32, 32, 3))
    inputs = keras.Input((32, 32, 3), name="image")
    tokens = backbone({"images": inputs})
    return keras.Model(inputs, keras.layers.Dense(5, name="head")(tokens[:, 0]), name="dinov2_classifier")


def _cnns(keras):
    keras.utils.set_random_seed(5)
    resnet = keras_hub.models.ResNetImageClassifier(backbone=keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        image_shape=(32, 32, 3)), num_classes=5)
    efficientnet = keras_hub.models.EfficientNetImageClassifier(backbone=keras_hub.models.EfficientNetBackbone(
        stackwise_width_coefficients=[1.0] * 2, stackwise_depth_coefficients=[1.0] * 2,
        stackwise_kernel_sizes=[3, 3], stackwise_num_repeats=[1, 1], stackwise_input_filters=[8, 8],
        stackwise_output_filters=[8, 16], stackwise_expansion_ratios=[1, 2],
        stackwise_squeeze_and_excite_ratios=[0.0, 0.25], stackwise_strides=[1, 2],
        stackwise_block_types=["fused", "unfused"], input_shape=(32, 32, 3), num_features=32), num_classes=5)
    mobilenet = keras_hub.models.MobileNetImageClassifier(backbone=keras_hub.models.MobileNetBackbone(
        stackwise_expansion=[[16], [32]], stackwise_num_blocks=[1, 1], stackwise_num_filters=[[16], [24]],
        stackwise_kernel_size=[[3], [3]], stackwise_num_strides=[[2], [2]], stackwise_se_ratio=[[None], [0.25]],
        stackwise_activation=[["relu"], ["hard_swish"]], stackwise_padding=[[1], [1]], output_num_filters=32,
        depthwise_filters=8, depthwise_stride=2, depthwise_residual=False, last_layer_filter=32,
        image_shape=(32, 32, 3)), num_classes=5, num_features=32)
    return {"resnet": resnet, "efficientnet": efficientnet, "mobilenet": mobilenet}


@pytest.mark.parametrize("kind,default,grid", [
    ("deit", "transformer_block_2/ln_1", (4, 4, 2)),
    ("swin", "blocks_1/norm1", (4, 4, 0)),
    ("dinov2", "layers_1/norm1", (4, 4, 5)),
])
def test_transformers_default_layer_grid_and_methods(keras, kind, default, grid):
    model = {"deit": _deit, "swin": _swin, "dinov2": _dinov2}[kind](keras)
    loaded = load_model(model)
    assert "/".join(loaded.default_layer).endswith(default), loaded.default_layer
    found = loaded.grid_of(loaded.default_layer)
    assert (found.height, found.width, found.prefix) == grid
    images = _images((32, 32), 2)
    methods = ("gradcam", "layercam", "eigencam") + (("rollout", "generic-attention", "legrad") if kind != "swin" else ())
    for method in methods:
        maps = Explainer(loaded, method, batch_size=2)(images)
        assert all(e.small_map.shape == grid[:2] and np.isfinite(e.small_map).all() for e in maps), method
        assert any(e.small_map.max() > 0 for e in maps), method


def test_keras_hub_cnns_keep_their_last_convolutional_layer(keras):
    images = _images((32, 32), 2)
    for name, model in _cnns(keras).items():
        loaded = load_model(model)
        info = next(info for info in loaded.layers if info.path == loaded.default_layer)
        assert info.spatial and info.grid is None and min(info.shape[:2]) > 1, (name, info)
        maps = Explainer(loaded, "gradcam", batch_size=2)(images)
        assert any(e.small_map.max() > 0 for e in maps), name


def test_a_saved_preset_through_the_command_line(vit, tmp_path):
    from PIL import Image

    vit.save_to_preset(str(tmp_path / "preset"))
    Image.fromarray(_images((48, 64), 1)[0]).save(tmp_path / "scene.png")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    run = lambda *args: subprocess.run([sys.executable, "-m", "gradcam_cli", *args], capture_output=True, text=True,
                                       env=env, cwd=tmp_path)
    listed = run("layers", "--model", f"hub:{tmp_path / 'preset'}")
    assert listed.returncode == 0, listed.stderr
    marked = [line for line in listed.stdout.splitlines() if line.startswith("*")]
    assert len(marked) == 1 and "transformer_block_2/ln_1" in marked[0] and "grid 4x4, prefix 1" in marked[0]
    assert "preprocess x*[0.007843,0.007843,0.007843]+[-1,-1,-1]" in listed.stdout.splitlines()[0]
    done = run("scene.png", "--model", f"hub:{tmp_path / 'preset'}", "--method", "rollout", "-o", "out", "--json",
               "--quiet")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.splitlines()[0])
    assert record["grid"] == [4, 4] and record["prefix_tokens"] == 1
    assert record["layer"].endswith("vit_encoder/transformer_block_2/ln_1")


def test_an_unreachable_preset_is_one_line_naming_it_and_the_cache(monkeypatch, tmp_path):
    import requests

    def offline(handle, **kwargs):
        raise requests.exceptions.ConnectionError("HTTPSConnectionPool(host='api.kaggle.com'): Max retries exceeded")

    monkeypatch.setattr(keras_hub.models.ImageClassifier, "from_preset", offline)
    monkeypatch.setattr("gradcam_cli.models.hub.reachable", lambda host: True)  # the host answers, the download fails
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kaggle"))
    with pytest.raises(GradcamError) as caught:
        load_model("hub:vit_base_patch16_224_imagenet")
    message = str(caught.value)
    assert message == ("cannot load keras-hub preset 'vit_base_patch16_224_imagenet': it is downloaded from the "
                       "network on first use, and that failed (ConnectionError); keras-hub keeps downloaded presets "
                       f"in {tmp_path / 'kaggle'}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(GradcamError, match=f"keeps downloaded presets in {tmp_path / 'hf' / 'hub'}$"):
        load_model("hf://google/vit-base-patch16-224")


def _refused_within(seconds, name):
    import time

    start = time.perf_counter()
    with pytest.raises(GradcamError) as caught:
        load_model(name)
    assert time.perf_counter() - start < seconds
    return str(caught.value)


def test_an_uncached_preset_offline_is_refused_at_once_naming_it_and_the_cache(monkeypatch, tmp_path):
    """conftest routes HTTPS through a closed port on loopback: the reachability check fails at
    once, and nothing is downloaded or retried (keras-hub's own retries took 49 s)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kaggle"))
    tried = []
    monkeypatch.setattr(keras_hub.models.ImageClassifier, "from_preset", lambda *a, **k: tried.append(a))
    assert _refused_within(5, "hf://x/y") == (
        f"cannot load keras-hub preset 'hf://x/y': it is not in keras-hub's cache ({tmp_path / 'hf' / 'hub'}) and "
        "huggingface.co cannot be reached; download it once with a network, or give a preset folder (hub:FOLDER)")
    assert _refused_within(5, "hub:vit_base_patch16_224_imagenet") == (
        "cannot load keras-hub preset 'hub:vit_base_patch16_224_imagenet': it is not in keras-hub's cache "
        f"({tmp_path / 'kaggle'}) and www.kaggle.com cannot be reached; download it once with a network, or give "
        "a preset folder (hub:FOLDER)")
    monkeypatch.setattr("gradcam_cli.models.hub.reachable", lambda host: True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the user's offline mode, whatever the network
    assert "not in keras-hub's cache" in _refused_within(5, "hf://x/y") and "HF_HUB_OFFLINE is set" in str(
        _refused_within(5, "hf://x/y"))
    assert not tried


@pytest.mark.parametrize("name", ["hub:", "hub: ", "hf://", "kaggle://"])
def test_a_preset_without_a_name_says_what_fits(name):
    assert _refused_within(5, name) == (
        "a keras-hub preset needs a name: hub:NAME (a keras-hub preset, such as hub:resnet_50_imagenet; "
        "keras_hub.models.ImageClassifier.presets lists them), hub:FOLDER (a preset saved with save_to_preset), "
        f"kaggle://OWNER/MODEL/keras/VARIANT[/VERSION] or hf://OWNER/MODEL. Received: {name!r}")


def test_a_cached_preset_loads_offline_from_the_cache_and_records_name_the_preset(vit, monkeypatch, tmp_path):
    """A preset in kagglehub's cache layout (the newest version of a built-in name's variation) and
    in Hugging Face's (refs/main -> snapshots/REVISION) loads with no network, named as given."""
    kaggle = tmp_path / "kaggle"
    vit.save_to_preset(str(kaggle / "models" / "keras" / "vit" / "keras" / "vit_base_patch16_224_imagenet" / "4"))
    hf = tmp_path / "hf"
    vit.save_to_preset(str(hf / "models--someone--tiny-vit" / "snapshots" / "abc123"))
    (hf / "models--someone--tiny-vit" / "refs").mkdir()
    (hf / "models--someone--tiny-vit" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(kaggle))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf))
    from conftest import invoke_cli
    from PIL import Image

    Image.fromarray(_images((32, 32), 1)[0]).save(tmp_path / "scene.png")
    for name in ("hub:vit_base_patch16_224_imagenet", "hf://someone/tiny-vit"):
        loaded = load_model(name)
        assert loaded.name == name and loaded.input_size == (32, 32)
        run = invoke_cli(tmp_path / "scene.png", "--model", name, "-o", tmp_path / "out", "--json", "-q")
        assert run.returncode == 0 and run.stderr == "", run.stderr
        assert json.loads(run.stdout)["model"] == name


def test_a_saved_model_with_a_keras_hub_backbone_through_the_command_line(keras, tmp_path):
    """A .keras file of a DINOv2 backbone (4 registers) under a Dense head: listed with its blocks'
    layers and the default at the last norm1 (5 prefix tokens), explained by LeGrad and Grad-CAM."""
    from PIL import Image

    _dinov2(keras).save(tmp_path / "dino.keras")
    Image.fromarray(_images((32, 32), 1)[0]).save(tmp_path / "scene.png")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    run = lambda *args: subprocess.run([sys.executable, "-m", "gradcam_cli", *args], capture_output=True, text=True,
                                       env=env, cwd=tmp_path)
    listed = run("layers", "--model", "dino.keras")
    assert listed.returncode == 0, listed.stderr
    marked = [line for line in listed.stdout.splitlines() if line.startswith("*")]
    assert len(marked) == 1 and "layers_1/norm1" in marked[0] and "grid 4x4, prefix 5" in marked[0]
    for method in ("legrad", "gradcam"):
        done = run("scene.png", "--model", "dino.keras", "--method", method, "-o", "out", "--json", "--quiet")
        assert done.returncode == 0, done.stderr
        record = json.loads(done.stdout.splitlines()[0])
        assert record["prefix_tokens"] == 5 and record["layer"].endswith("layers_1/norm1")
        assert (tmp_path / "out" / f"scene.png.{method}.heatmap.png").is_file()

