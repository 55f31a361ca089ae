"""Vision transformers: token layers read as patch grids (prefix tokens dropped, the rest
reshaped row by row), the default layer (the last block's first normalization; never the input,
preprocessing or the patch embedding), and the refusals, each one line."""

import json
import subprocess
import sys

import numpy as np
import pytest

from gradcam_cli import Explainer
from gradcam_cli.errors import GradcamError
from gradcam_cli.models import loading, tokens

NAMES = ("a", "b", "c", "d")


def _vit(keras, **kwargs):
    from gradcam_cli.models.vit import vit

    keras.utils.set_random_seed(3)
    return vit(**kwargs)


def _images(size, count=2, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]


def _hand_gradcam(keras, model, layer, head_input, images, classes, grid, rescale=1 / 255):
    """Grad-CAM by hand on TensorFlow: the logits from the head's input and the last Dense's
    weights, d logit / d tokens with a GradientTape, then drop the prefix, reshape row by row,
    weights = the gradients' spatial mean, ReLU of the weighted sum."""
    import tensorflow as tf

    tapped = keras.Model(model.input, [model.get_layer(layer).output, model.get_layer(head_input).output])
    kernel, bias = model.get_layer("predictions").get_weights()
    x = tf.constant(np.stack(images).astype(np.float32))
    with tf.GradientTape() as tape:
        tokens_out, features = tapped(x)
        logits = tf.matmul(features, kernel) + bias
        picked = tf.gather(logits, classes, axis=1, batch_dims=1)
    gradients = tape.gradient(picked, tokens_out).numpy()
    activations = tokens_out.numpy()
    height, width, prefix = grid
    if activations.ndim == 3:  # tokens: drop the prefix, rows of the grid
        activations = activations[:, prefix:].reshape(len(images), height, width, -1)
        gradients = gradients[:, prefix:].reshape(len(images), height, width, -1)
    weights = gradients.mean(axis=(1, 2))
    return np.maximum(np.einsum("bhwk,bk->bhw", activations, weights), 0)


@pytest.mark.parametrize("size,prefix,head", [((32, 48), 2, "class-token"), ((32, 32), 1, "class-token"),
                                              ((48, 32), 0, "gap"), ((32, 32), 5, "gap")])
def test_gradcam_at_a_token_layer_equals_the_hand_computation(keras, size, prefix, head):
    model = _vit(keras, input_size=size, prefix=prefix, head=head, rescale=False)
    loaded = loading.describe(model, "vit", size, "none", NAMES)
    grid = (size[0] // 8, size[1] // 8, prefix)
    info = next(info for info in loaded.layers if info.name == "block2_norm1")
    assert (info.grid.height, info.grid.width, info.grid.prefix) == grid and info.grid.source == "patch embedding"
    images = _images(size, 3)
    maps = Explainer(loaded, "gradcam", layer="block2_norm1", batch_size=2)(images, classes=[1])
    head_input = "class_token" if head == "class-token" else "gap"
    want = _hand_gradcam(keras, model, "block2_norm1", head_input, images, [1, 1, 1], grid)
    assert want.max() > 0
    for explanation, expected in zip(maps, want):
        assert explanation.small_map.shape == grid[:2]
        np.testing.assert_allclose(explanation.small_map, expected, rtol=1e-4, atol=1e-6 * expected.max())


def _swin_like(keras):
    """A Swin-style model: a 4x4 patch embedding, a stage on (B, N, C) tokens (attention, then an
    MLP), patch merging (2x2 neighbours concatenated, then a Dense) to (B, N/4, 2C) tokens, and a
    stage kept as (B, H, W, C)."""
    from keras import layers, ops

    class Merge(layers.Layer):
        def __init__(self, side, **kwargs):
            super().__init__(**kwargs)
            self.side = side

        def call(self, x):
            s, c = self.side, x.shape[-1]
            x = ops.reshape(x, (-1, s // 2, 2, s // 2, 2, c))
            x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
            return ops.reshape(x, (-1, (s // 2) ** 2, 4 * c))

        def compute_output_shape(self, shape):
            return (shape[0], (self.side // 2) ** 2, 4 * shape[-1])

    keras.utils.set_random_seed(5)
    inputs = keras.Input((32, 32, 3))
    x = layers.Conv2D(8, 4, strides=4, name="patch_embed")(inputs)
    x = layers.Reshape((64, 8), name="to_tokens")(x)
    y = layers.LayerNormalization(name="stage1_norm")(x)
    y = layers.MultiHeadAttention(2, 4, name="stage1_attn")(y, y)
    x = layers.Add(name="stage1_add")([x, y])
    x = layers.Dense(8, activation="gelu", name="stage1_mlp")(x)
    x = Merge(8, name="merge")(x)
    x = layers.Dense(16, name="merge_proj")(x)
    x = layers.LayerNormalization(name="stage2_norm")(x)
    x = layers.Reshape((4, 4, 16), name="stage2_grid")(x)
    x = layers.Conv2D(16, 1, activation="gelu", name="stage2_mlp")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, layers.Dense(4, activation="softmax", name="predictions")(x))


def test_swin_layouts_tokens_between_stages_and_grids_within(keras):
    model = _swin_like(keras)
    loaded = loading.describe(model, "swin", (32, 32), "none", NAMES)
    by_name = {info.name: info for info in loaded.layers}
    # (B, N, C) after merging: no patch-embedding grid fits 16 tokens, the input over patch size 8 does
    assert by_name["stage2_norm"].grid == tokens.TokenGrid(4, 4, 0, "input size")
    assert by_name["stage1_norm"].grid == tokens.TokenGrid(8, 8, 0, "patch embedding")
    assert by_name["stage2_grid"].spatial and by_name["stage2_grid"].grid is None  # (B, H, W, C) as it is
    images = _images((32, 32), 2)
    for layer, grid in (("stage2_norm", (4, 4, 0)), ("stage1_mlp", (8, 8, 0)), ("stage2_mlp", (4, 4, 0))):
        maps = Explainer(loaded, "gradcam", layer=layer, batch_size=2)(images, classes=[2])
        want = _hand_gradcam(keras, model, layer, "gap", images, [2, 2], grid)
        for explanation, expected in zip(maps, want):
            np.testing.assert_allclose(explanation.small_map, expected, rtol=1e-4, atol=1e-6 * expected.max())


def test_the_default_layer_is_the_last_blocks_first_normalization(keras):
    for kwargs in ({}, {"head": "gap", "prefix": 0}, {"embedding": "dense"}, {"prefix": 5, "head": "gap"}):
        model = _vit(keras, **kwargs)
        loaded = loading.describe(model, "vit", (32, 32), "none", NAMES)
        assert loaded.default_layer == ("block3_norm1",), kwargs
    # the last block's output would give a class-token head's patch tokens no gradient: a zero map
    model = _vit(keras)
    loaded = loading.describe(model, "vit", (32, 32), "none", NAMES)
    at_output = Explainer(loaded, "gradcam", layer="final_norm")(_images((32, 32), 1))[0]
    assert at_output.small_map.max() == 0
    assert Explainer(loaded, "gradcam")(_images((32, 32), 1))[0].small_map.max() > 0


def test_the_default_is_never_the_input_preprocessing_or_patch_embedding(keras):
    layers = keras.layers
    inputs = keras.Input((32, 32, 3))
    x = layers.Rescaling(1 / 255, name="scale")(inputs)
    x = layers.Conv2D(8, 8, strides=8, name="patchify")(x)
    x = layers.Flatten()(x)
    model = keras.Model(inputs, layers.Dense(3, activation="softmax")(x))
    with pytest.raises(GradcamError) as caught:
        loading.describe(model, "patchy", (32, 32), "none", NAMES[:3])
    message = str(caught.value)
    assert "no layer qualifies as the default target" in message and "scale, patchify" in message
    assert "\n" not in message
    # a CNN with a Rescaling layer keeps its last convolution
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(4, 3, name="conv")(x)
    model = keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling2D()(x)))
    assert loading.describe(model, "cnn", (32, 32), "none", NAMES[:3]).default_layer == ("conv",)


def test_grid_and_prefix_overrides_and_refusals(keras, tmp_path):
    model = _vit(keras, input_size=(32, 48), prefix=2)
    path = tmp_path / "vit.keras"
    model.save(path)
    loaded = loading.load(str(path), grid="4x6", prefix_tokens=2)
    assert loaded.grid_of(("block1_norm1",)) == tokens.TokenGrid(4, 6, 2, "given")
    with pytest.raises(GradcamError) as caught:  # 26 tokens: not 3 + a grid of the patch embedding or input
        loading.load(str(path), prefix_tokens=3)
    assert "the default layer 'block3_norm1' (the input of the last attention layer) has output shape (26, 32): " \
           "its 26 tokens are not 3 prefix token(s) + a grid of 4x6 (the patch embedding)" in str(caught.value)
    # a grid that fits one stage of a Swin-style model and not the next
    swin = loading.describe(_swin_like(keras), "swin", (32, 32), "none", NAMES, token_layout=((8, 8), None))
    assert swin.grid_of(("stage1_norm",)) == tokens.TokenGrid(8, 8, 0, "given")
    with pytest.raises(GradcamError, match=r"^layer 'stage2_norm' has output shape \(16, 16\): its 16 tokens are "
                                           r"not a 8x8 grid \(64 tokens\)$"):
        swin.target_layer("stage2_norm")
    with pytest.raises(GradcamError, match=r"its 26 tokens are not a 6x6 grid \(36 tokens\)"):
        loading.load(str(path), grid=(6, 6))
    with pytest.raises(GradcamError, match="expected a grid HxW"):
        loading.load(str(path), grid="four")
    # a 1-D output is neither spatial nor tokens
    with pytest.raises(GradcamError, match="a class activation map needs a .height, width, channels. layer, or "
                                           ".tokens, channels. tokens on a patch grid"):
        loading.load(str(path)).target_layer("class_token")


def test_cam_on_tokens_needs_the_grid_pooled_alone(keras):
    gap = loading.describe(_vit(keras, head="gap", prefix=0), "vit", (32, 32), "none", NAMES)
    images = _images((32, 32), 2)
    cam = Explainer(gap, "cam", layer="final_norm")(images, classes=[0])
    gradcam = Explainer(gap, "gradcam", layer="final_norm")(images, classes=[0])
    for a, b in zip(cam, gradcam):  # with the logit as score, Grad-CAM's weights are CAM's over h*w
        np.testing.assert_allclose(a.small_map / 16, b.small_map, rtol=1e-4, atol=1e-7)
    token = loading.describe(_vit(keras), "vit", (32, 32), "none", NAMES)
    with pytest.raises(GradcamError) as caught:
        Explainer(token, "cam")(images)
    assert "CAM needs the target layer to feed GlobalAveragePooling2D over its whole grid" in str(caught.value)


def test_the_command_line_on_a_transformer(keras, tmp_path):
    model = _vit(keras, input_size=(32, 48), prefix=2)
    path = tmp_path / "vit.keras"
    model.save(path)
    from PIL import Image

    image = tmp_path / "scene.png"
    Image.fromarray(_images((40, 60), 1)[0]).save(image)
    run = lambda *args: subprocess.run([sys.executable, "-m", "gradcam_cli", *args], capture_output=True, text=True)
    listed = run("layers", "--model", str(path))
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[1]: line for line in listed.stdout.splitlines()[1:] if line.strip()}
    assert lines["block3_norm1"].startswith("*") and "26x32  grid 4x6, prefix 2" in lines["block3_norm1"]
    done = run(str(image), "--model", str(path), "-o", str(tmp_path / "out"), "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.splitlines()[0])
    assert record["layer"] == "block3_norm1" and record["grid"] == [4, 6] and record["prefix_tokens"] == 2
    heatmap = Image.open(record["maps"][0]["outputs"]["heatmap"])
    assert heatmap.size == (60, 40)
    refused = run(str(image), "--model", str(path), "--layer", "block1_attn", "--prefix-tokens", "7", "-o",
                  str(tmp_path / "out2"))
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "its 26 tokens are not 7 prefix token(s) + a grid of 4x6" in refused.stderr
    assert "--prefix-tokens" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


# Methods refused on transformers, with what the one-line refusal says.
REFUSED = {"cam": "CAM needs the target layer to feed GlobalAveragePooling2D",
           "dilated": "dilated", "dilated-no-pooling": "dilated"}
# Random weights on LayerNorm outputs: every position may project negatively (then the map is 0).
MAY_BE_ZERO = {"randomcam"}


@pytest.fixture(scope="module")
def transformers(keras):
    vit = loading.describe(_vit(keras, input_size=(32, 48), prefix=2), "vit", (32, 48), "unit", NAMES)
    swin = loading.describe(_swin_like(keras), "swin", (32, 32), "unit", NAMES)
    return {"vit": (vit, "block3_norm1", (4, 6)), "swin": (swin, "stage2_norm", (4, 4))}


@pytest.mark.parametrize("kind", ["vit", "swin"])
@pytest.mark.parametrize("method", list(__import__("gradcam_cli.explain.methods", fromlist=["METHODS"]).METHODS))
def test_every_method_on_token_layers_keeps_the_contract_or_refuses_in_one_line(transformers, method, kind):
    from gradcam_cli.explain.methods import METHODS

    loaded, layer, grid = transformers[kind]
    size = loaded.input_size
    images = _images(size, 3, seed=4)
    explain = Explainer(loaded, method=method, layer=layer, batch_size=3)
    # this Swin-style model attends over its first stage's 64 tokens, not the target's 16
    attention = ("rollout", "generic-attention", "legrad")
    refused = dict(REFUSED, **({name: "attend over 64 tokens" for name in attention} if kind == "swin" else {}))
    if method in refused:
        with pytest.raises(GradcamError) as caught:
            explain(images)
        assert refused[method] in str(caught.value) and "\n" not in str(caught.value)
        return
    batch = explain(images)
    at_input = {"plain-input-gradients", "base-method"} & set(METHODS[method].needs)
    for e in batch:
        assert e.small_map.shape == (size if at_input else grid) and e.map.shape == size
        assert np.isfinite(e.small_map).all() and (e.small_map >= 0).all()
    assert method in MAY_BE_ZERO or any(e.small_map.max() > 0 for e in batch)
    alone = Explainer(loaded, method=method, layer=layer, batch_size=1)
    for image, together in zip(images, batch):  # attention's softmax in float32: batch and single differ more
        single = alone([image])[0]
        assert single.class_index == together.class_index
        np.testing.assert_allclose(together.small_map, single.small_map, rtol=1e-3,
                                   atol=1e-5 * (1 + single.small_map.max()))


def test_the_readme_transformer_example_runs_as_written(tmp_path):
    """The README's `<!-- vit-example -->` block, run in a scratch folder holding the sample images:
    the python line writes vit.keras, `gradcam layers` marks block3_norm1 with its grid, and each
    map command writes a heatmap of the circle scene at its size."""
    import os
    import shlex
    from pathlib import Path

    from PIL import Image

    repo = Path(__file__).resolve().parents[1]
    lines = (repo / "README.md").read_text().splitlines()
    start = lines.index("<!-- vit-example -->") + 1
    block = []
    for line in lines[start:]:
        if line.strip() and not line.startswith("    "):
            break
        if line.strip():
            block.append(line[4:])
    assert block[0].startswith("python -c") and sum(line.startswith("gradcam ") for line in block) == 5
    (tmp_path / "sample_images").symlink_to(repo / "sample_images")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    outputs = []
    for line in block:
        words = shlex.split(line, comments=True)
        if words[0] == "python":
            words[0] = sys.executable
        else:
            words = [sys.executable, "-m", "gradcam_cli", *words[1:]]
        done = subprocess.run(words, cwd=tmp_path, capture_output=True, text=True, env=env)
        assert done.returncode == 0, f"{line}\n{done.stderr}"
        outputs.append(done.stdout)
    listed = [line for line in outputs[1].splitlines() if line.startswith("*")]
    assert len(listed) == 1 and "block3_norm1" in listed[0] and "grid 4x6, prefix 2" in listed[0]
    record = json.loads(outputs[2].splitlines()[0])
    assert record["grid"] == [4, 6] and record["prefix_tokens"] == 2
    for method in ("gradcam", "rollout", "generic-attention", "legrad"):
        heatmap = Image.open(tmp_path / "out" / "vit" / f"synthetic_circle.png.{method}.heatmap.png")
        assert heatmap.size == (192, 192)  # the image's own size


def test_compare_and_the_report_on_the_demo_transformer(tmp_path):
    """`compare` draws the attention methods beside Grad-CAM on demo-vit (its default columns are
    those that apply: CAM and the dilated copies do not); `--report` pages a transformer's run."""
    from pathlib import Path

    from conftest import invoke_cli
    from PIL import Image
    from test_report import page_data

    image = Path(__file__).resolve().parents[1] / "sample_images" / "synthetic_two_circle_triangle.png"
    drawn = invoke_cli("compare", image, "--model", "demo-vit", "--methods", "gradcam,rollout,generic-attention,legrad",
                       "-o", tmp_path / "cmp", "--json")
    assert drawn.returncode == 0, drawn.stderr
    record = json.loads(drawn.stdout.splitlines()[0])
    cells = [cell for row in record["rows"] for cell in row["cells"]]
    assert [cell["method"] for cell in cells] == ["gradcam", "rollout", "generic-attention", "legrad"]
    assert all(cell["layer"] == "block4_norm1" for cell in cells)
    figure = Image.open(tmp_path / "cmp" / "synthetic_two_circle_triangle.png.compare.png")
    assert figure.width > 3.5 * figure.height  # the image and four cells side by side, captions below
    default = invoke_cli("compare", image, "--model", "demo-vit", "-o", tmp_path / "cmp2", "--json")
    assert default.returncode == 0, default.stderr
    shown = [cell["method"] for row in json.loads(default.stdout.splitlines()[0])["rows"] for cell in row["cells"]]
    assert "cam" not in shown and "dilated" not in shown and shown[0] == "gradcam"
    paged = invoke_cli(image, "--model", "demo-vit", "--method", "rollout", "-o", tmp_path / "out", "--report",
                       tmp_path / "page")
    assert paged.returncode == 0, paged.stderr
    data = page_data(tmp_path / "page" / "index.html")
    (entry,) = data["images"]
    assert entry["maps"] and "rollout" in json.dumps(data)


def test_ablationcam_at_a_token_layer_runs_the_whole_model(keras):
    """At block3_norm1 the graph cannot be cut (block3's residual reads from below; two prefix
    tokens): each channel k of the patch tokens is zeroed as the whole model runs. By hand: the
    rest of the model run from block3's input with norm1's patch tokens' channel k set to 0, the
    logits from the class token, w_k = (y_c - y_c^k) / |y_c|."""
    import tensorflow as tf

    model = _vit(keras, input_size=(32, 48), prefix=2, width=16, heads=2, rescale=False)
    loaded = loading.describe(model, "vit", (32, 48), "none", NAMES)
    images = _images((32, 48), 2, seed=8)
    from gradcam_cli.explain.engine import Engine
    from gradcam_cli.explain.methods import Context, ablationcam

    inputs = np.stack(images).astype(np.float32)
    result = Engine(loaded, ("block3_norm1",), batch_size=2).run(inputs, np.array([1, 1]), needs=("activations",))
    ours = ablationcam.channel_weights(result, Context(options=ablationcam.METHOD.values()))
    below = keras.Model(model.input, model.get_layer("block2_add2").output)
    kernel, bias = model.get_layer("predictions").get_weights()
    layer = model.get_layer
    x = below(inputs)
    tokens = layer("block3_norm1")(x)

    def logits(y):
        z = x + layer("block3_attn")(y, y)
        z = z + layer("block3_mlp2")(layer("block3_mlp1")(layer("block3_norm2")(z)))
        return (tf.matmul(layer("final_norm")(z)[:, 0], kernel) + bias).numpy()

    base = logits(tokens)[:, 1]
    weights = np.zeros((2, 16))
    for k in range(16):
        mask = np.ones((1, 26, 16), np.float32)
        mask[:, 2:, k] = 0
        weights[:, k] = (base - logits(tokens * mask)[:, 1]) / np.abs(base)
    assert np.abs(weights).max() > 0
    np.testing.assert_allclose(ours, weights, rtol=1e-3, atol=1e-4 * np.abs(weights).max())
    np.testing.assert_allclose(result.activations, tokens.numpy()[:, 2:].reshape(2, 4, 6, 16), rtol=1e-5, atol=1e-5)
    maps = Explainer(loaded, "ablationcam", layer="block3_norm1", batch_size=2)(images, classes=[1])
    want = np.maximum(np.einsum("bhwk,bk->bhw", result.activations, weights), 0)
    for explanation, expected in zip(maps, want):
        np.testing.assert_allclose(explanation.small_map, expected, rtol=1e-3, atol=1e-4 * (np.abs(weights).max()))


def test_a_cnns_reshaped_features_are_no_patch_grid_unless_told(keras):
    """A CNN without attention that reshapes its last features to (16, 256): its default stays the
    convolution, the reshaped layer is refused without --grid / --prefix-tokens, read with them."""
    layers = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(16, 3, padding="same", name="conv")(inputs)
    x = layers.Reshape((16, 256), name="rows")(x)
    x = layers.Dense(8, name="seq_dense")(x)
    model = keras.Model(inputs, layers.Dense(3)(layers.GlobalAveragePooling1D()(x)))
    loaded = loading.describe(model, "cnn", (16, 16), "none", NAMES[:3])
    assert loaded.default_layer == ("conv",) and loaded.grid_of(("seq_dense",)) is None
    with pytest.raises(GradcamError, match="a model without attention layers has its tokens read as a patch grid "
                                           "only when told so"):
        loaded.target_layer("seq_dense")
    told = loading.describe(model, "cnn", (16, 16), "none", NAMES[:3], token_layout=((4, 4), 0))
    assert told.grid_of(("seq_dense",)) == tokens.TokenGrid(4, 4, 0, "given") and told.default_layer == ("conv",)
