"""The two small demo classifiers shipped with the package, trained on `gradcam_cli.evaluate.scenes`
scenes by scripts/train_demo_models.py (`make demo-models`).

demo-vgg: VGG-shaped (conv-conv-pool blocks, Flatten, Dense head), for Grad-CAM and dilated VGG.
demo-gap: ends in GlobalAveragePooling2D then Dense, so CAM applies.
demo-vit: a hybrid vision transformer: demo-gap's convolution blocks, then 2x2 patches of their
features (an 8x8 grid), a class token and 4 transformer blocks (models/vit.py).
demo-unet: a small U-Net segmenter (Ronneberger et al. 2015, "U-Net: Convolutional Networks for
Biomedical Image Segmentation"): per pixel, background or one of the four shapes.
Each takes 64x64 RGB scaled to 0..1 (preprocess 'unit'); the classifiers output 4 class
probabilities, demo-unet a (64, 64, 5) map of them.
demo-volume: a small 3-D classifier of synthetic scans (gradcam_cli.evaluate.volume_scenes), in the
style of keras.io's "3D image classification from CT scans": Conv3D blocks with max pooling, a last
Conv3D block, GlobalAveragePooling3D and Dense, so CAM applies. It takes a (32, 32, 24, 1) volume as
stored (preprocess 'none') and outputs 2 class probabilities (sphere, cube).
demo-clip and demo-clip-frames: two small video classifiers of synthetic clips
(gradcam_cli.evaluate.clip_scenes: two squares in noise, one of them moving or not). Each takes an
(8, 32, 32, 3) clip, T x H x W x RGB, scaled to 0..1 (preprocess 'unit', as the image demos) and
outputs 2 class probabilities (still, moving). demo-clip is a Conv3D network; demo-clip-frames one of
TimeDistributed 2-D convolutions on each frame's difference from the clip's mean frame (its background).

They (demo-vit excepted) train with batch normalisation after each convolution (`batch_norm=True`), which is then
folded into the convolutions (`fold_batch_norm`), so the shipped networks are plain
convolution / ReLU / pooling / dense stacks computing the same function.
"""

import keras
import numpy as np
from keras import layers

GAP_WIDTHS = (16, 32, 64)
VGG_WIDTHS = (16, 32, 64, 64)


def _check(input_size, classes):
    if int(input_size) < 16:
        raise ValueError(f"input_size must be at least 16. Received: input_size={input_size}")
    if int(classes) < 2:
        raise ValueError(f"classes must be at least 2. Received: classes={classes}")


def _conv(x, width, name, batch_norm):
    if not batch_norm:
        return layers.Conv2D(width, 3, padding="same", activation="relu", name=name)(x)
    x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _blocks(inputs, widths, batch_norm, pool_last):
    x = inputs
    for block, width in enumerate(widths, start=1):
        x = _conv(x, width, f"block{block}_conv1", batch_norm)
        x = _conv(x, width, f"block{block}_conv2", batch_norm)
        if pool_last or block < len(widths):
            x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    return x


def demo_vgg(input_size=64, classes=4, batch_norm=False):
    """Four VGG blocks (two 3x3 convolutions with ReLU, 2x2 max pooling), Flatten, fc1,
    predictions. Target layer: block4_conv2 (8x8 for 64x64 inputs)."""
    _check(input_size, classes)
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Flatten(name="flatten")(_blocks(inputs, VGG_WIDTHS, batch_norm, pool_last=True))
    x = layers.Dense(64, activation="relu", name="fc1")(x)
    x = layers.Dropout(0.3, name="fc1_dropout")(x)
    outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="demo_vgg")


def demo_gap(input_size=64, classes=4, batch_norm=False):
    """Conv blocks (the last without pooling), GlobalAveragePooling2D, predictions.
    Target layer: block3_conv2 (16x16 for 64x64 inputs)."""
    _check(input_size, classes)
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.GlobalAveragePooling2D(name="gap")(_blocks(inputs, GAP_WIDTHS, batch_norm, pool_last=False))
    outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="demo_gap")


def demo_vit(input_size=64, classes=4, batch_norm=False):
    """A hybrid vision transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words", Sec.
    3.1: the patches are cut from a CNN's feature map): demo-gap's three convolution blocks (16x16
    for 64x64 inputs), a 2x2 patch embedding (an 8x8 grid of width 64), a class token, 4 pre-norm
    blocks of 4 heads (models.vit.transformer), the class token's head. Target layer:
    block4_norm1. A plain ViT does not learn these scenes from 8,000 images; on demo-gap's trained
    features this one does (scripts/train_demo_models.py starts from them)."""
    from gradcam_cli.models.vit import transformer

    _check(input_size, classes)
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = _blocks(inputs, GAP_WIDTHS, batch_norm, pool_last=False)
    x = layers.Conv2D(64, 2, strides=2, name="patch_embedding")(x)
    side = input_size // 8
    x = layers.Reshape((side * side, 64), name="patch_tokens")(x)
    return keras.Model(inputs, transformer(x, depth=4, heads=4, classes=classes), name="demo_vit")


UNET_WIDTHS = (16, 32, 64)


def demo_unet(input_size=64, classes=5, batch_norm=False):
    """A U-Net: three encoder blocks (two 3x3 convolutions, 2x2 max pooling), a bottleneck of two
    convolutions at 1/8 of the input (8x8 for 64x64 inputs), three decoder blocks (2x upsampling,
    the encoder block's features concatenated, two convolutions), a 1x1 convolution with a
    softmax over `classes` per pixel. Target layer: bottleneck_conv2, the coarsest."""
    _check(input_size, classes)
    if int(input_size) % 8:
        raise ValueError(f"input_size must be a multiple of 8. Received: input_size={input_size}")
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x, skips = inputs, []
    for block, width in enumerate(UNET_WIDTHS, start=1):
        x = _conv(_conv(x, width, f"down{block}_conv1", batch_norm), width, f"down{block}_conv2", batch_norm)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"down{block}_pool")(x)
    x = _conv(_conv(x, UNET_WIDTHS[-1], "bottleneck_conv1", batch_norm), UNET_WIDTHS[-1], "bottleneck_conv2",
              batch_norm)
    for block, (width, skip) in enumerate(zip(reversed(UNET_WIDTHS), reversed(skips)), start=1):
        x = layers.UpSampling2D(2, name=f"up{block}_upsample")(x)
        x = layers.Concatenate(name=f"up{block}_concat")([x, skip])
        x = _conv(_conv(x, width, f"up{block}_conv1", batch_norm), width, f"up{block}_conv2", batch_norm)
    outputs = layers.Conv2D(classes, 1, activation="softmax", name="segmentation")(x)
    return keras.Model(inputs, outputs, name="demo_unet")


VOLUME_WIDTHS = (8, 16, 32)


def _conv3d(x, width, name, batch_norm):
    if not batch_norm:
        return layers.Conv3D(width, 3, padding="same", activation="relu", name=name)(x)
    x = layers.Conv3D(width, 3, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def demo_volume(input_size=(32, 32, 24), classes=2, channels=1, batch_norm=False):
    """A 3-D classifier (keras.io's "3D image classification from CT scans", smaller and without
    its Dense(512) layer): block1_conv and block2_conv, each a 3x3x3 convolution with ReLU then
    2x2x2 max pooling, block3_conv at 1/4 of each side, GlobalAveragePooling3D, predictions
    (softmax). Target layer: block3_conv (8x8x6 for 32x32x24 inputs). One convolution in the last
    block, not two: its cells then see 18 voxels, not 26 of a 32-voxel side, and its maps find the
    object (a second one classified as well but pointed at the background). input_size: the
    volume's three sides, each a multiple of 4."""
    sides = tuple(int(side) for side in input_size) if isinstance(input_size, (tuple, list)) else ()
    if len(sides) != 3 or min(sides) < 8 or any(side % 4 for side in sides):
        raise ValueError(f"input_size must be three sides, each a multiple of 4 and at least 8. Received: "
                         f"input_size={input_size}")
    if int(classes) < 2:
        raise ValueError(f"classes must be at least 2. Received: classes={classes}")
    if int(channels) < 1:
        raise ValueError(f"channels must be at least 1. Received: channels={channels}")
    inputs = keras.Input((*sides, int(channels)), name="volume")
    x = inputs
    for block, width in enumerate(VOLUME_WIDTHS[:-1], start=1):
        x = _conv3d(x, width, f"block{block}_conv", batch_norm)
        x = layers.MaxPooling3D(2, name=f"block{block}_pool")(x)
    x = _conv3d(x, VOLUME_WIDTHS[-1], f"block{len(VOLUME_WIDTHS)}_conv", batch_norm)
    x = layers.GlobalAveragePooling3D(name="gap")(x)
    outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="demo_volume")


CLIP_WIDTHS = (8, 16, 16)


def _check_clip(input_size, classes):
    sides = tuple(int(side) for side in input_size) if isinstance(input_size, (tuple, list)) else ()
    if len(sides) != 3 or sides[0] < 3 or min(sides[1:]) < 8 or any(side % 4 for side in sides[1:]):
        raise ValueError(f"input_size must be (frames, height, width): at least 3 frames, each side a multiple of 4 "
                         f"and at least 8. Received: input_size={input_size}")
    if int(classes) < 2:
        raise ValueError(f"classes must be at least 2. Received: classes={classes}")
    return sides


def demo_clip(input_size=(8, 32, 32), classes=2, batch_norm=False):
    """A Conv3D video classifier of (T, H, W, 3) clips (a small C3D, Tran et al. 2015): block1_conv,
    a 3x3x3 convolution (time x height x width) with ReLU, and block2_conv, a 1x3x3 one, each then
    1x2x2 max pooling (space halved, time kept: the map keeps a value per frame), block3_conv (1x3x3)
    at 1/4 of each side, GlobalAveragePooling3D, predictions (softmax). Target layer: block3_conv
    (8x8x8 for 8x32x32 clips). Only the first convolution looks across time, so a cell of the
    target layer sees 3 frames: with 3x3x3 kernels throughout it saw 7 of the 8, and the map of an
    end frame peaked on the middle of the square's path, not where the square is in that frame."""
    sides = _check_clip(input_size, classes)
    inputs = keras.Input((*sides, 3), name="clip")
    x = inputs
    for block, width in enumerate(CLIP_WIDTHS[:-1], start=1):
        x = _conv3d_kernel(x, width, (3, 3, 3) if block == 1 else (1, 3, 3), f"block{block}_conv", batch_norm)
        x = layers.MaxPooling3D((1, 2, 2), name=f"block{block}_pool")(x)
    x = _conv3d_kernel(x, CLIP_WIDTHS[-1], (1, 3, 3), f"block{len(CLIP_WIDTHS)}_conv", batch_norm)
    x = layers.GlobalAveragePooling3D(name="gap")(x)
    outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="demo_clip")


def _frames_conv(x, width, name, batch_norm):
    """A 3x3 Conv2D applied to each frame (TimeDistributed), with ReLU (batch norm before it when asked)."""
    if not batch_norm:
        return layers.TimeDistributed(layers.Conv2D(width, 3, padding="same", activation="relu"), name=name)(x)
    x = layers.TimeDistributed(layers.Conv2D(width, 3, padding="same", use_bias=False), name=name)(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def demo_clip_frames(input_size=(8, 32, 32), classes=2, batch_norm=False):
    """A video classifier of TimeDistributed 2-D convolutions on each frame's foreground: background
    subtraction with the clip's temporal mean as its background (the running-average model of
    Piccardi 2004, "Background subtraction techniques: a review"), and that foreground gating the
    per-frame features multiplicatively (the fusion of Feichtenhofer et al. 2017, "Spatiotemporal
    Multiplier Networks"). background: the mean of the T frames (AveragePooling3D over time, repeated
    T times); foreground: each frame less it (zero on whatever stays, the still square included);
    motion_gate, a TimeDistributed 1x1 Conv2D without bias, with ReLU: a learned combination of the
    colour channels' differences, rectified, so one sign of change is kept (trained from ones, it
    keeps "brighter than the background": the square at frame t, not the place it left). Then
    frames1_conv, 2x2 pooling per frame and frames2_conv read the gate (the moving object's shape in
    each frame, not its colours); gated multiplies them by the gate pooled to their size (motion_pool),
    so a feature fires only where frame t differs from the background; frames3_conv, a TimeDistributed
    Conv2D again, GlobalAveragePooling3D and predictions. Target layer: frames3_conv, a TimeDistributed
    layer's (T, h, w, K) output (8x16x16 for 8x32x32 clips), read as any 5-D output.
    Frame t's map lies on the square at frame t. A 3x1x1 temporal convolution between frames2_conv and
    frames3_conv ((2+1)-D, Tran et al. 2018), the design before, saw the motion as frame differences,
    nonzero where the square was as well as where it is, and its map trailed the square (peak in the
    square's box in about a quarter of the frames); gating features of the raw frames put the map on
    the square but took the sample clip, a yellow square on dark blue, for still (those features had
    learned the training colours)."""
    sides = _check_clip(input_size, classes)
    inputs = keras.Input((*sides, 3), name="clip")
    background = layers.AveragePooling3D((sides[0], 1, 1), name="background")(inputs)
    background = layers.UpSampling3D((sides[0], 1, 1), name="background_frames")(background)
    foreground = layers.Subtract(name="foreground")([inputs, background])
    gate = layers.TimeDistributed(layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones", activation="relu"),
                                  name="motion_gate")(foreground)
    x = _frames_conv(gate, CLIP_WIDTHS[0], "frames1_conv", batch_norm)
    x = layers.TimeDistributed(layers.MaxPooling2D(2), name="frames1_pool")(x)
    x = _frames_conv(x, CLIP_WIDTHS[1], "frames2_conv", batch_norm)
    gate = layers.TimeDistributed(layers.AveragePooling2D(2), name="motion_pool")(gate)
    x = layers.Multiply(name="gated")([x, gate])
    x = _frames_conv(x, CLIP_WIDTHS[2], "frames3_conv", batch_norm)
    x = layers.GlobalAveragePooling3D(name="gap")(x)
    outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="demo_clip_frames")


def _conv3d_kernel(x, width, kernel, name, batch_norm):
    if not batch_norm:
        return layers.Conv3D(width, kernel, padding="same", activation="relu", name=name)(x)
    x = layers.Conv3D(width, kernel, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def fold_batch_norm(trained, plain):
    """Copy `trained` (built with batch_norm=True) into `plain` (batch_norm=False), folding each
    inference-mode BatchNormalization into the convolution before it (a TimeDistributed one's too):
    kernel * gamma / sqrt(var + eps), bias = beta - mean * gamma / sqrt(var + eps). A layer without
    a NAME_bn beside it (demo-clip-frames' motion_gate, a bias-free 1x1 convolution) is copied as it is."""
    for layer in plain.layers:
        if not layer.weights:
            continue
        source = trained.get_layer(layer.name)
        convolution = (layers.Conv2D, layers.Conv3D)
        folded = f"{layer.name}_bn" in {other.name for other in trained.layers}
        if isinstance(getattr(layer, "layer", layer), convolution) and len(source.get_weights()) == 1 and folded:
            (kernel,) = source.get_weights()
            bn = trained.get_layer(f"{layer.name}_bn")
            gamma, beta, mean, variance = bn.get_weights()
            scale = gamma / np.sqrt(variance + bn.epsilon)
            layer.set_weights([kernel * scale, beta - mean * scale])
        else:
            layer.set_weights(source.get_weights())
    return plain
