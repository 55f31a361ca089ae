"""Dilated copies of plain convolutional networks, for Grad-CAM at the input's resolution.

VGG16's block5_conv3 is 14x14 for a 224x224 input because four poolings come before it.
`dilated(model, mode)` builds a new network from the same weights whose convolutional layers
keep the full resolution:

- mode "no-pooling" (the "dilated VGG16" often tried): the poolings are removed, every convolution after the
  n-th pooling is dilated by the product of the pool sizes before it (1,1,2,2,4,4,4,8,8,8,16,16,16
  for VGG16), and a MaxPooling2D(pool_size=32) before Flatten brings the 224x224 map back to the
  7x7 grid the classifier expects. Same parameters, but a different function: its predictions
  degrade and its Grad-CAM shows a grid pattern.
- mode "exact" (the "a trous" algorithm): each pooling becomes a stride-1 pooling over a window
  dilated like the convolutions after it (layers.ATrousPooling2D), and the classifier reads the
  last map every 32 pixels (layers.GridSubsample). On that grid every layer computes exactly what
  the original computes (block5_conv3 every 16 pixels), so the predictions are the original
  network's; between the grid points each layer holds the same filters' response to the input
  shifted by those pixels. Its Grad-CAM is a full-resolution map of the original classifier.

The network must be a plain chain: stride-1 convolutions, non-overlapping poolings, element-wise
layers (activations, batch normalisation, dropout), then Flatten or global pooling and a dense
classifier. Nested models are walked through. Anything else (strided convolutions, residual or
branching layers, depthwise convolutions) is refused with the layer named. The original model is
not touched: every layer is rebuilt from its config and its weights copied.
"""

import keras

from gradcam_cli.errors import ModelError
from gradcam_cli.models.graph import path_name
from gradcam_cli.models.layers import ATrousPooling2D, GridSubsample

MODES = ("exact", "no-pooling")
_ELEMENTWISE = ("Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "BatchNormalization",
                "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
                "Rescaling", "Normalization")
_READERS = ("Flatten", "GlobalAveragePooling2D", "GlobalMaxPooling2D")
_POOLING = {"MaxPooling2D": "max", "AveragePooling2D": "average"}


class NotConvertible(ValueError):
    """The network is not a plain chain this module can convert; the message names the layer."""


def _leaves(model):
    """The model's layers in call order, nested models opened, checked to form a single chain."""
    leaves, previous = [], None
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if not isinstance(model, keras.Sequential):
            inputs = [tensor for node in _nodes_in(model, layer) for tensor in node.input_tensors]
            if len(inputs) != 1:
                raise NotConvertible(f"layer {layer.name!r} ({type(layer).__name__}) takes {len(inputs)} inputs: "
                                     "residual or multi-branch networks cannot be converted")
            expected = model.inputs[0] if previous is None else _output_in(model, previous)
            if inputs[0] is not expected:
                raise NotConvertible(f"layer {layer.name!r} does not take the previous layer's output: "
                                     "the network branches")
        previous = layer
        leaves.extend(_leaves(layer) if isinstance(layer, keras.Model) else [layer])
    return leaves


def _nodes_in(model, layer):
    """The calls of `layer` that belong to `model`'s graph (a layer may be called elsewhere too)."""
    return [node for node in layer._inbound_nodes if id(node) in {id(n) for n in _model_nodes(model)}]


def _model_nodes(model):
    return [node for nodes in model._nodes_by_depth.values() for node in nodes]


def _output_in(model, layer):
    outputs = [tensor for node in _nodes_in(model, layer) for tensor in node.output_tensors]
    return outputs[0] if len(outputs) == 1 else None


def _clone(layer, **changes):
    config = layer.get_config()
    config.update(changes)
    return type(layer).from_config(config)


def _conv(layer, dilation):
    if tuple(layer.strides) != (1, 1):
        raise NotConvertible(f"layer {layer.name!r} is a strided convolution (strides={tuple(layer.strides)}); "
                             "only stride-1 convolutions can be dilated")
    if getattr(layer, "groups", 1) != 1:
        raise NotConvertible(f"layer {layer.name!r} is a grouped convolution")
    own = tuple(layer.dilation_rate)
    return _clone(layer, dilation_rate=(own[0] * dilation[0], own[1] * dilation[1]))


def _pool_size(layer):
    size = tuple(layer.pool_size)
    strides = tuple(layer.strides) if layer.strides is not None else size
    if strides != size or layer.padding != "valid":
        raise NotConvertible(f"layer {layer.name!r} pools with strides {strides} over {size} windows, "
                             f"padding {layer.padding!r}; only non-overlapping 'valid' pooling converts")
    return size


def dilated(model, mode="exact"):
    """A new keras.Model computing `model` at full resolution (see the module docstring), its
    layers named as in `model` ("block5_conv3"), sharing no state with it. Raises
    NotConvertible naming the first layer that cannot be converted."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}. Received: mode={mode!r}")
    if not isinstance(model, keras.Model) or len(model.inputs) != 1:
        raise NotConvertible("the model must have a single image input")
    pairs = []  # (original layer or None, new layer)
    dilation = (1, 1)
    spatial = True
    for layer in _leaves(model):
        kind = type(layer).__name__
        if not spatial:
            pairs.append((layer, _clone(layer)))
        elif kind == "Conv2D":
            pairs.append((layer, _conv(layer, dilation)))
        elif kind in _POOLING:
            size = _pool_size(layer)
            if mode == "exact":
                pairs.append((None, ATrousPooling2D(size, dilation, kind=_POOLING[kind], name=layer.name)))
            dilation = (dilation[0] * size[0], dilation[1] * size[1])
        elif kind in _ELEMENTWISE:
            pairs.append((layer, _clone(layer)))
        elif kind in _READERS:
            if dilation != (1, 1):
                if mode == "exact":
                    pairs.append((None, GridSubsample(dilation, name="grid")))
                elif kind == "Flatten":  # MaxPooling2D(pool_size=32) in place of the five poolings
                    pairs.append((None, keras.layers.MaxPooling2D(dilation, name="dilated_pool")))
            pairs.append((layer, _clone(layer)))
            spatial = False
        else:
            raise NotConvertible(f"layer {layer.name!r} ({kind}) cannot be converted: only stride-1 Conv2D, "
                                 "non-overlapping pooling, element-wise layers, Flatten or global pooling, "
                                 "then a dense head")
    if spatial and dilation != (1, 1):  # a fully convolutional network: read its output on the grid
        pairs.append((None, GridSubsample(dilation, name="grid") if mode == "exact"
                      else keras.layers.MaxPooling2D(dilation, name="dilated_pool")))
    inputs = keras.Input(model.inputs[0].shape[1:], name="image")
    x = inputs
    for _, new in pairs:
        x = new(x)
    suffix = "atrous" if mode == "exact" else "dilated"
    converted = keras.Model(inputs, x, name=f"{model.name}_{suffix}")
    for old, new in pairs:
        if old is not None and old.weights:
            new.set_weights(old.get_weights())
    return converted


# -- dilated copies as LoadedModels ---------------------------------------------------------------


def dilated_copy(loaded, mode, target_path):
    """`loaded`'s model converted by models.dilated (mode 'exact' or 'no-pooling') as a LoadedModel, and
    the path of `target_path`'s layer in it. ModelError when the model or layer cannot be."""
    from gradcam_cli.models.loading import describe
    from gradcam_cli.models.precision import set_precision

    try:
        model = dilated(loaded.model, mode)
    except NotConvertible as error:
        raise ModelError(f"{loaded.name}: {error}; a dilated copy is made of a VGG-style chain (stride-1 "
                         "convolutions, pooling, a dense head)") from None
    suffix = "a trous" if mode == "exact" else "no pooling"
    converted = describe(model, f"{loaded.name} ({suffix})", loaded.input_size, loaded.preprocess, loaded.labels,
                         warnings=loaded.warnings, token_layout=loaded.token_layout)
    converted.reference, converted.view = loaded, loaded.view
    return set_precision(converted, loaded.precision), dilated_target(converted, target_path)


def dilated_target(converted, target_path):
    """The path, in a dilated copy, of the original's layer `target_path` (copies keep leaf names)."""
    name = target_path[-1]
    if not any(info.path == (name,) and info.spatial for info in converted.layers):
        raise ModelError(f"layer {path_name(target_path)!r} has no counterpart in {converted.name} "
                           "(the no-pooling mode removes the poolings); choose a convolution")
    return (name,)


# What one batch of a dilated copy may hold in activations; batches are cut to fit. Batching
# does not make dense VGG16 faster on CPU, and one image holds 1.1 GB.
DILATED_MEMORY_BUDGET = 2 * 2**30


def fitting_batch(loaded, requested):
    """The largest batch size up to `requested` whose activations fit DILATED_MEMORY_BUDGET."""
    from gradcam_cli.models import precision

    return precision.fitting_batch(loaded, requested, DILATED_MEMORY_BUDGET)
