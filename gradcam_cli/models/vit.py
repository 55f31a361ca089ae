"""Small vision transformers in the keras.io style ("Image classification with Vision
Transformer"): the layers they need, registered with Keras so that a saved model loads, and a
builder for tests and the demo transformer.

A model from `vit`: the image -> patch embedding (a Conv2D whose kernel and stride are the patch
size, or the keras.io way: cut into patches, then a Dense projection) -> a (tokens, width)
sequence with `prefix` learned tokens in front (class, distillation, registers) -> position
embeddings -> `depth` pre-norm blocks (`block{i}_norm1`, `block{i}_attn`, `block{i}_add1`,
`block{i}_norm2`, `block{i}_mlp1`, `block{i}_mlp2`, `block{i}_add2`) -> `final_norm` -> a head
reading the class token (`head="class-token"`) or the mean of the patch tokens (`"gap"`).
"""

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="gradcam_cli")
class Patches(layers.Layer):
    """Cut (B, H, W, C) images into (B, H/p * W/p, p * p * C) patches, row by row (the keras.io
    example's patch extraction, in keras.ops)."""

    def __init__(self, patch_size, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = int(patch_size)

    def call(self, images):
        p = self.patch_size
        _, height, width, channels = images.shape
        rows, cols = height // p, width // p
        x = ops.reshape(images[:, : rows * p, : cols * p], (-1, rows, p, cols, p, channels))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, rows * cols, p * p * channels))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        p = self.patch_size
        return (batch, (height // p) * (width // p), p * p * channels)

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size}


@keras.saving.register_keras_serializable(package="gradcam_cli")
class PrefixTokens(layers.Layer):
    """Put `count` learned tokens (class, distillation, registers) in front of a (B, N, D)
    sequence."""

    def __init__(self, count=1, **kwargs):
        super().__init__(**kwargs)
        self.count = int(count)

    def build(self, input_shape):
        self.tokens = self.add_weight(shape=(1, self.count, input_shape[-1]), initializer="random_normal",
                                      name="tokens")

    def call(self, x):
        tokens = ops.broadcast_to(ops.cast(self.tokens, x.dtype), (ops.shape(x)[0], self.count, x.shape[-1]))
        return ops.concatenate([tokens, x], axis=1)

    def compute_output_shape(self, input_shape):
        batch, count, width = input_shape
        return (batch, None if count is None else count + self.count, width)

    def get_config(self):
        return {**super().get_config(), "count": self.count}


@keras.saving.register_keras_serializable(package="gradcam_cli")
class PositionEmbedding(layers.Layer):
    """Add a learned (N, D) position embedding to a (B, N, D) sequence."""

    def build(self, input_shape):
        self.embedding = self.add_weight(shape=(1,) + tuple(input_shape[1:]), initializer="random_normal",
                                         name="embedding")

    def call(self, x):
        return x + ops.cast(self.embedding, x.dtype)


@keras.saving.register_keras_serializable(package="gradcam_cli")
class TakeToken(layers.Layer):
    """The token at `index` of a (B, N, D) sequence: (B, D)."""

    def __init__(self, index=0, **kwargs):
        super().__init__(**kwargs)
        self.index = int(index)

    def call(self, x):
        return x[:, self.index]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "index": self.index}


@keras.saving.register_keras_serializable(package="gradcam_cli")
class DropTokens(layers.Layer):
    """A (B, N, D) sequence without its first `count` tokens."""

    def __init__(self, count=1, **kwargs):
        super().__init__(**kwargs)
        self.count = int(count)

    def call(self, x):
        return x[:, self.count :]

    def compute_output_shape(self, input_shape):
        batch, count, width = input_shape
        return (batch, None if count is None else count - self.count, width)

    def get_config(self):
        return {**super().get_config(), "count": self.count}


HEADS = ("class-token", "gap")
EMBEDDINGS = ("conv", "dense")


def vit(input_size=(32, 32), patch_size=8, width=32, depth=3, heads=2, classes=4, prefix=1, head="class-token",
        embedding="conv", rescale=True, name="vit"):
    """A small pre-norm vision transformer (see the module's docstring). input_size: (height,
    width), each a multiple of patch_size. prefix: learned tokens in front (1: a class token, 2:
    class and distillation, 5: class and four registers); head 'class-token' needs one."""
    height, width_px = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if height % patch_size or width_px % patch_size:
        raise ValueError(f"input_size must be a multiple of patch_size. Received: {input_size}, {patch_size}")
    if head not in HEADS or embedding not in EMBEDDINGS:
        raise ValueError(f"head: one of {HEADS}; embedding: one of {EMBEDDINGS}. Received: {head!r}, {embedding!r}")
    if head == "class-token" and prefix < 1:
        raise ValueError("a class-token head needs prefix >= 1")
    inputs = keras.Input((height, width_px, 3), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescaling")(inputs) if rescale else inputs
    grid = (height // patch_size, width_px // patch_size)
    if embedding == "conv":
        x = layers.Conv2D(width, patch_size, strides=patch_size, name="patch_embedding")(x)
        x = layers.Reshape((grid[0] * grid[1], width), name="patch_tokens")(x)
    else:
        x = Patches(patch_size, name="patches")(x)
        x = layers.Dense(width, name="patch_embedding")(x)
    return keras.Model(inputs, transformer(x, depth, heads, classes, prefix, head), name=name)


def transformer(tokens, depth, heads, classes, prefix=1, head="class-token"):
    """The part of `vit` after the patch embedding, on (B, N, D) tokens: `prefix` learned
    tokens in front, position embeddings, `depth` pre-norm blocks, the final norm and the head
    (the class token's, or the mean of the patch tokens), to `classes` softmax outputs."""
    width = tokens.shape[-1]
    x = tokens
    if prefix:
        x = PrefixTokens(prefix, name="prefix_tokens")(x)
    x = PositionEmbedding(name="position_embedding")(x)
    for block in range(1, depth + 1):
        y = layers.LayerNormalization(epsilon=1e-6, name=f"block{block}_norm1")(x)
        y = layers.MultiHeadAttention(heads, width // heads, name=f"block{block}_attn")(y, y)
        x = layers.Add(name=f"block{block}_add1")([x, y])
        y = layers.LayerNormalization(epsilon=1e-6, name=f"block{block}_norm2")(x)
        y = layers.Dense(2 * width, activation="gelu", name=f"block{block}_mlp1")(y)
        y = layers.Dense(width, name=f"block{block}_mlp2")(y)
        x = layers.Add(name=f"block{block}_add2")([x, y])
    x = layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    if head == "class-token":
        x = TakeToken(0, name="class_token")(x)
    else:
        if prefix:
            x = DropTokens(prefix, name="patch_only")(x)
        x = layers.GlobalAveragePooling1D(name="gap")(x)
    return layers.Dense(classes, activation="softmax", name="predictions")(x)
