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
            return ops.concatenate([-raw[..., :1], raw[..., :1]], axis=-1)
        return raw

    def probabilities(self, raw):
        """(B, C) probabilities from the pre-activation output; numpy."""
        raw = np.asarray(raw, dtype=np.float64)
        with np.errstate(all="ignore"):  # a model's inf or NaN output stays NaN, reported per image
            return self._probabilities(raw)

    def _probabilities(self, raw):
        if self.kind == "softmax":
            shifted = raw - raw.max(axis=-1, keepdims=True)
            e = np.exp(shifted)
            return e / e.sum(axis=-1, keepdims=True)
        if self.kind == "sigmoid":
            return 1.0 / (1.0 + np.exp(-raw))
        if self.kind == "binary":
            p = 1.0 / (1.0 + np.exp(-raw[..., :1]))
            return np.concatenate([1.0 - p, p], axis=-1)
        return raw


def _squashes(layer):
    return type(layer).__name__ == "Softmax" or _activation_name(layer) in _SQUASHING


# Layers that may follow the classifier's softmax: it is then still removed (the logits pass
# through them unchanged, or only reshaped): a float32 linear Activation after a mixed-precision
# Dense(softmax), a Reshape or Flatten, dropout and noise (the identity at inference).
_AFTER_SOFTMAX = ("Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
                  "Flatten", "Reshape", "Identity")


def _identity_or_shape(layer):
    kind = type(layer).__name__
    return kind in _AFTER_SOFTMAX or (kind == "Activation" and _activation_name(layer) in (None, "linear"))


@dataclass(frozen=True)
class LogitLayer:
    """Where the class scores are read: the layer whose call is replaced (`path`), and a
    warning when a softmax or sigmoid lies in the head but cannot be removed."""

    path: tuple
    layer: object
    warning: str = None


def logit_layer(chain, spatial):
    """Find the classifier's softmax or sigmoid in the output `chain` (graph.output_chain: the
    output's layers from the last one backwards), followed only by identity or shape layers.
    That layer's call is the one to replace. Without one, the output layer itself (its output is
    taken as the scores); if a softmax or sigmoid lies further back in the head (before the
    first `spatial(path)` layer) behind another layer, say that it cannot be removed."""
    position = len(chain)
    for position, (path, layer) in enumerate(chain):  # noqa: B007 (position: read after the loop)
        if _squashes(layer):
            return LogitLayer(path, layer)
        if not _identity_or_shape(layer):
            break
    output_path, output_layer = chain[0]
    for index in range(position + 1, len(chain)):
        path, layer = chain[index]
        if spatial(path):
            break
        if _squashes(layer):
            kind = "softmax" if type(layer).__name__ == "Softmax" else _activation_name(layer)
            after = ", ".join(f"{type(each).__name__} {p[-1]!r}" for p, each in reversed(chain[:index]))
            warning = (f"the {kind} of layer {path[-1]!r} is followed by {after}, so it cannot be removed: "
                       f"class scores are read after the {kind}, where gradients saturate")
            return LogitLayer(output_path, output_layer, warning)
    return LogitLayer(output_path, output_layer)


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


# Layers that are the identity at inference, or only reshape: allowed between GAP and the
# classifier (Dropout in EfficientNet, Reshape in MobileNet's 1x1-conv head...).
_PASS_THROUGH = ("Dropout", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
                 "AlphaDropout", "Flatten", "Reshape")


def _is_pass_through(layer):
    kind = type(layer).__name__
    if kind in _PASS_THROUGH:
        return True
    if kind == "Activation":
        return _activation_name(layer) in ("linear", "softmax", "sigmoid")  # the head's own squashing
    return kind == "Softmax"


def _linear_classifier(layer):
    """(kernel (K, C), bias (C,)) of a Dense or 1x1 Conv2D with no hidden activation, else None."""
    if _activation_name(layer) not in (None, "linear", "softmax", "sigmoid"):
        return None
    if isinstance(layer, keras.layers.Dense):
        kernel = np.asarray(layer.kernel)
    elif isinstance(layer, keras.layers.Conv2D) and tuple(layer.kernel_size) == (1, 1):
        kernel = np.asarray(layer.kernel)[0, 0]
    else:
        return None
    bias = np.asarray(layer.bias) if layer.use_bias else np.zeros(kernel.shape[1], kernel.dtype)
    return kernel.astype(np.float32), bias.astype(np.float32)


def _describe(layers):
    return ", ".join(type(info.layer).__name__ for info in layers) or "nothing"


def cam_classifier(layers, target_path):
    """The linear classifier CAM needs (Zhou et al. 2016): the target layer must feed
    GlobalAveragePooling2D (a token layer without prefix tokens: GlobalAveragePooling1D; a
    volumetric layer: GlobalAveragePooling3D), then (identity layers allowed) one Dense or 1x1 Conv2D, then
    nothing but the softmax. Returns (kernel (K, C), bias (C,)); ValueError naming the head found.
    `layers`: graph.LayerInfo in call order, as LoadedModel.layers."""
    paths = [info.path for info in layers]
    target = layers[paths.index(tuple(target_path))]
    # a transformer's tokens pooled by GlobalAveragePooling1D are a grid pooled when they are the grid alone
    pooling = ("GlobalAveragePooling2D",) + (("GlobalAveragePooling1D",) if target.grid is not None and
                                             not target.grid.prefix else ())
    if target.volumetric:  # a volume's layer (d1, d2, d3, K): pooled over all three spatial axes
        pooling = ("GlobalAveragePooling3D",)
    after = [info for info in layers[paths.index(tuple(target_path)) + 1 :]
             if info.path[: len(target_path)] != tuple(target_path)]  # skip the target's own inner layers
    after = [info for info in after if not isinstance(info.layer, keras.Model)]
    head = _describe(after)
    problem = ValueError(f"CAM needs the target layer to feed {' or '.join(pooling)} over its whole grid and one "
                         f"linear classifier; after it come {head}")
    if not after or type(after[0].layer).__name__ not in pooling:
        raise problem
    rest = [info for info in after[1:] if not _is_pass_through(info.layer)]
    if len(rest) != 1:
        raise problem
    classifier = _linear_classifier(rest[0].layer)
    if classifier is None:
        raise problem
    return classifier


# Layers that end an embedding model: they scale a vector to unit length (so its entries are no
# class scores), by class name, or by a Lambda's function name.
_NORMALISING = ("UnitNormalization",)


def _normalises(layer):
    kind = type(layer).__name__
    if kind in _NORMALISING:
        return True
    name = (getattr(getattr(layer, "function", None), "__name__", "") if kind == "Lambda" else kind).lower()
    return "l2" in name and "norm" in name


def output_kind(chain, shape):
    """What a model's output is, from its shape (batch axis first) and the layers ending it
    (graph.output_chain, last first): 'classes' (units), 'embedding' (units, its last layer
    normalising the vector), 'map' (height, width, classes: a segmenter) or None."""
    if len(shape) == 2:
        return "embedding" if chain and _normalises(chain[0][1]) else "classes"
    if len(shape) in (4, 5):  # (batch, height, width, classes) or a 3-D segmenter's (batch, d1, d2, d3, classes)
        return "map"
    return None
