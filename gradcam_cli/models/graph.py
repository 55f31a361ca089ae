"""Walking a Keras model's layers, nested models included.

A layer is named by its path: the names of the nested models that hold it, then its own name,
joined by '/' ('resnet50/conv5_block3_out'). `run_graph` calls a model layer by layer,
descending into nested models, and lets the caller replace any layer's call: that is how the
engine taps the target layer's output and reads the classifier before its softmax, without
building a second model, copying layers or changing the user's model.
"""

from dataclasses import dataclass

import keras

_POOLING_AND_NOISE = (
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "Dropout",
    "SpatialDropout2D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ATrousPooling2D",  # models/layers.py, in the dilated copies
    "GridSubsample",
)


def is_model(layer):
    return isinstance(layer, keras.Model)


def _children(model):
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def ensure_built(model):
    """A Sequential model that was never called has no graph yet (keras-team/keras#20116)."""
    if isinstance(model, keras.Sequential) and not model.built:
        raise ValueError("the Sequential model was never built: it declares no input shape")
    return model


def iter_layers(model, prefix=()):
    """Yield (path, layer) for every layer, in call order; a nested model comes before its layers."""
    for layer in _children(model):
        path = prefix + (layer.name,)
        yield path, layer
        if is_model(layer):
            yield from iter_layers(layer, path)


def path_name(path):
    return "/".join(path)


@dataclass(frozen=True)
class LayerInfo:
    path: tuple
    layer: object
    shape: object  # output shape without the batch axis, or None (several outputs)

    @property
    def name(self):
        return path_name(self.path)

    @property
    def spatial(self):
        """A (height, width, channels) output: a layer a class activation map can target."""
        shape = self.shape
        return shape is not None and len(shape) == 3 and all(isinstance(d, int) for d in shape)


def describe_layers(model, input_size, channels=3):
    """Every layer with its output shape for inputs of `input_size` (height, width), in call
    order, nested models before their layers.

    Shapes are computed symbolically (compute_output_spec) through `run_graph`, so models saved
    with a free input size get concrete shapes and no node is added to the user's model.
    """
    shapes = {}

    def record(path, output):
        shapes[path] = tuple(output.shape[1:]) if hasattr(output, "shape") else None
        return output

    def rewrite(path, layer):
        if is_model(layer):
            return lambda x, *args, **kwargs: record(path, run_graph(layer, x, rewrite, path))
        return lambda *args, **kwargs: record(path, layer.compute_output_spec(*args, **kwargs))

    run_graph(model, keras.KerasTensor((1, *input_size, channels)), rewrite)
    return [LayerInfo(path, layer, shapes.get(path)) for path, layer in iter_layers(model)]


def default_target_layer(layers):
    """The last convolutional feature layer: the last layer with a spatial (H, W > 1) output that
    is not pooling or dropout, so VGG16 gives block5_conv3 (not block5_pool), MobileNetV2 out_relu
    (not its last Conv2D, whose output still goes through BN and ReLU6), and a nested base model
    gives its inner layer ('resnet50/conv5_block3_out'). `layers`: from describe_layers."""
    chosen = None
    for info in layers:
        if not info.spatial or (info.shape[0] <= 1 and info.shape[1] <= 1):
            continue
        if type(info.layer).__name__ in _POOLING_AND_NOISE:
            continue
        chosen = info.path
    return chosen


def find_layer(model, name):
    """The path of the layer called `name` ('block5_conv3' or 'resnet50/conv5_block3_out').

    Raises KeyError with a message when there is no such layer or the bare name is ambiguous.
    """
    paths = [path for path, _ in iter_layers(model)]
    wanted = tuple(part for part in name.split("/") if part)
    if wanted in paths:
        return wanted
    by_leaf = [path for path in paths if path[-len(wanted) :] == wanted]
    if len(by_leaf) == 1:
        return by_leaf[0]
    if len(by_leaf) > 1:
        raise KeyError(f"layer {name!r} is ambiguous: {', '.join(path_name(p) for p in by_leaf)}")
    raise KeyError(f"no layer {name!r}")


def get_layer(model, path):
    layer = model
    for name in path:
        layer = layer.get_layer(name)
    return layer


def final_layer_path(model):
    """The path of the layer that produces the model's (single) output."""
    if isinstance(model, keras.Sequential):
        last = _children(model)[-1]
    else:
        outputs = model.outputs
        if len(outputs) != 1:
            raise ValueError(f"the model has {len(outputs)} outputs; a single classifier output is needed")
        last = outputs[0]._keras_history[0]
    if is_model(last):
        return (last.name,) + final_layer_path(last)
    return (last.name,)


def run_graph(model, inputs, rewrite, prefix=()):
    """Call `model` on `inputs` layer by layer, descending into nested models.

    `rewrite(path, layer)` returns None to call the layer as usual, or a callable taking the
    layer's call arguments that is used instead. Layers run in inference mode (their default
    outside fit), so BatchNormalization uses its moving statistics and Dropout is the identity.
    """

    def call(layer, args, kwargs):
        path = prefix + (layer.name,)
        replacement = rewrite(path, layer)
        if replacement is not None:
            return replacement(*args, **kwargs)
        if is_model(layer):
            return run_graph(layer, args[0], rewrite, path)
        return layer(*args, **kwargs)

    if isinstance(model, keras.Sequential):
        x = inputs
        for layer in _children(model):
            x = call(layer, (x,), {})
        return x
    # Functional models: Keras's own graph runner, with each operation's call routed through
    # `call`; this is what Functional.call does with its operation_fn.
    outputs = model._run_through_graph(
        inputs, operation_fn=lambda operation: lambda *a, **k: call(operation, a, k)
    )
    if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
        return outputs[0]
    return outputs
