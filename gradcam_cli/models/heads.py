"""The classifier's head: reading class scores before the softmax.

Grad-CAM differentiates the class score before the softmax (Selvaraju et al. 2017, Sec. 3):
the probability saturates and its gradient vanishes for confident predictions. keras-io's
example sets the last layer's activation to None, which changes the user's model; here the
last layer is instead *called differently* during the engine's own forward pass (see
`pre_activation`), and the model is never touched.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

_SQUASHING = ("softmax", "sigmoid")


def _activation_name(layer):
    function = getattr(layer, "activation", None)
    return getattr(function, "__name__", None)


@dataclass(frozen=True)
class Head:
    """How to turn the model's raw output into class scores and probabilities.

    kind: 'softmax' (scores are logits, probabilities their softmax), 'sigmoid' (independent
    sigmoid outputs, multi-label), 'binary' (one sigmoid/logit unit: class 1's score is the
    logit z, class 0's is -z), 'scores' (an output we cannot invert; used as it is).
    """

    kind: str
    num_classes: int

    def scores(self, raw):
        """(B, C) class scores from the (B, units) pre-activation output; in keras.ops."""
        if self.kind == "binary":
            return ops.concatenate([-raw[:, :1], raw[:, :1]], axis=-1)
        return raw

    def probabilities(self, raw):
        """(B, C) probabilities from the pre-activation output; numpy."""
        raw = np.asarray(raw, dtype=np.float64)
        if self.kind == "softmax":
            shifted = raw - raw.max(axis=-1, keepdims=True)
            e = np.exp(shifted)
            return e / e.sum(axis=-1, keepdims=True)
        if self.kind == "sigmoid":
            return 1.0 / (1.0 + np.exp(-raw))
        if self.kind == "binary":
            p = 1.0 / (1.0 + np.exp(-raw[:, :1]))
            return np.concatenate([1.0 - p, p], axis=-1)
        return raw


def describe_head(final_layer, units):
    """The Head of a model whose last layer is `final_layer` with `units` outputs."""
    if type(final_layer).__name__ == "Softmax":
        return Head("softmax", units)
    name = _activation_name(final_layer)
    linear = name in (None, "linear")
    if units == 1 and (name == "sigmoid" or linear):
        return Head("binary", 2)
    if name == "softmax" or linear:
        return Head("softmax", units)
    if name == "sigmoid":
        return Head("sigmoid", units)
    return Head("scores", units)


def pre_activation(layer):
    """A callable computing `layer`'s output without its final softmax/sigmoid, or None when the
    layer's activation is not one to remove."""
    if type(layer).__name__ == "Softmax":
        return lambda x, *args, **kwargs: x
    if _activation_name(layer) not in _SQUASHING:
        return None
    if isinstance(layer, keras.layers.Activation):
        return lambda x, *args, **kwargs: x
    if isinstance(layer, keras.layers.Dense):

        def dense_logits(x, *args, **kwargs):
            y = ops.matmul(x, layer.kernel)
            return ops.add(y, layer.bias) if layer.use_bias else y

        return dense_logits
    if hasattr(layer, "convolution_op"):  # Conv1D/2D/3D classifiers (fully convolutional heads)

        def conv_logits(x, *args, **kwargs):
            y = layer.convolution_op(x, layer.kernel)
            if layer.use_bias:
                y = ops.add(y, ops.reshape(layer.bias, (1,) * (len(y.shape) - 1) + (-1,)))
            return y

        return conv_logits
    raise ValueError(
        f"the model ends in a {type(layer).__name__} with a {_activation_name(layer)} activation; "
        "its pre-activation scores cannot be read"
    )
