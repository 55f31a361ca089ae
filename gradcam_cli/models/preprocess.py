"""Input preprocessing modes, as keras.applications' preprocess_input functions define them.

Images arrive as float32 RGB in 0..255. The modes are written out here in numpy (checked against
Keras's own functions in the tests) so that a user's model can name one with `--preprocess`.
"""

import numpy as np

_CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)
_TORCH_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_TORCH_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _caffe(x):
    return x[..., ::-1] - _CAFFE_BGR_MEAN  # RGB -> BGR, zero-centred per channel, no scaling


def _tf(x):
    return x / 127.5 - 1.0  # -1..1


def _torch(x):
    return (x / 255.0 - _TORCH_MEAN) / _TORCH_STD


def _unit(x):
    return x / 255.0  # 0..1


def _none(x):
    return x


MODES = {
    "none": (_none, "raw 0..255 RGB (models that preprocess inside, e.g. EfficientNet, ConvNeXt)"),
    "caffe": (_caffe, "RGB->BGR minus the ImageNet channel means (VGG, ResNet v1)"),
    "tf": (_tf, "scaled to -1..1 (Inception, Xception, MobileNet v1/v2, ResNet v2, NASNet)"),
    "torch": (_torch, "0..1 then ImageNet mean/std normalised (DenseNet)"),
    "unit": (_unit, "scaled to 0..1"),
}


def preprocess(batch, mode):
    """Apply preprocessing `mode` to a float32 RGB batch in 0..255; returns a new float32 array.
    `mode`: a MODES name, or a per-channel affine map with `scale` and `offset` (models/hub.py's
    Affine: a keras-hub preset's)."""
    if callable(mode):
        return np.ascontiguousarray(mode(np.asarray(batch, dtype=np.float32)), dtype=np.float32)
    try:
        function = MODES[mode][0]
    except KeyError:
        raise ValueError(f"unknown preprocessing mode. Received: mode={mode!r}") from None
    return np.ascontiguousarray(function(np.asarray(batch, dtype=np.float32)), dtype=np.float32)


# d(preprocessed)/d(RGB) of each mode: every mode is per-channel affine, optionally reversing the
# channel order, so the chain rule is a per-channel scale and the same reversal.
_PULLBACK = {
    "none": (False, np.float32(1.0)),
    "caffe": (True, np.float32(1.0)),
    "tf": (False, np.float32(1.0 / 127.5)),
    "torch": (False, (1.0 / (255.0 * _TORCH_STD)).astype(np.float32)),
    "unit": (False, np.float32(1.0 / 255.0)),
}


def pullback(gradients, mode):
    """Gradients with respect to the preprocessed input (B, H, W, 3) turned into gradients with
    respect to the 0..255 RGB image: colours in RGB order with each channel's true scale (caffe
    mode feeds BGR; torch mode divides each channel by its own std)."""
    reverse, scale = (False, np.asarray(mode.scale, np.float32)) if callable(mode) else _PULLBACK[mode]
    gradients = np.asarray(gradients, dtype=np.float32)
    if reverse:
        gradients = gradients[..., ::-1]
    return np.ascontiguousarray(gradients * scale, dtype=np.float32)
