"""Video transformers (ViViT's tubelets, Arnab et al. 2021, "ViViT: A Video Vision Transformer"): a
clip (T, H, W, 3) cut by a Conv3D of stride (t, p, p) into t' x h' x w' tokens after a class token. Their
token layers read as (t', h', w', channels) grids, time slowest (models/tokens.py), so Grad-CAM maps
them as a Conv3D layer's: a (t', h', w') map, upsampled trilinearly to the clip. Also a (2+1)-D
convolutional video model (Tran et al. 2018, "A Closer Look at Spatiotemporal Convolutions"). Each map
is computed here by hand: numpy, and TensorFlow's GradientTape for the gradients."""

import numpy as np
import pytest

from gradcam_cli.errors import GradcamError
from gradcam_cli.explain import maps

CLIP = (8, 16, 16)  # (T, H, W), 3 colours
TUBELET = (2, 4, 4)
GRID = (4, 4, 4)  # (t', h', w')
WIDTH = 16


def tiny_vivit(keras, head="class-token", depth=2, seed=5):
    """(8, 16, 16, 3) -> Conv3D 'tubelet_embedding' (kernel = stride = (2, 4, 4)) (4, 4, 4, 16) ->
    'tubelet_tokens' (64, 16) -> a class token in front, position embeddings -> `depth` pre-norm blocks
    (keras.layers.MultiHeadAttention, LayerNormalization, a GELU MLP) -> 'final_norm' -> the class token's
    features ('take_class'), or the mean of the patch tokens ('gap') -> Dense(3, softmax) 'predictions'.
    Random weights drawn from `seed`."""
    from gradcam_cli.models.vit import DropTokens, PositionEmbedding, PrefixTokens, TakeToken

    layers = keras.layers
    inputs = keras.Input(CLIP + (3,), name="clip")
    x = layers.Conv3D(WIDTH, TUBELET, strides=TUBELET, name="tubelet_embedding")(inputs)
    x = layers.Reshape((int(np.prod(GRID)), WIDTH), name="tubelet_tokens")(x)
    x = PrefixTokens(1, name="class_token")(x)
    x = PositionEmbedding(name="position_embedding")(x)
    for block in range(1, depth + 1):
        y = layers.LayerNormalization(epsilon=1e-6, name=f"block{block}_norm1")(x)
        y = layers.MultiHeadAttention(2, WIDTH // 2, name=f"block{block}_attn")(y, y)
        x = layers.Add(name=f"block{block}_add1")([x, y])
        y = layers.LayerNormalization(epsilon=1e-6, name=f"block{block}_norm2")(x)
        y = layers.Dense(2 * WIDTH, activation="gelu", name=f"block{block}_mlp1")(y)
        y = layers.Dense(WIDTH, name=f"block{block}_mlp2")(y)
        x = layers.Add(name=f"block{block}_add2")([x, y])
    x = layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    if head == "class-token":
        x = TakeToken(0, name="take_class")(x)
    else:
        x = layers.GlobalAveragePooling1D(name="gap")(DropTokens(1, name="patch_only")(x))
    outputs = layers.Dense(3, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name=f"tiny_vivit_{head}")
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model


def tiny_r2plus1d(keras, seed=10):
    """(8, 16, 16, 3) -> Conv3D(4, (1, 3, 3)) 'spatial1' (2-D in space) -> Conv3D(4, (3, 1, 1)) 'temporal1'
    (1-D in time) -> ReLU 'relu1' -> the same again with stride 2 ('spatial2' (1, 2, 2), 'temporal2' (2, 1, 1),
    'relu2': (4, 8, 8, 6)) -> GlobalAveragePooling3D -> Dense(3, softmax) 'predictions'."""
    layers = keras.layers
    inputs = keras.Input(CLIP + (3,), name="clip")
    x = layers.Conv3D(4, (1, 3, 3), padding="same", name="spatial1")(inputs)
    x = layers.Conv3D(4, (3, 1, 1), padding="same", name="temporal1")(x)
    x = layers.ReLU(name="relu1")(x)
    x = layers.Conv3D(6, (1, 3, 3), strides=(1, 2, 2), padding="same", name="spatial2")(x)
    x = layers.Conv3D(6, (3, 1, 1), strides=(2, 1, 1), padding="same", name="temporal2")(x)
    x = layers.ReLU(name="relu2")(x)
    x = layers.GlobalAveragePooling3D(name="gap")(x)
    outputs = layers.Dense(3, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="tiny_r2plus1d")
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.05, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model


def clips(count=2, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.0, 1.0, CLIP + (3,)).astype(np.float32) for _ in range(count)]


def described(model):
    from gradcam_cli.models import loading

    return loading.describe(model, model.name, CLIP, "none", None)


def hand_gradcam(keras, model, layer, head_input, batch, classes, prefix):
    """Grad-CAM by hand: `layer`'s output and the head's input from a keras.Model of the two, the class
    logits from the last Dense's weights, d logit / d output with a GradientTape; a token layer's prefix
    dropped and the rest reshaped row-major to (t', h', w', K); weights = the gradients' mean over the
    grid; ReLU of the weighted sum. Returns (B, t', h', w') float64."""
    import tensorflow as tf

    tapped = keras.Model(model.input, [model.get_layer(layer).output, model.get_layer(head_input).output])
    kernel, bias = model.get_layer("predictions").get_weights()
    with tf.GradientTape() as tape:
        out, features = tapped(tf.constant(np.stack(batch)))
        logits = tf.matmul(features, kernel) + bias
        picked = tf.gather(logits, classes, axis=1, batch_dims=1)
    activations = out.numpy().astype(np.float64)
    gradients = tape.gradient(picked, out).numpy().astype(np.float64)
    if activations.ndim == 3:  # tokens (B, prefix + t' h' w', K)
        activations = activations[:, prefix:].reshape((len(batch),) + GRID + (-1,))
        gradients = gradients[:, prefix:].reshape((len(batch),) + GRID + (-1,))
    weights = gradients.mean(axis=(1, 2, 3))
    return np.maximum(np.einsum("bthwk,bk->bthw", activations, weights), 0.0)


def explained(loaded, batch, layer=None, method="gradcam", classes=None):
    from gradcam_cli import Explainer

    return Explainer(loaded, method=method, layer=layer, batch_size=2).maps(list(batch), classes)


@pytest.fixture(scope="module")
def vivit(keras):
    model = tiny_vivit(keras)
    return model, described(model)


def test_the_token_layers_read_as_a_time_height_width_grid(vivit):
    model, loaded = vivit
    by_name = {info.name: info for info in loaded.layers}
    for name in ("block1_norm1", "block2_add2", "final_norm"):
        grid = by_name[name].grid
        assert grid.sides == GRID and grid.prefix == 1 and grid.frames == 4 and grid.source == "patch embedding"
        assert by_name[name].map_shape == GRID + (WIDTH,) and by_name[name].mappable
    assert by_name["block1_mlp1"].map_shape == GRID + (2 * WIDTH,)
    assert by_name["tubelet_tokens"].grid.sides == GRID and by_name["tubelet_tokens"].grid.prefix == 0
    assert by_name["final_norm"].grid.as_record() == {"grid": [4, 4, 4], "prefix_tokens": 1}
    assert by_name["final_norm"].grid.describe() == "4x4x4+1"
    # the default, as a ViT's: the input of the last attention layer, never the Conv3D tubelet embedding
    assert loaded.default_layer == ("block2_norm1",)


def test_the_grid_rows_are_time_then_height_then_width(keras):
    """Token 1 + (i h' w' + j w' + k) is cell (i, j, k): a Conv3D output reshaped row-major."""
    from keras import ops

    from gradcam_cli.models.tokens import TokenGrid

    grid = TokenGrid(3, 5, 1, frames=2)
    volume = np.arange(2 * 3 * 5 * 4, dtype=np.float32).reshape(1, 2, 3, 5, 4)
    sequence = np.concatenate([np.full((1, 1, 4), -1.0, np.float32), volume.reshape(1, 30, 4)], axis=1)
    read = ops.convert_to_numpy(grid.to_grid(ops.convert_to_tensor(sequence)))
    np.testing.assert_array_equal(read, volume)
    assert read[0, 1, 2, 3, 0] == sequence[0, 1 + 1 * 15 + 2 * 5 + 3, 0]
    back = ops.convert_to_numpy(grid.to_tokens(ops.convert_to_tensor(read), ops.convert_to_tensor(sequence)))
    np.testing.assert_array_equal(back, sequence)


@pytest.mark.parametrize("head, layer, head_input", [("gap", "block2_add2", "gap"),
                                                     ("class-token", "block2_norm1", "take_class"),
                                                     ("class-token", None, "take_class")])
def test_gradcam_of_a_token_layer_equals_the_hand_computation(keras, head, layer, head_input):
    """The last block's output under a head reading the mean of the patch tokens, and the default
    (block2_norm1) under a class-token head (whose patch tokens at the last block's output get no
    gradient). Maps (t', h', w'), then upsampled trilinearly to the clip (explain/maps.resize_volume)."""
    model = tiny_vivit(keras, head=head)
    loaded = described(model)
    batch = clips(3)
    found = explained(loaded, batch, layer=layer, classes=[1, 2, 0])
    want = hand_gradcam(keras, model, layer or "block2_norm1", head_input, batch, [1, 2, 0], prefix=1)
    assert found.batch.small_maps.shape == (3,) + GRID and want.max() > 0
    np.testing.assert_allclose(found.batch.small_maps, want, rtol=1e-4, atol=1e-5 * want.max())
    for i in range(3):
        assert np.corrcoef(found.batch.small_maps[i].ravel(), want[i].ravel())[0, 1] > 0.999
        on_clip = found.on_image(i)
        assert on_clip.shape == CLIP
        upsampled = maps.resize_volume(want[i], CLIP)
        expected = upsampled / upsampled.max()  # explain/maps.normalise: by the peak
        np.testing.assert_allclose(on_clip, expected, atol=1e-4)


def test_a_batch_gives_each_clip_its_own_map(vivit):
    model, loaded = vivit
    batch = clips(2, seed=4)
    together = explained(loaded, batch, layer="block1_add2").batch.small_maps
    for i, clip in enumerate(batch):
        alone = explained(loaded, [clip], layer="block1_add2").batch.small_maps[0]
        np.testing.assert_allclose(together[i], alone, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["rollout", "generic-attention", "legrad"])
def test_the_attention_methods_refuse_a_video_transformer_in_one_line(vivit, method):
    model, loaded = vivit
    with pytest.raises(GradcamError) as error:
        explained(loaded, clips(1), method=method)
    assert "\n" not in str(error.value) and "does not take volumes" in str(error.value)


def test_reading_attention_on_a_tubelet_grid_is_refused_in_one_line(vivit):
    from gradcam_cli.explain.attention import check_applies

    model, loaded = vivit
    with pytest.raises(ValueError, match="4x4x4\\+1 grid of tubelets") as error:
        check_applies(loaded, loaded.default_layer)
    assert "\n" not in str(error.value)


def test_a_given_grid_takes_three_sides(keras, vivit):
    from gradcam_cli.models import loading, target_layers

    model, _ = vivit
    layers = loading.graph.describe_layers(model, CLIP, 3)
    given = {info.name: info.grid for info in target_layers.annotate(layers, CLIP, (4, 4, 4), 1)}
    assert given["final_norm"].sides == GRID and given["final_norm"].source == "given"
    with pytest.raises(ValueError, match="TxHxW grid .*Received: 8x8"):
        loading.tokens.read_grid(65, CLIP, GRID, grid=(8, 8))
    with pytest.raises(ValueError, match="are not a 4x4x5 grid"):
        loading.tokens.read_grid(65, CLIP, GRID, grid=(4, 4, 5))


def test_without_an_embedding_a_clip_grid_must_be_unambiguous():
    from gradcam_cli.models.tokens import read_grid

    # 64 + 1 tokens of an (8, 16, 16) clip: tubelets (2, 4, 4) -> 4x4x4 or (8, 2, 2) -> 1x8x8
    with pytest.raises(ValueError, match="4x4x4 or a 1x8x8 grid"):
        read_grid(65, CLIP)
    # 2 * 4 * 4 + 1 of a (6, 16, 16) clip: only tubelets (3, 4, 4)
    found = read_grid(33, (6, 16, 16))
    assert found.sides == (2, 4, 4) and found.prefix == 1 and found.source == "input size"
    assert read_grid(65, CLIP, grid=GRID).sides == GRID


def test_grids_parse_with_two_or_three_sides():
    from gradcam_cli import numbers
    from gradcam_cli.models.tokens import parse_grid

    assert parse_grid("4x14x14") == (4, 14, 14) and parse_grid("14X16") == (14, 16) and parse_grid("2,3,4") == (2, 3, 4)
    assert parse_grid((4, 4, 4)) == (4, 4, 4) and parse_grid([7, 7]) == (7, 7)
    for bad, message in (("4x4x4x4", "TxHxW"), ("0x4x4", "positive"), ("4x\u0664x4", "digits 0-9"), ("4", "TxHxW"),
                         ((4, 0, 4), "positive whole"), ((4,), "positive whole"), ((True, 4), "positive whole")):
        with pytest.raises(ValueError, match=message):
            parse_grid(bad)
    with pytest.raises(ValueError, match="in the digits 0-9"):
        numbers.grid("7x7x7")  # the 2-D rule is unchanged


def test_an_image_transformer_refuses_a_three_sided_grid(keras):
    from gradcam_cli.models.tokens import read_grid

    with pytest.raises(ValueError, match="takes images .*HxW grid.*Received: 2x4x4"):
        read_grid(17, (32, 32), (4, 4), grid=(2, 4, 4))
    assert read_grid(17, (32, 32), (4, 4)).sides == (4, 4) and read_grid(17, (32, 32), (4, 4)).frames is None


def test_gradcam_of_a_2plus1d_video_model_equals_the_hand_computation(keras):
    """A (2+1)-D model: its 'relu2' (4, 8, 8, 6) map by hand, and the map back at the clip's (T, H, W)."""
    model = tiny_r2plus1d(keras)
    loaded = described(model)
    assert loaded.default_layer == ("relu2",)
    batch = clips(2, seed=2)
    found = explained(loaded, batch)  # each clip's top class
    want = hand_gradcam(keras, model, "relu2", "gap", batch, found.classes, prefix=0)
    assert found.batch.small_maps.shape == (2, 4, 8, 8) and want.max(axis=(1, 2, 3)).min() > 0
    np.testing.assert_allclose(found.batch.small_maps, want, rtol=1e-4, atol=1e-5 * want.max())
    for i in range(2):
        upsampled = maps.resize_volume(want[i], CLIP)
        expected = upsampled / upsampled.max()  # explain/maps.normalise: by the peak
        assert found.on_image(i).shape == CLIP
        np.testing.assert_allclose(found.on_image(i), expected, atol=1e-4)


def test_a_clip_of_another_size_gets_its_map_at_its_own_size(vivit):
    """A clip (10, 20, 24) is resized trilinearly to the model's (8, 16, 16); its map comes back at (10, 20, 24)."""
    model, loaded = vivit
    clip = np.random.default_rng(8).uniform(0.0, 1.0, (10, 20, 24, 3)).astype(np.float32)
    found = explained(loaded, [clip], layer="block1_add2")
    assert found.batch.small_maps.shape == (1,) + GRID
    heat = found.on_image(0)
    assert heat.shape == (10, 20, 24)
    small = found.batch.small_maps[0]
    np.testing.assert_allclose(heat, maps.resize_volume(small, (10, 20, 24)) / small.max(), atol=1e-5)


QUICK = {"smoothgrad": {"samples": 2}, "integrated-gradients": {"steps": 4}, "scorecam": {"max_masks": 4},
         "ablationcam": {"max_masks": 4}}


def _methods():
    from gradcam_cli.explain.methods import METHODS

    return list(METHODS)


@pytest.mark.slow
@pytest.mark.parametrize("name", _methods())
def test_every_method_maps_a_video_transformer_or_says_why_not(vivit, name):
    """Every method that takes volumes gives a (t', h', w') map of the tubelet grid (a backprop method its
    clip-sized saliency); the others refuse in one line."""
    from gradcam_cli import Explainer
    from gradcam_cli.explain.methods import METHODS

    model, loaded = vivit
    clip = clips(1, seed=6)
    if not METHODS[name].volumes:
        with pytest.raises(GradcamError) as error:
            Explainer(loaded, method=name).maps(clip)
        assert "\n" not in str(error.value) and str(error.value).startswith(f"{name} does not take volumes")
        return
    if name == "cam":  # CAM needs a global pooling and one linear layer above the map; a class token is neither
        with pytest.raises(GradcamError, match="CAM needs the target layer to feed GlobalAveragePooling") as error:
            Explainer(loaded, method=name).maps(clip)
        assert "\n" not in str(error.value)
        return
    found = Explainer(loaded, method=name, **QUICK.get(name, {})).maps(clip)
    heat = found.on_image(0)
    assert heat.shape == CLIP and np.isfinite(heat).all() and 0.0 <= heat.min() and heat.max() <= 1.0
    assert found.batch.small_maps.shape[1:] in (GRID, CLIP)


def test_a_saved_video_transformer_loads_with_a_given_grid(keras, vivit, tmp_path):
    """load_model(path, grid='4x4x4' or (4, 4, 4)) reads its tokens on that grid; an HxW grid is refused in one line."""
    from gradcam_cli.api import load_model
    from gradcam_cli.errors import ModelError

    model, _ = vivit
    path = tmp_path / "vivit.keras"
    model.save(path)
    for grid in ("4x4x4", (4, 4, 4)):
        loaded = load_model(str(path), grid=grid)
        assert loaded.input_size == CLIP and loaded.default_layer == ("block2_norm1",)
        found = loaded.grid_of(loaded.default_layer)
        assert found.sides == GRID and found.prefix == 1 and found.source == "given"
    with pytest.raises(ModelError, match="TxHxW grid.*Received: 8x8") as error:
        load_model(str(path), grid="8x8")
    assert "\n" not in str(error.value)
