"""Which layers a map can target, and which one is the default.

A layer can be a target when its output is spatial, (height, width, channels), volumetric,
(d1, d2, d3, channels) for a model of volumes, or a sequence of tokens that reads as a grid
(models/tokens.py): `annotate` finds each token layer's grid.

The default (`default_target_layer`):
- a transformer (a model with attention layers): the input of the last attention layer, i.e. the
  output of the last block's first normalization (pytorch-grad-cam's `blocks[-1].norm1`). The
  last block's own output is no use with a class-token head: the head reads the class token
  alone, so the patch tokens there get no gradient (pytorch-grad-cam issues #363, #513);
- any other model: the last convolutional feature layer, the last spatial layer (height and
  width > 1) that is not pooling or dropout: VGG16's block5_conv3 (not block5_pool),
  MobileNetV2's out_relu, a nested base model's inner layer ('resnet50/conv5_block3_out');
- a segmenter (its output is a map, height x width x classes): the bottleneck of its
  encoder-decoder, the last layer at the coarsest resolution (`bottleneck`);
- a model of volumes (its input (batch, d1, d2, d3, channels)): the last volumetric layer
  (d1, d2, d3, channels), its spatial axes not all 1, that is not pooling or dropout: a Conv3D
  network's last convolutional feature layer, never its GlobalAveragePooling3D;
- never the input, a preprocessing layer (Rescaling, Normalization, resizing, augmentation) or a
  patch embedding, whose maps show the image rather than what the model computed from it. When
  no layer qualifies, LayerError lists the layers a map can target.

A video transformer (its input (batch, T, H, W, channels), a Conv3D tubelet embedding, attention
layers: ViViT) is a transformer: its default is the input of its last attention layer, read as a
(t', h', w', channels) grid (models/tokens.py); its Conv3D of kernel = stride is its patch embedding.
"""

import dataclasses

import keras
import numpy as np

from gradcam_cli.errors import LayerError, argument
from gradcam_cli.models import graph, tokens

# Layers that only prepare the image: a map of their output is a map of the input.
PREPROCESSING = ("Rescaling", "Normalization", "Resizing", "CenterCrop", "RandomFlip", "RandomRotation",
                 "RandomZoom", "RandomCrop", "RandomTranslation", "RandomContrast", "RandomBrightness",
                 "AutoContrast", "Solarization", "Equalization", "Pipeline", "RandAugment", "RandomGrayscale")


def is_preprocessing(layer):
    kind = type(layer).__name__
    return kind in PREPROCESSING or kind.endswith("ImageConverter") or kind.startswith("Random")


def is_attention(layer):
    return isinstance(layer, keras.layers.MultiHeadAttention) or (
        not graph.is_model(layer) and type(layer).__name__.endswith("Attention"))


def _patch_embedding(layers):
    """The paths of the patch embedding: the first layer with weights when it cuts the image into
    patches (a Conv2D whose kernel equals its stride, > 1; a clip's Conv3D tubelets alike; or a layer named
    for patches), and the layers named for patches or embeddings before the first attention layer."""
    found = set()
    first = next((info for info in layers if info.layer.weights and not graph.is_model(info.layer)), None)
    if first is not None and isinstance(first.layer, (keras.layers.Conv2D, keras.layers.Conv3D)):
        kernel, strides = tuple(first.layer.kernel_size), tuple(first.layer.strides)
        if kernel == strides and max(kernel) > 1:
            found.add(first.path)
    for info in layers:
        if is_attention(info.layer):
            break
        kind = type(info.layer).__name__
        if "Patch" in kind or "Embedding" in kind or "patch" in info.path[-1]:
            found.add(info.path)
    return found


def is_transformer(layers):
    """Whether a model has attention layers: only then are its token layers read as grids without
    --grid or --prefix-tokens (a CNN's reshaped features are not patches)."""
    return any(is_attention(info.layer) for info in layers)


def annotate(layers, input_size, grid=None, prefix=None):
    """`layers` (graph.LayerInfo in call order) with each token layer's TokenGrid: a (tokens,
    channels) output that reads as prefix + h x w (tokens.read_grid; `grid`, `prefix` override).
    The patch embedding's grid is the last spatial output before the layer. A model without
    attention layers has token grids only where the user gives the grid or prefix. A clip's model
    (`input_size` (T, H, W)) reads the last (t', h', w', channels) output before the layer instead."""
    if grid is None and prefix is None and not is_transformer(layers):
        return list(layers)
    annotated, embedding = [], None
    for info in layers:
        if _embeds(info, input_size):
            embedding = info.shape[:-1]
        found = token_grid(info, input_size, embedding, grid, prefix, quiet=True)
        annotated.append(dataclasses.replace(info, grid=found) if found is not None else info)
    return annotated


def _token_layer(info):
    shape = info.shape
    return shape is not None and len(shape) == 2 and isinstance(shape[-1], int) and not graph.is_model(info.layer)


def token_grid(info, input_size, embedding=None, grid=None, prefix=None, quiet=False):
    """The TokenGrid of a token layer, or None for other layers; a token layer whose tokens are
    not a grid gives None when `quiet`, else ValueError naming the numbers."""
    if not _token_layer(info):
        return None
    try:
        return tokens.read_grid(info.shape[0], input_size, embedding, grid, prefix)
    except ValueError:
        if quiet:
            return None
        raise


def _embeds(info, input_size):
    """Whether `info`'s output can be a patch embedding's grid: a spatial one ((h, w, channels)) for
    images, a volumetric one ((t', h', w', channels): a Conv3D's tubelets) for a clip's (T, H, W)."""
    found = info.volumetric if graph.spatial_axes(input_size) == 3 else info.spatial
    return found and not graph.is_model(info.layer)


def embedding_before(layers, path, input_size=(None, None)):
    """The (h, w) of the last spatial output before the layer at `path` (a clip's (t', h', w') of the
    last volumetric one: `input_size` three sides), or None."""
    embedding = None
    for info in layers:
        if info.path == tuple(path):
            return embedding
        if _embeds(info, input_size):
            embedding = info.shape[:-1]
    return embedding


def is_normalization(layer):
    kind = type(layer).__name__
    return "Normalization" in kind or kind.endswith("Norm") or kind == "RMSNorm"


def last_attention_input(model, layers):
    """The path of the layer producing the query of the model's last attention layer, or None.
    In a functional graph, the producer of its query (its first argument, or `query=`); inside a subclassed block (whose
    calls are no graph nodes, models/sublayers.py), the last normalization called before it."""
    attention = [index for index, info in enumerate(layers) if is_attention(info.layer)]
    if not attention:
        return None
    last = layers[attention[-1]]
    nodes = getattr(last.layer, "_inbound_nodes", None) or ()
    if in_graph(model, last.path):
        arguments = getattr(nodes[0], "arguments", None) if nodes else None
        if arguments is None:
            return None
        query = arguments.args[0] if arguments.args else arguments.kwargs.get("query")  # not the mask
        history = getattr(query, "_keras_history", None)
        if history is None or isinstance(history[0], keras.layers.InputLayer):
            return None
        return last.path[:-1] + (history[0].name,)
    for info in reversed(layers[: attention[-1]]):
        if is_normalization(info.layer):
            return info.path
    return None


def in_graph(model, path):
    """Whether the layer at `path` is a node of a functional model (its own or a nested one's)."""
    holder = model
    for name in path[:-1]:
        if not graph.is_model(holder):
            return False
        holder = holder.get_layer(name)
    return graph.is_model(holder)


def _excluded(info, embedding):
    return (info.path in embedding or is_preprocessing(info.layer)
            or type(info.layer).__name__ in graph.POOLING_AND_NOISE)


_LAYER = argument("layer", "'NAME'", "NAME")


def default_target_layer(model, layers, input_size=None, layout=(None, None)):
    """The default target (see the module's docstring). `layers`: annotated graph.LayerInfo;
    input_size and layout (the user's grid and prefix) say why a transformer's token layer is
    not read as a grid."""
    embedding = _patch_embedding(layers)
    by_path = {info.path: info for info in layers}
    attention_input = last_attention_input(model, layers)
    if attention_input is not None:
        info = by_path.get(attention_input)
        if info is not None and info.grid is not None and not _excluded(info, embedding):  # a token grid
            return info.path
        if info is not None and _token_layer(info) and input_size is not None:
            try:
                token_grid(info, input_size, embedding_before(layers, info.path, input_size), *layout)
            except ValueError as error:
                raise LayerError(f"the default layer {info.name!r} (the input of the last attention layer) has "
                                 f"output shape {info.shape}: {error}") from None
    chosen, transformer = None, is_transformer(layers)
    volume = input_size is not None and graph.spatial_axes(input_size) == 3
    for info in layers:  # a model without attention keeps its convolutional default
        if volume:  # a volume's model: the last volumetric feature layer (its spatial axes not all 1)
            shape = info.shape if info.volumetric and info.calls == 1 else None
            if transformer and info.grid is not None and info.calls == 1:  # a clip transformer's token grid
                shape = info.map_shape
            if shape is None or max(shape[:3]) <= 1 or _excluded(info, embedding):
                continue
            chosen = info.path
            continue
        shape = info.map_shape if transformer else (info.shape if info.spatial and info.calls == 1 else None)
        if shape is None or (shape[0] <= 1 and shape[1] <= 1) or _excluded(info, embedding):
            continue
        chosen = info.path
    if chosen is None:
        candidates = [info.name for info in layers if info.mappable]
        shown = ", ".join(candidates[-12:]) or "none"
        raise LayerError("no layer qualifies as the default target (not the input, a preprocessing layer or the "
                         f"patch embedding): choose one ({_LAYER}); layers a map can target: {shown}")
    return chosen


def feeding(model, output):
    """The paths of the layers the chosen graph.Output is computed from, entering nested
    functional models through the outputs used; None when the graph cannot be walked (a
    Sequential model: every layer feeds its output)."""
    if isinstance(model, keras.Sequential):
        return None
    seen, stack = set(), [(model.outputs[output.index], ())]
    while stack:
        tensor, prefix = stack.pop()
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            continue
        operation, node_index, tensor_index = history
        path = prefix + (operation.name,)
        if (path, node_index, tensor_index) in seen:  # a layer called twice is walked from each call
            continue
        seen.add((path, node_index, tensor_index))
        if graph.is_model(operation) and not isinstance(operation, keras.Sequential):
            stack.append((operation.outputs[tensor_index], path))  # only the inner output used
        nodes = getattr(operation, "_inbound_nodes", [])
        if node_index < len(nodes):
            stack.extend((t, prefix) for t in keras.tree.flatten(nodes[node_index].input_tensors))
    return {path for path, _, _ in seen}


def _cells(info):
    """The cells of a layer's map: h w, or a 3-D segmenter's d1 d2 d3."""
    return int(np.prod(info.shape[:-1]))


def bottleneck(layers, used=None, volume=False):
    """The default target of an encoder-decoder (a segmenter: its output is a map): the
    bottleneck, the last layer at the coarsest resolution (above 1x1) among the spatial layers
    the output is computed from (`used`: their paths, `feeding`; a layer inside a used layer
    counts), the deepest features before the decoder upsamples them; with `volume` (a 3-D segmenter) among the
    volumetric layers (d1, d2, d3, channels). LayerError when none is."""
    last = layers[-1].path if layers else None  # the output's own layer: the prediction, not features

    by_path = {info.path: info.layer for info in layers}

    def feeds(path):  # the layer is used, or sits inside a used layer (a subclassed block, not a model)
        return used is None or path in used or any(
            path[:n] in used and not graph.is_model(by_path.get(path[:n])) for n in range(1, len(path)))

    spatial = [info for info in layers if (info.volumetric if volume else info.spatial) and info.calls == 1
               and not _excluded(info, ()) and feeds(info.path)
               and not isinstance(info.layer, keras.layers.InputLayer) and info.path != last
               and _cells(info) > 1]  # a global pooling branch (DeepLabV3's) is no map
    if not spatial:
        raise LayerError(f"no spatial layer to explain: choose one ({_LAYER})")
    coarsest = min(_cells(info) for info in spatial)
    return [info for info in spatial if _cells(info) == coarsest][-1].path


def resolve(loaded, name):
    """The path of the layer called `name` in `loaded` (a LoadedModel), checked as a target:
    LayerError listing the candidates when there is no such layer, saying why when its output
    is neither spatial nor a grid of tokens."""
    try:
        path = graph.find_layer(loaded.model, name)
    except KeyError as error:
        candidates = [info.name for info in loaded.target_layers]
        shown = ", ".join(candidates[-12:])
        more = f" (and {len(candidates) - 12} more: see `gradcam layers`)" if len(candidates) > 12 else ""
        raise LayerError(f"{error.args[0]} in {loaded.name}; layers a map can target: {shown}{more}") from None
    info = next((info for info in loaded.layers if info.path == path), None)
    if info is None:  # a subclassed layer's sublayer that its code never calls
        raise LayerError(f"layer {graph.path_name(path)!r} is never called when {loaded.name} runs")
    volume = graph.spatial_axes(loaded.input_size) == 3
    if info.mappable and (info.volumetric == volume or info.grid is not None):  # a clip's grid is (t', h', w')
        return path
    if info.mappable and info.calls == 1:  # a 2-D layer of a volume's model, or a 3-D layer of an image's
        wanted = "(d1, d2, d3, channels) layer for a volume" if volume else "(height, width, channels) layer"
        raise LayerError(f"layer {info.name!r} has output shape {info.shape}; the model takes "
                         f"{'volumes' if volume else 'images'}, whose map needs a {wanted}")
    if info.calls > 1:
        raise LayerError(f"layer {info.name!r} is called {info.calls} times in one forward pass (its output differs "
                         "each time): a map needs a layer called once")
    if _token_layer(info):
        if not is_transformer(loaded.layers) and loaded.token_layout == (None, None):
            raise LayerError(f"layer {info.name!r} has output shape {info.shape}: a model without attention layers has "
                             f"its tokens read as a patch grid only when told so ({tokens._GRID}, {tokens._PREFIX})")
        try:
            token_grid(info, loaded.input_size, embedding_before(loaded.layers, path, loaded.input_size),
                       *loaded.token_layout)
        except ValueError as error:
            raise LayerError(f"layer {info.name!r} has output shape {info.shape}: {error}") from None
    raise LayerError(f"layer {info.name!r} has output shape {info.shape}; a class activation map needs a "
                     "(height, width, channels) layer, or (tokens, channels) tokens on a patch grid")


def upper_cut(loaded, target_path):
    """graph.cut_above at the target, for the upper-graph steps: ValueError with the reason when
    the layers above it cannot be run from its map alone (a token layer's prefix tokens are not
    in its map)."""
    grid = loaded.grid_of(target_path)
    if grid is not None and grid.prefix:
        raise ValueError(f"the graph cannot be cut at {graph.path_name(target_path)!r}: its {grid.prefix} prefix "
                         "token(s) (class, distillation, registers) are not part of its map, and the layers above "
                         "read them")
    return graph.cut_above(loaded.model, target_path, loaded.output)
