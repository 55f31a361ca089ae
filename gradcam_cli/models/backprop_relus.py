"""Guided backpropagation and deconvnet: the model's ReLUs called with a modified gradient.

Both methods differ from the plain gradient only in how a signal R passes back through a ReLU
whose forward input was f:

    plain gradient                          R_in = (f > 0) * R_out
    guided backpropagation (Springenberg et al. 2015, Fig. 1)   R_in = (f > 0) * (R_out > 0) * R_out
    deconvnet (Zeiler & Fergus 2014)        R_in = (R_out > 0) * R_out

The model is not changed and not copied: the engine calls it layer by layer (graph.run_graph)
and `relu_rewrite` replaces the call of each ReLU with one that computes the same forward
value and carries a custom gradient (keras.ops.custom_gradient), so a second run in the same
process, or a plain Grad-CAM run, sees the model exactly as it was.

ReLUs are found wherever Keras models put them: a fused `activation='relu'` or 'relu6' on a
Conv/Dense layer (VGG16), ReLU layers including ReLU(max_value=6) (MobileNetV2), and
Activation('relu') layers (ResNet, DenseNet, Inception, Xception). For ReLU6 the forward mask
of guided backpropagation is the layer's own derivative (0 < f < 6). Other activations (swish,
gelu, leaky ReLU, sigmoid gates...) keep their plain gradient; `census` counts them so that the
command can say so.
"""

from collections import Counter
from dataclasses import dataclass

import keras
from keras import ops

MODES = ("guided", "deconvnet")
_RELU_NAMES = ("relu", "relu6")
_LINEAR_NAMES = (None, "linear")
# Layers that are activations by type; counted as "other" when they are not a plain ReLU.
_ACTIVATION_LAYERS = ("LeakyReLU", "PReLU", "ELU", "Softmax", "ReLU", "Activation")


def _activation_name(layer):
    return getattr(getattr(layer, "activation", None), "__name__", None)


def relu_kind(layer):
    """'layer' for a ReLU that is a layer of its own (ReLU, Activation('relu')), 'fused' for a
    layer whose `activation` is relu/relu6, else None."""
    if isinstance(layer, keras.Model):
        return None
    kind = type(layer).__name__
    if kind == "ReLU":
        return "layer" if float(layer.negative_slope) == 0.0 else None
    if kind == "Activation":
        return "layer" if _activation_name(layer) in _RELU_NAMES else None
    return "fused" if _activation_name(layer) in _RELU_NAMES else None


def other_activation(layer):
    """The name of a non-linear activation that is not a ReLU (gradient left as it is), or None."""
    if isinstance(layer, keras.Model) or relu_kind(layer) is not None:
        return None
    kind = type(layer).__name__
    if kind == "ReLU":
        return "leaky_relu"
    if kind in _ACTIVATION_LAYERS and kind != "Activation":
        return kind.lower()
    name = _activation_name(layer)
    return None if name in _LINEAR_NAMES else name


@dataclass(frozen=True)
class Census:
    """Which activations a guided pass changes: the ReLU layers' paths, and a count of the other
    non-linear activations by name (the model's own output activation excluded)."""

    relu_paths: tuple
    others: dict

    def describe_others(self):
        return ", ".join(f"{name} x{count}" for name, count in sorted(self.others.items()))

    def as_record(self, mode):
        return {"mode": mode, "relu_layers": len(self.relu_paths), "other_activations": dict(self.others)}


def census(layers, final_path):
    """Census of `layers` (graph.LayerInfo, as LoadedModel.layers)."""
    relus, others = [], Counter()
    for info in layers:
        if info.path == tuple(final_path):
            continue
        if relu_kind(info.layer) is not None:
            relus.append(info.path)
        else:
            name = other_activation(info.layer)
            if name is not None:
                others[name] += 1
    return Census(tuple(relus), dict(others))


def _upstream(args, upstream):
    # keras.ops.custom_gradient passes the upstream gradient positionally on TensorFlow and JAX,
    # as a keyword on PyTorch.
    return args[0] if upstream is None else upstream


@ops.custom_gradient
def _positive_gradient(x):
    """The identity, passing back only positive gradients. Placed after a ReLU, whose own
    derivative then applies the forward mask: guided backpropagation."""

    def grad(*args, upstream=None):
        return ops.relu(_upstream(args, upstream))

    return x, grad


def _deconvnet_relu(pre_activation, activation):
    """activation(pre_activation) forward; backward only the positive part of the gradient,
    whatever the forward input was: the deconvnet's backward ReLU."""

    @ops.custom_gradient
    def call(z):
        def grad(*args, upstream=None):
            return ops.relu(_upstream(args, upstream))

        return activation(z), grad

    return call(pre_activation)


def without_activation(layer):
    """A view of `layer` that shares its variables and everything else but calls no activation:
    its pre-activation output. Built beside the layer; the layer itself is not touched."""
    view = object.__new__(type(layer))
    view.__dict__.update(layer.__dict__)
    object.__setattr__(view, "activation", None)  # past Layer.__setattr__'s tracking
    return view


def relu_call(layer, mode):
    """The call that replaces ReLU `layer` in `mode` (guided or deconvnet), or None when `layer`
    holds no ReLU."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}. Received: mode={mode!r}")
    kind = relu_kind(layer)
    if kind is None:
        return None
    if mode == "guided":
        return lambda *args, **kwargs: _positive_gradient(layer(*args, **kwargs))
    if kind == "layer":
        return lambda x, *args, **kwargs: _deconvnet_relu(x, lambda z: layer(z, *args, **kwargs))
    linear = without_activation(layer)
    return lambda *args, **kwargs: _deconvnet_relu(linear(*args, **kwargs), layer.activation)


def relu_rewrite(mode):
    """A run_graph rewrite that calls every ReLU the `mode` way; one replacement per layer."""
    calls = {}

    def rewrite(path, layer):
        if path not in calls:
            calls[path] = relu_call(layer, mode)
        return calls[path]

    return rewrite
