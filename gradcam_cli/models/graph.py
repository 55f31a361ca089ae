"""Walking a Keras model's layers, nested models included. A layer is named by its path
('resnet50/conv5_block3_out'). `run_graph` calls a model layer by layer and lets the caller
replace any layer's call: the engine taps the target layer and reads the logits that way,
without a second model, copied layers or a changed user's model."""

from dataclasses import dataclass

import keras

from gradcam_cli.models import sublayers
from gradcam_cli.models.labels import whole_number

POOLING_AND_NOISE = (
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
    "MaxPooling3D",
    "AveragePooling3D",
    "GlobalAveragePooling3D",
    "GlobalMaxPooling3D",
    "SpatialDropout3D",
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
    """Yield (path, layer) for every layer, in call order; a nested model comes before its layers,
    a subclassed layer before the sublayers it calls (models/sublayers.py, in the order Keras
    tracks them)."""
    for layer in _children(model):
        path = prefix + (layer.name,)
        yield path, layer
        if is_model(layer):
            yield from iter_layers(layer, path)
        elif sublayers.is_container(layer):
            yield from sublayers.descendants(layer, path)


def path_name(path):
    return "/".join(path)


@dataclass(frozen=True)
class LayerInfo:
    path: tuple
    layer: object
    shape: object  # output shape without the batch axis, or None (several outputs)
    grid: object = None  # a token layer's tokens.TokenGrid (targets.annotate), else None
    calls: int = 1  # how often a subclassed layer's sublayer is called in one forward pass

    @property
    def name(self):
        return path_name(self.path)

    @property
    def spatial(self):
        """A (height, width, channels) output: a layer a class activation map can target."""
        shape = self.shape
        return shape is not None and len(shape) == 3 and all(isinstance(d, int) for d in shape)

    @property
    def volumetric(self):
        """A (d1, d2, d3, channels) output (a Conv3D network's): a layer a volume's map can target.
        Apart from `spatial`, so that everything 2-D reads exactly what it read before."""
        shape = self.shape
        return shape is not None and len(shape) == 4 and all(isinstance(d, int) for d in shape)

    @property
    def mappable(self):
        """A layer a map can target: a spatial or volumetric output, or tokens read as a grid,
        computed once a forward pass."""
        return (self.spatial or self.volumetric or self.grid is not None) and self.calls == 1

    @property
    def map_shape(self):
        """(height, width, channels) of the layer's map (a token layer's grid; a clip transformer's
        (t', h, w, channels)), (d1, d2, d3, channels) of a volumetric layer's, or None."""
        if self.grid is not None:
            return tuple(self.grid.sides) + (self.shape[-1],)
        return self.shape if self.spatial or self.volumetric else None


def spatial_axes(input_size):
    """How many spatial axes a model's input has: 2 for images ((height, width)), 3 for volumes
    ((d1, d2, d3), models whose input is (batch, d1, d2, d3, channels))."""
    return len(tuple(input_size))


def describe_layers(model, input_size, channels=3):
    """Every layer with its output shape for inputs of `input_size` (height, width), in call
    order, nested models before their layers.

    Shapes are computed symbolically (compute_output_spec) through `run_graph`, so models saved
    with a free input size get concrete shapes and no node is added to the user's model.
    """
    shapes, inside = {}, {}  # a container's sublayers: path -> (layer, calls), in call order

    def record(path, output):
        shapes[path] = tuple(output.shape[1:]) if hasattr(output, "shape") else None
        return output

    def begin(container):
        def started(path, layer):
            inside[container].setdefault(path, [layer, 0])[1] += 1

        return started

    def record_first(path, output):
        return output if path in shapes else record(path, output)

    def rewrite(path, layer):
        if is_model(layer):
            return lambda x, *args, **kwargs: record(path, run_graph(layer, x, rewrite, path, describing=True))
        if sublayers.is_container(layer):  # run it once on zeros, its sublayers' calls recorded
            inside[path] = {}
            return lambda *args, **kwargs: record(
                path, sublayers.describe_call(layer, path, args, kwargs, begin(path), record_first))
        return lambda *args, **kwargs: record(path, layer.compute_output_spec(*args, **kwargs))

    run_graph(model, keras.KerasTensor((1, *input_size, channels)), rewrite, describing=True)
    infos = []
    for path, layer in iter_layers(model):
        if any(path[: len(c)] == c and path != c for c in inside):
            continue  # listed after its container, in call order
        infos.append(LayerInfo(path, layer, shapes.get(path)))
        for sub_path, (sub, calls) in inside.get(path, {}).items():
            infos.append(LayerInfo(sub_path, sub, shapes.get(sub_path), calls=calls))
    return infos


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
        layer = layer.get_layer(name) if is_model(layer) else sublayers.child(layer, name)
    return layer


@dataclass(frozen=True)
class Output:
    """One of a model's outputs: its index in the flat output list, its name (the key of a
    dict-valued output, else the producing layer's name), the producing layer's name, its shape."""

    index: int
    name: str
    layer_name: str
    shape: tuple

    def describe(self):
        dims = "x".join("?" if d is None else str(d) for d in self.shape[1:])
        return f"{self.index}: {self.name} ({dims})"


def model_outputs(model):
    """The model's outputs, in the order of keras.tree.flatten (the order `run_graph` returns
    them in, once flattened)."""
    if isinstance(model, keras.Sequential):
        last = _children(model)[-1]
        return [Output(0, last.name, last.name, tuple(model.output_shape))]
    structure = model.output
    names = sorted(structure) if isinstance(structure, dict) else None  # tree.flatten sorts keys
    result = []
    for index, tensor in enumerate(model.outputs):
        layer_name = tensor._keras_history[0].name
        name = names[index] if names is not None else layer_name
        result.append(Output(index, name, layer_name, tuple(tensor.shape)))
    return result


def select_output(model, wanted):
    """The Output called or numbered `wanted` (a name, a dict key, or an index, as str or int).
    None picks the only output. ValueError listing the outputs otherwise."""
    outputs = model_outputs(model)
    listing = ", ".join(output.describe() for output in outputs)
    if wanted is None:
        if len(outputs) != 1:
            raise ValueError(f"the model has {len(outputs)} outputs ({listing})")
        return outputs[0]
    text = str(wanted).strip()
    index = whole_number(text)  # ASCII digits: isdigit() also takes '\u00b2', which int() refuses
    if index is not None:
        if not 0 <= index < len(outputs):
            raise ValueError(f"output {index} is out of range: the model's outputs are {listing}")
        return outputs[index]
    matches = [o for o in outputs if text in (o.name, o.layer_name)]
    if len(matches) != 1:
        raise ValueError(f"no output {text!r}: the model's outputs are {listing}")
    return matches[0]


def detection_outputs(model, wanted=None):
    """(boxes, scores) Outputs of a detector: decoded boxes (batch, N, 4) and class scores
    (batch, N, C) for the same N boxes. `wanted`: 'BOXES,SCORES' (names or indices); None: a
    model with exactly two such outputs (unambiguous: the scores do not have 4 columns too).
    None when the model is no such detector; ValueError for a pair named that does not fit."""
    outputs = model_outputs(model)
    if wanted is None:
        if len(outputs) != 2:
            return None
        pair = sorted(outputs, key=lambda o: tuple(o.shape[-1:]) != (4,))
    else:
        names = [part.strip() for part in str(wanted).split(",")]
        if len(names) != 2:
            return None
        pair = [select_output(model, name) for name in names]
    boxes, scores = pair
    fits = (len(boxes.shape) == 3 and len(scores.shape) == 3 and boxes.shape[-1] == 4 and boxes.shape[1] == scores.shape[1])
    if wanted is None:
        return (boxes, scores) if fits and scores.shape[-1] != 4 else None
    if not fits:
        raise ValueError(f"a detector's outputs are boxes (batch, N, 4) and class scores (batch, N, C). Received: "
                         f"{boxes.describe()}, {scores.describe()}")
    return boxes, scores


def flat_output(outputs, index):
    """Output `index` of what run_graph returned (a tensor, list or dict)."""
    if index is None:
        return outputs
    flat = keras.tree.flatten(outputs)
    return flat[index]


def output_chain(model, output=None, prefix=()):
    """The layers that end the chosen output (None: the only one), from the last one backwards
    while each takes a single input: [(path, layer), ...]. A nested model is entered (its last
    layer first). Stops before a layer with several inputs or at the model's input."""
    if output is None:
        output = select_output(model, None)
    if isinstance(model, keras.Sequential):
        steps = [(layer, None) for layer in reversed(_children(model))]
    else:
        steps = _single_input_steps(model.outputs[output.index])
    chain = []
    for layer, _ in steps:
        path = prefix + (layer.name,)
        if is_model(layer):
            chain.extend(output_chain(layer, None, path))
        else:
            chain.append((path, layer))
    return chain


def _single_input_steps(tensor):
    """(layer, node) producing `tensor`, then the producer of that layer's single input, and so
    on (Keras's tensor history), until an input layer or a layer with several inputs."""
    steps = []
    while True:
        layer, node_index, _ = tensor._keras_history
        if isinstance(layer, keras.layers.InputLayer):
            return steps
        steps.append((layer, node_index))
        inputs = layer._inbound_nodes[node_index].input_tensors
        if len(inputs) != 1:
            return steps
        tensor = inputs[0]



_TRAINING_ARGUMENT = {}


def takes_training(layer):
    """Whether `layer.call` takes a `training` argument (by its signature, cached per class)."""
    kind = type(layer)
    if kind not in _TRAINING_ARGUMENT:
        import inspect

        try:
            _TRAINING_ARGUMENT[kind] = "training" in inspect.signature(layer.call).parameters
        except (TypeError, ValueError):
            _TRAINING_ARGUMENT[kind] = False
    return _TRAINING_ARGUMENT[kind]


def run_graph(model, inputs, rewrite, prefix=(), describing=False):
    """Call `model` on `inputs` layer by layer, descending into nested models.

    `rewrite(path, layer)` returns None to call the layer as usual, or a callable taking the
    layer's call arguments that is used instead. Every layer runs in inference mode, as in
    `model.predict`: `training=False` is passed to each layer whose call takes it (Keras's
    augmentation layers, RandomFlip, RandomRotation..., default to training=True when called
    outside fit), so augmentation is off, Dropout and noise are the identity and
    BatchNormalization uses its moving statistics. A layer passes the flag on to the layers it
    calls itself (Keras's call context): a subclassed layer with sublayers is given it even when
    its own call takes no `training` (keras-hub's SpatialPyramidPooling calls Sequential blocks
    with batch normalisation, which without the flag did not run as `predict` runs them). The sublayers of a subclassed layer are rewritten too,
    while it runs (models/sublayers.py; not when `describing`: describe_layers records them
    itself). Returns the model's outputs in its own structure.
    """

    def call(layer, args, kwargs):
        path = prefix + (layer.name,)
        if takes_training(layer) or (not describing and not is_model(layer) and sublayers.is_container(layer)):
            kwargs = dict(kwargs, training=False)  # a Layer's __call__ takes it, and passes it on, always
        replacement = rewrite(path, layer)
        if replacement is None and is_model(layer):
            return run_graph(layer, args[0], rewrite, path, describing)
        function = replacement if replacement is not None else layer
        if describing or is_model(layer) or not sublayers.is_container(layer):
            return function(*args, **kwargs)
        with sublayers.hooked(layer, path, rewrite):
            return function(*args, **kwargs)

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


@dataclass(frozen=True)
class Cut:
    """Where a model is cut for a upper-graph step (`cut_above`): the target layer, the paths of the
    layers above it (computed from its output; the layers of a nested model above it included)
    and the paths of the nested models that hold the target (entered, not replaced)."""

    target: tuple
    above: frozenset
    containers: frozenset


def cut_above(model, target_path, output=None):
    """The Cut of `model` at `target_path`: which layers lie above the target layer, for running
    only them on given target activations (`run_above`). `output`: the graph.Output explained
    (None: the model's only one).

    The graph can be cut there when every layer above the target takes its inputs only from the
    target's output or from other layers above it. A tensor from below crossing into the part
    above (a skip connection from before the target to a layer after it) makes the head depend
    on more than the target's activations: ValueError naming the layer above and what it reads.
    So does an explained output that does not depend on the target, or a layer called both
    below and above the target (a shared layer), which a per-layer rewrite cannot tell apart.
    """
    target_path = tuple(target_path)
    ensure_built(model)
    if output is not None and output.index is None:
        raise ValueError("a detector's boxes and scores are not computed from a cut: the whole model runs")
    if output is None:
        output = select_output(model, None)
    above, reaches = _cut_level(model, target_path, (), target_path)
    if not reaches[output.index]:
        raise ValueError(f"the graph cannot be cut at {path_name(target_path)!r}: the model's output "
                         f"{output.name!r} does not depend on it")
    containers = frozenset(target_path[:depth] for depth in range(1, len(target_path)))
    return Cut(target_path, frozenset(above), containers)


def _refuse(target, reason):
    raise ValueError(f"the graph cannot be cut at {path_name(target)!r}: {reason}")


def _producer_name(tensor, prefix):
    """How an error names what produced `tensor`: its layer's path, or the (nested) model's input."""
    layer = tensor._keras_history[0]
    if isinstance(layer, keras.layers.InputLayer):
        return f"the input of {path_name(prefix)!r}" if prefix else "the model's input"
    return repr(path_name(prefix + (layer.name,)))


def _cut_level(model, rest, prefix, target):
    """(paths above the target in `model`, for each of `model`'s outputs whether it is computed
    from the target). `rest`: the target's path inside `model`; `prefix`: `model`'s path."""
    children = {layer.name: layer for layer in _children(model)}
    if rest[0] not in children:
        raise ValueError(f"no layer {path_name(prefix + rest[:1])!r}")
    holder = children[rest[0]]
    above = set()
    if len(rest) > 1:
        if sublayers.is_container(holder):
            _refuse(target, f"it is called by the code of layer {path_name(prefix + rest[:1])!r}, not by the "
                            "model's graph")
        if not is_model(holder):
            raise ValueError(f"layer {path_name(prefix + rest[:1])!r} holds no layers")
        above, inner_reaches = _cut_level(holder, rest[1:], prefix + rest[:1], target)
    else:
        inner_reaches = None  # every output of the target is the target's

    if isinstance(model, keras.Sequential):
        layers = _children(model)
        index = [layer.name for layer in layers].index(rest[0])
        if inner_reaches is not None and not all(inner_reaches):
            return above, [False]
        for layer in layers[index + 1 :]:
            path = prefix + (layer.name,)
            above.add(path)
            if is_model(layer):
                above.update(p for p, _ in iter_layers(layer, path))
        return above, [True]

    nodes = [node for depth in sorted(model._nodes_by_depth, reverse=True) for node in model._nodes_by_depth[depth]]
    holder_nodes = [node for node in nodes if node.operation is holder]
    if len(holder_nodes) != 1:
        _refuse(target, f"layer {path_name(prefix + rest[:1])!r} is called {len(holder_nodes)} times in "
                        f"{path_name(prefix) or 'the model'!r}")
    outputs = holder_nodes[0].output_tensors
    reached = {id(t) for t, up in zip(outputs, inner_reaches or [True] * len(outputs)) if up}
    below = set()
    # _nodes_by_depth, deepest first: a node comes after the nodes whose outputs it reads.
    for node in nodes:
        if node is holder_nodes[0] or node.is_input or not node.operation:
            continue
        path = prefix + (node.operation.name,)
        inputs = node.input_tensors
        if not any(id(t) in reached for t in inputs):
            below.add(path)
            continue
        for tensor in inputs:
            if id(tensor) not in reached:
                _refuse(target, f"layer {path_name(path)!r} above it also reads {_producer_name(tensor, prefix)}, "
                                f"which is computed below it, not from its output")
        reached.update(id(t) for t in node.output_tensors)
        above.add(path)
        if is_model(node.operation):
            above.update(p for p, _ in iter_layers(node.operation, path))
    shared = sorted(above & below)
    if shared:
        _refuse(target, f"layer {path_name(shared[0])!r} is called both below and above it")
    return above, [id(t) in reached for t in model.outputs]


def _placeholder_outputs(layer, placeholder):
    """What a layer below the cut returns instead of computing: `placeholder` for each output
    (Keras's graph runner pairs a node's outputs with what its call returned)."""
    nodes = getattr(layer, "_inbound_nodes", None) or ()
    count = len(nodes[0].output_tensors) if nodes else 1
    return placeholder if count == 1 else [placeholder] * count


def run_above(model, cut, activations, rewrite=None):
    """The model's outputs computed from the target layer's `activations` by the layers above the
    cut alone (`cut_above`), in run_graph's structure. `rewrite(path, layer)` as in run_graph,
    applied to the layers above (the logits rewrite).

    This is run_graph with the target's call replaced by `activations` and each layer below by a
    scalar placeholder, fed a placeholder input: the layers below are never called (their
    placeholders reach no layer above, which the cut guarantees), nested models holding the
    target are entered, and everything above runs as in the full forward pass.
    """
    placeholder = keras.ops.zeros(())

    def head(path, layer):
        if path == cut.target:
            return lambda *args, **kwargs: activations
        if path in cut.containers:
            return None
        # a sublayer of a subclassed layer above the cut runs as its container does
        if any(path[:depth] in cut.above for depth in range(1, len(path) + 1)):
            return rewrite(path, layer) if rewrite is not None else None
        return lambda *args, **kwargs: _placeholder_outputs(layer, placeholder)

    count = 1 if isinstance(model, keras.Sequential) else len(model.inputs)
    inputs = placeholder if count == 1 else [placeholder] * count
    return run_graph(model, inputs, head)
