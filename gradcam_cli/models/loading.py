"""Loading models: keras.applications by name (with ImageNet weights through Keras's own
download and cache) or a user's .keras / .h5 file, and describing what the engine needs.

The user's model is never modified: logits are read by calling the last layer differently
during the engine's forward pass (heads.pre_activation). The one change made to the model object
in memory is on request: `--precision mixed-bfloat16` sets its layers' compute dtype
(set_precision), and a file is never written back.
"""

import contextlib
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras

from gradcam_cli.errors import GradcamError, ModelError, argument, one_line
from gradcam_cli.models import graph, heads, hub, input_shape, registry, target_layers, tokens
from gradcam_cli.models import labels as labels_module
from gradcam_cli.models.input_shape import MAX_INPUT_SIDE  # noqa: F401 (the CLI's --input-size limit is tied to it)
from gradcam_cli.models.precision import set_precision
from gradcam_cli.models.preprocess import MODES as PREPROCESS_MODES
from gradcam_cli.models.user_code import import_user_code, unknown_classes


@dataclass
class LoadedModel:
    """A model ready to explain (load_model's answer): the Keras model, untouched, and what this
    package learned of it: its input size and channels, preprocessing, class names, the classifier
    head (how class scores are read before the softmax), the output explained, the default target
    layer and every layer's output shape, warnings for the user, and for a dilated copy the model
    it was made from."""

    model: keras.Model
    name: str
    input_size: tuple  # (height, width)
    preprocess: str
    labels: tuple  # class names, or () when unknown
    head: heads.Head
    final_path: tuple  # the layer producing the output
    logits_call: object  # replaces that layer's call to skip its softmax/sigmoid, or None
    default_layer: tuple
    layers: list  # graph.LayerInfo for every layer, with output shapes at input_size
    spec: object = None  # the registry entry, for keras.applications models
    reference: object = None  # for a dilated copy (dilated.dilated_copy): the LoadedModel it was made from
    precision: str = "float32"  # a precision.PRECISIONS key (precision.set_precision)
    channels: int = 3  # the model's input channels: 3 (RGB) or 1 (the image's luminance)
    output: object = None  # the graph.Output explained (the model's only one, or the one chosen)
    token_layout: tuple = (None, None)  # (grid (h, w), prefix tokens) given by the user, each or None
    view: object = None  # rgb -> (view, box): the model's own resizing (a keras-hub preset's), else None
    warnings: tuple = ()  # what a user should know about how the scores are read
    output_kind: str = "classes"  # heads.output_kind, or 'detections' (which targets fit)
    detection: tuple = None  # a detector's (boxes, scores) output indices: `forward` gives them joined
    decode: object = None  # a detector's own decoding of its outputs into them (hub.detection_decoder)

    @property
    def num_classes(self):
        return self.head.num_classes

    @property
    def colour(self):
        """The channel layout the model is given: 'rgb', or 'luminance' for 1-channel models."""
        return "luminance" if self.channels == 1 else "rgb"

    def logits_rewrite(self, path, layer):
        """A run_graph rewrite that reads the chosen output before its softmax/sigmoid."""
        if path == self.final_path and self.logits_call is not None:
            return self.logits_call
        return None

    def forward(self, inputs, rewrite):
        """The chosen output of the model on a preprocessed batch, called layer by layer with
        `rewrite` (graph.run_graph)."""
        return self.chosen(graph.run_graph(self.model, inputs, rewrite))

    def chosen(self, outputs):
        """The output explained, of all the model's `outputs`: for a detector its boxes and class
        scores joined, (batch, N, 4 + C)."""
        if self.detection is None:
            return graph.flat_output(outputs, self.output.index)
        flat = keras.tree.flatten(outputs)
        boxes, scores = (flat[self.detection[0]], flat[self.detection[1]]) if self.decode is None else self.decode(flat)
        return keras.ops.concatenate([boxes, keras.ops.cast(scores, boxes.dtype)], axis=-1)

    @property
    def target_layers(self):
        """The layers a map can target: spatial outputs, and token layers read as grids."""
        return [info for info in self.layers if info.mappable]

    def target_layer(self, name=None):
        """The path of the layer to explain: `name` ('block5_conv3', 'resnet50/conv5_block3_out')
        or, when None, the default. LayerError, listing candidates, when it cannot be a target."""
        return self.default_layer if name is None else target_layers.resolve(self, name)

    def grid_of(self, path):
        """The tokens.TokenGrid of the layer at `path`, or None (a spatial layer)."""
        return next((info.grid for info in self.layers if info.path == tuple(path)), None)

    def label(self, index):
        return self.labels[index] if 0 <= index < len(self.labels) else str(index)


def keras_home():
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


# Arguments the messages name (errors.argument: spelled as the API or the command line takes them).
_WEIGHTS_FILE = argument("weights", "'PATH'", "PATH")
_RANDOM_WEIGHTS = argument("weights", "'none'", "none")
_IMPORTS = argument("imports", "['MODULE']", "MODULE|FILE.py")
_OUTPUT = argument("output", "'NAME' or INDEX", "NAME|INDEX")

def cached_weights_path(spec):
    """Where Keras's get_file keeps (or would download) the model's ImageNet weights."""
    return keras_home() / "models" / spec.weights_file


def _offline_message(spec, error):
    path = cached_weights_path(spec)
    return (
        f"cannot download ImageNet weights for {spec.name} ({spec.weights_file}): "
        f"{one_line(error, 200)}. Without a network, put that file at {path} "
        f"(or set KERAS_HOME), or give a weights file ({_WEIGHTS_FILE}) or random weights "
        f"({_RANDOM_WEIGHTS})"
    )


def build_application(spec, weights="imagenet"):
    """Build a keras.applications model from its registry entry, classifier without softmax.

    weights: 'imagenet' (Keras's cache under KERAS_HOME/models, downloaded if missing),
    'none' (random initialisation) or a path to a weights file.
    """
    base_constructor = getattr(keras.applications, spec.constructor)

    def constructor(**kwargs):
        with warnings.catch_warnings():  # MobileNetV3 warns about input_shape even when it is 224
            warnings.simplefilter("ignore", UserWarning)
            return base_constructor(**kwargs)

    size = spec.input_size
    kwargs = {"classifier_activation": None, "input_shape": (size, size, 3)}
    if weights == "imagenet":
        cached = cached_weights_path(spec)
        if cached.is_file():
            model = constructor(weights=None, **kwargs)
            _load_weights(model, cached)
            return model
        try:
            # Keras reports the download ("Downloading data from ...", a progress bar) on stdout,
            # which carries only results here (JSON lines): send it to stderr.
            with contextlib.redirect_stdout(sys.stderr):
                return constructor(weights="imagenet", **kwargs)
        except Exception as error:  # get_file raises bare Exception("URL fetch failure...")
            if "fetch failure" in str(error) or isinstance(error, OSError):
                raise ModelError(_offline_message(spec, error)) from None
            raise
    model = constructor(weights=None, **kwargs)
    if weights not in (None, "none"):
        _load_weights(model, Path(weights))
    return model


def build_registered(spec, weights=None):
    """A registry model: keras.applications, or a shipped demo model (its trained file by
    default, `none` for a random initialisation of the same architecture, or a weights file)."""
    if spec.is_application:
        return build_application(spec, weights or "imagenet")
    if weights in (None, "trained"):
        from importlib import resources

        with resources.as_file(resources.files("gradcam_cli").joinpath("data", spec.file)) as path:
            return load_model_file(path)
    if weights == "imagenet":
        raise ModelError(f"{spec.name} is trained on synthetic scenes and has no ImageNet weights: use its own "
                         f"(the default), random weights ({_RANDOM_WEIGHTS}) or a weights file ({_WEIGHTS_FILE})")
    from gradcam_cli.models import demo

    model = getattr(demo, spec.constructor)(input_size=spec.input_size, classes=len(spec.labels))
    if weights != "none":
        _load_weights(model, Path(weights))
    return model


def _load_weights(model, path):
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    try:
        model.load_weights(str(path))
    except Exception as error:  # h5py, Keras and OS errors all mean the same to the user
        raise ModelError(f"cannot load weights file {path}: {one_line(error, 200)}") from None


def load_model_file(path, trust=False):
    """Load a user's .keras or legacy .h5 model without compiling it.

    Keras's safe_mode stays on unless `trust`: a .keras file holding a Lambda layer carries
    Python bytecode, which should only run from a file one trusts.
    """
    from gradcam_cli.models import layers, vit  # noqa: F401  (registers the layers of the package's own models)

    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".keras", ".h5", ".hdf5"):
        raise ModelError(
            f"cannot load {path}: expected a .keras or .h5 model file "
            "(a TensorFlow SavedModel folder must first be re-saved with Keras 3 as .keras)"
        )
    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=not trust)
    except Exception as error:
        text = one_line(error, 200)
        unknown = unknown_classes(error, path)
        if unknown:
            raise ModelError(
                f"cannot load model {path}: it uses {', '.join(unknown)}, which Keras does not know; "
                "import the module or .py file that defines and registers "
                f"{'it' if len(unknown) == 1 else 'them'} (keras.saving.register_keras_serializable) first "
                f"({_IMPORTS})"
            ) from None
        if "Lambda" in text or "safe_mode" in text:
            raise ModelError(
                f"{path} contains a Lambda layer, which Keras will not load in safe mode; "
                f"if you trust the file, allow it ({argument('trust', 'True', '')})"
            ) from None
        if suffix != ".keras":
            raise ModelError(
                f"cannot load legacy model {path} with Keras {keras.__version__}: {text}. "
                "Files saved by TF <= 2.15 may need re-saving: load them there and "
                "model.save('model.keras')"
            ) from None
        raise ModelError(f"cannot load model {path}: {text}") from None


def _resolve_preprocess(value, default):
    if value is None:
        return default
    value = value.lower()
    if value in ("0-1", "0..1", "scale"):
        value = "unit"
    if value in PREPROCESS_MODES:
        return value
    spec = registry.find(value)
    if spec is not None:
        return spec.preprocess
    choices = ", ".join(list(PREPROCESS_MODES) + ["a keras.applications model name"])
    raise ModelError(f"unknown preprocessing {value!r}; choose from {choices}")


# Per-colour preprocessing that a single-channel input cannot take.
_COLOUR_MODES = ("caffe", "torch")


def describe(model, name, input_size, preprocess, class_names, spec=None, output=None, warnings=(),
             token_layout=(None, None), decoder=None):
    """Gather what the engine needs about `model` into a LoadedModel. `output`: the name or
    index of the output to explain (None: the model's only one). token_layout: (grid (h, w),
    prefix tokens) for token layers, each None to find it (models/tokens.py). decoder: a detector's
    own decoding (hub.detection_decoder: its output names and decode)."""
    try:
        graph.ensure_built(model)
        if decoder is not None:
            output = ",".join(decoder[0])
        detection = graph.detection_outputs(model, output) if output is None or "," in str(output) else None
        chosen = graph.select_output(model, output) if detection is None else _detection_output(detection)
        chain = graph.output_chain(model, chosen) if detection is None else []
    except ValueError as error:
        hint = f"; choose the classifier output to explain ({_OUTPUT})" if "outputs" in str(error) else ""
        raise ModelError(f"{name}: {error}{hint}") from None
    channels = input_shape.input_channels(model)
    if channels == 1 and preprocess in _COLOUR_MODES:
        raise ModelError(f"{name} takes 1-channel images: {preprocess} preprocessing works per colour; "
                           "use none, unit or tf")
    out_shape = chosen.shape
    output_kind = heads.output_kind(chain, out_shape) if detection is None else "detections"
    if output_kind is None:
        raise ModelError(f"{name}: the output shape {tuple(out_shape)} is neither (batch, units) nor a map "
                         "(batch, height, width, classes): no target reads it")
    try:
        layers = graph.describe_layers(model, input_size, channels)
    except Exception as error:  # a layer whose shape cannot be inferred symbolically
        raise ModelError(f"{name}: cannot infer layer shapes: {one_line(error, 200)}") from None
    layers = target_layers.annotate(layers, input_size, *token_layout)
    spatial = {info.path for info in layers if info.mappable}
    if detection is None:
        found = heads.logit_layer(chain, lambda path: path in spatial)
        head = heads.describe_head(found.layer, out_shape[-1])
        try:
            logits_call = heads.pre_activation(found.layer)
        except ValueError as error:
            raise ModelError(f"{name}: {error}") from None
    else:  # a detector's class scores are read as given (pytorch-grad-cam adds them to an IoU)
        found, head, logits_call = heads.LogitLayer((), None), heads.Head("scores", out_shape[-1]), None
    if class_names and len(class_names) != head.num_classes:
        raise ModelError(
            f"{len(class_names)} class names were given for a model with {head.num_classes} classes"
        )
    try:
        default_layer = (target_layers.bottleneck(layers, target_layers.feeding(model, chosen),
                                                   graph.spatial_axes(input_size) == 3) if output_kind == "map" else
                         target_layers.default_target_layer(model, layers, input_size, token_layout))
    except GradcamError as error:
        raise ModelError(f"{name}: {error.args[0]}") from None
    return LoadedModel(
        model=model,
        name=name,
        input_size=input_size,
        preprocess=preprocess,
        labels=tuple(class_names or ()),
        head=head,
        final_path=found.path,
        logits_call=logits_call,
        default_layer=default_layer,
        layers=layers,
        spec=spec,
        channels=channels,
        output=chosen,
        warnings=tuple(warnings) + ((found.warning,) if found.warning else ()),
        token_layout=tuple(token_layout),
        output_kind=output_kind,
        detection=None if detection is None else (detection[0].index, detection[1].index),
        decode=None if decoder is None else decoder[1],
    )


def _detection_output(pair):
    """The graph.Output standing for a detector's two outputs: named 'BOXES,SCORES', the scores' shape."""
    boxes, scores = pair
    return graph.Output(None, f"{boxes.name},{scores.name}", scores.layer_name, scores.shape)


def load(model_name, weights=None, preprocess=None, input_size=None, labels_file=None, trust=False,
         precision="float32", output=None, imports=(), grid=None, prefix_tokens=None):
    """Load a model for explanation: a registry name or a model file path.

    weights: None (the default: ImageNet for registry models, the file's own for model files),
    'imagenet', 'none', or a weights file path. precision: a PRECISIONS key (set_precision).
    output: the name or index of the output to explain, for models with several. imports:
    modules or .py files to import first, so that the custom classes they register load.
    grid, prefix_tokens: how token layers read as maps ((h, w) or 'HxW', and a count), each
    None to find it from the model (models/tokens.py).
    """
    for item in imports:
        import_user_code(item)
    layout = (_grid(grid), None if prefix_tokens is None else int(prefix_tokens))
    if layout[1] is not None and layout[1] < 0:
        raise ModelError(f"{argument('prefix_tokens', str(prefix_tokens))}: a count of tokens, 0 or more")
    loaded = _load(model_name, weights, preprocess, input_size, labels_file, trust, output, layout)
    return set_precision(input_shape.check_image_channels(loaded), precision)


def _grid(grid):
    if grid is None or isinstance(grid, (tuple, list)) and len(grid) == 2:
        return None if grid is None else (int(grid[0]), int(grid[1]))
    try:
        return tokens.parse_grid(grid)
    except ValueError as error:
        raise ModelError(f"{argument('grid', repr(grid))}: {error}") from None


def _load(model_name, weights, preprocess, input_size, labels_file, trust, output, layout=(None, None)):
    class_names = labels_module.read_labels(labels_file) if labels_file else None
    if isinstance(model_name, keras.Model) or hub.is_preset(model_name):
        if weights is not None:
            raise ModelError(f"{argument('weights', repr(weights))} is for keras.applications names and model "
                             "files; a model object or keras-hub preset brings its own")
        if not isinstance(model_name, str):
            return _from_object(model_name, preprocess, input_size, class_names, output, layout)
        loaded = _from_object(hub.load_preset(model_name), preprocess, input_size, class_names, output, layout)
        loaded.name = model_name  # records name the preset as given, not its class ("vi_t_image_classifier")
        return loaded
    spec = registry.find(model_name)
    if spec is not None:
        size = spec.shape  # (size, size), or a volume demo's three sides
        if input_size is not None and tuple(input_size) != size:
            raise ModelError(
                f"{spec.name} takes {'x'.join(map(str, size))} inputs; "
                f"{argument('input_size')} is for model files whose input size is not fixed"
            )
        model = build_registered(spec, weights)
        names = class_names or spec.labels or labels_module.imagenet_labels()
        chosen = _resolve_preprocess(preprocess, spec.preprocess)
        notes = []
        if chosen != spec.preprocess:
            notes.append(f"preprocessing {chosen} replaces {spec.name}'s own ({spec.preprocess})")
        return describe(model, spec.name, size, chosen, names, spec, output=output, warnings=notes,
                        token_layout=layout)

    path = Path(model_name)
    if not path.exists() and not re.search(r"[/\\.]", model_name):
        raise ModelError(
            f"unknown model {model_name!r}: not a keras.applications name (see 'gradcam models') "
            "nor a model file"
        )
    if weights in ("imagenet", "none"):
        raise ModelError(
            f"{argument('weights', repr(weights))} is for keras.applications models; a model file brings its own "
            f"(or give a weights file, {_WEIGHTS_FILE})"
        )
    model = load_model_file(path, trust=trust)
    size = input_shape.input_size(model, input_size)
    if weights is not None:
        _load_weights(model, Path(weights))
    try:
        out_shape = graph.select_output(model, output).shape
    except ValueError:
        out_shape = ()  # describe() says what is wrong
    if class_names is None and len(out_shape) == 2 and out_shape[-1] == 1000:
        class_names = labels_module.imagenet_labels()  # a saved ImageNet classifier
    return describe(model, path.name, size, _resolve_preprocess(preprocess, "none"), class_names, output=output,
                    token_layout=layout)


def _from_object(model, preprocess, input_size, class_names, output, layout):
    """A LoadedModel of a Keras model object: a keras-hub ImageClassifier with its converter's
    view and scale and offset (models/hub.py), or any functional model (`preprocess` 'none' unless
    given)."""
    name = model.name
    view = None
    if hub.is_hub_model(model):
        converter = hub.converter_of(model)
        size = hub.input_size_of(model, converter)
        if input_size is not None and tuple(input_size) != size:
            raise ModelError(f"{name} takes {size[0]}x{size[1]} inputs (its image converter's size)")
        chosen = hub.preprocessing(converter) if preprocess is None else _resolve_preprocess(preprocess, "none")
        if converter is not None and getattr(converter, "image_size", None) is not None:
            try:
                view = hub.ConverterView(converter, size)
            except ModelError as error:
                raise ModelError(f"{name}: {error.args[0]}") from None
    else:
        size = input_shape.input_size(model, input_size)
        chosen = _resolve_preprocess(preprocess, "none")
    try:
        units = graph.select_output(model, output).shape[-1] if len(model.outputs) == 1 or output is not None else None
    except ValueError:  # a detector's 'BOXES,SCORES', or a name describe() refuses
        units = None
    if class_names is None and units == 1000:
        class_names = labels_module.imagenet_labels()
    loaded = describe(model, name, size, chosen, class_names, output=output, token_layout=layout,
                      decoder=hub.detection_decoder(model, size) if hub.is_hub_model(model) else None)
    loaded.view = view
    return loaded
