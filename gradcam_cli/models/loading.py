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

from gradcam_cli.errors import LayerError, ModelError, argument, one_line
from gradcam_cli.models import graph, heads, labels as labels_module, registry
from gradcam_cli.models.precision import set_precision
from gradcam_cli.models.preprocess import MODES as PREPROCESS_MODES


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
    warnings: tuple = ()  # what a user should know about how the scores are read

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
        return graph.flat_output(graph.run_graph(self.model, inputs, rewrite), self.output.index)

    @property
    def target_layers(self):
        return [info for info in self.layers if info.spatial]

    def target_layer(self, name=None):
        """The path of the layer to explain: `name` ('block5_conv3', 'resnet50/conv5_block3_out')
        or, when None, the default. LayerError, listing candidates, when it cannot be a target."""
        if name is None:
            return self.default_layer
        try:
            path = graph.find_layer(self.model, name)
        except KeyError as error:
            candidates = [info.name for info in self.target_layers]
            shown = ", ".join(candidates[-12:])
            more = f" (and {len(candidates) - 12} more: see `gradcam layers`)" if len(candidates) > 12 else ""
            raise LayerError(f"{error.args[0]} in {self.name}; layers with a spatial output: {shown}{more}") from None
        info = next(info for info in self.layers if info.path == path)
        if not info.spatial:
            raise LayerError(
                f"layer {info.name!r} has output shape {info.shape}; a class activation map needs a "
                "(height, width, channels) layer"
            )
        return path

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


# The largest input side accepted for a model whose input size is free: 8192 x 8192 x 3 float32
# is already 800 MB an image.
MAX_INPUT_SIDE = 8192


_UNKNOWN_CLASS = (r"Could not locate class '([^']+)'", r"Could not locate function '([^']+)'",
                  r"Unknown (?:layer|object|class|activation|function)[a-z ]*: '([^']+)'")


def unknown_classes(error, path):
    """The custom classes a failed load could not find, as 'Name (module mod)' where the file
    says, else []: from Keras's message (its wording differs between .keras and .h5)."""
    text = " ".join(str(error).split())
    names = []
    for pattern in _UNKNOWN_CLASS:
        names += [name for name in re.findall(pattern, text) if name not in names]
    if not names:
        return []
    modules = _class_modules(path)
    described = []
    for name in names:
        module = modules.get(name) or modules.get(name.split(">")[-1])
        described.append(f"class {name.split('>')[-1]!r}" + (f" (module {module})" if module else ""))
    return described


def _class_modules(path):
    """{class or registered name: module} for the non-Keras classes in a .keras file's config."""
    import json
    import zipfile

    found = {}

    def walk(node):
        if isinstance(node, dict):
            module = node.get("module")
            if isinstance(node.get("class_name"), str) and isinstance(module, str) and not module.startswith("keras"):
                found[node["class_name"]] = module
                if isinstance(node.get("registered_name"), str):
                    found[node["registered_name"]] = module
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    try:
        with zipfile.ZipFile(path) as archive:
            walk(json.loads(archive.read("config.json")))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        pass
    return found


def _input_shape(model):
    shape = model.input_shape
    if isinstance(shape, list):
        if len(shape) != 1:
            raise ModelError(f"the model has {len(shape)} inputs; an image classifier with one is needed")
        shape = shape[0]
    if len(shape) != 4:
        raise ModelError(f"the model's input shape {shape} is not (height, width, channels) images")
    return shape


def input_channels(model):
    """The model's input channels: 3 for RGB (and a free channel count), 1 for single-channel
    images; other counts are kept here (tests drive the engine with them) and refused for images
    by `check_image_channels`."""
    return _input_shape(model)[-1] or 3


def check_image_channels(loaded):
    """ModelError unless an image can give `loaded` its input: 3 channels (RGB) or 1 (luminance)."""
    if loaded.channels not in (1, 3):
        raise ModelError(f"{loaded.name} takes {loaded.channels}-channel inputs; an image gives 1 (luminance) "
                           "or 3 (RGB)")
    return loaded


def _input_size(model, requested):
    shape = _input_shape(model)
    height, width = shape[1], shape[2]
    if requested is not None:
        if height is not None and (height, width) != tuple(requested):
            raise ModelError(
                f"input size {requested[0]}x{requested[1]}: the model takes {height}x{width} inputs"
            )
        if max(requested) > MAX_INPUT_SIDE:
            raise ModelError(f"input size {requested[0]}x{requested[1]}: each side must be at most "
                               f"{MAX_INPUT_SIDE}")
        return tuple(requested)
    if height is None or width is None:
        raise ModelError(f"the model's input size is not fixed: give it ({argument('input_size', '(H, W)', 'H,W')})")
    return (height, width)


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


def describe(model, name, input_size, preprocess, class_names, spec=None, output=None, warnings=()):
    """Gather what the engine needs about `model` into a LoadedModel. `output`: the name or
    index of the output to explain (None: the model's only one)."""
    try:
        graph.ensure_built(model)
        chosen = graph.select_output(model, output)
        chain = graph.output_chain(model, chosen)
    except ValueError as error:
        hint = f"; choose the classifier output to explain ({_OUTPUT})" if "outputs" in str(error) else ""
        raise ModelError(f"{name}: {error}{hint}") from None
    channels = input_channels(model)
    if channels == 1 and preprocess in _COLOUR_MODES:
        raise ModelError(f"{name} takes 1-channel images: {preprocess} preprocessing works per colour; "
                           "use none, unit or tf")
    out_shape = chosen.shape
    if len(out_shape) != 2:
        raise ModelError(f"{name}: the output shape {out_shape} is not (batch, classes)")
    try:
        layers = graph.describe_layers(model, input_size, channels)
    except Exception as error:  # a layer whose shape cannot be inferred symbolically
        raise ModelError(f"{name}: cannot infer layer shapes: {one_line(error, 200)}") from None
    spatial = {info.path for info in layers if info.spatial}
    found = heads.logit_layer(chain, lambda path: path in spatial)
    head = heads.describe_head(found.layer, out_shape[-1])
    try:
        logits_call = heads.pre_activation(found.layer)
    except ValueError as error:
        raise ModelError(f"{name}: {error}") from None
    if class_names and len(class_names) != head.num_classes:
        raise ModelError(
            f"{len(class_names)} class names were given for a model with {head.num_classes} classes"
        )
    default_layer = graph.default_target_layer(layers)
    if default_layer is None:
        raise ModelError(f"{name}: no layer with a spatial (height, width, channels) output")
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
    )


def load(model_name, weights=None, preprocess=None, input_size=None, labels_file=None, trust=False,
         precision="float32", output=None, imports=()):
    """Load a model for explanation: a registry name or a model file path.

    weights: None (the default: ImageNet for registry models, the file's own for model files),
    'imagenet', 'none', or a weights file path. precision: a PRECISIONS key (set_precision).
    output: the name or index of the output to explain, for models with several. imports:
    modules or .py files to import first, so that the custom classes they register load.
    """
    for item in imports:
        import_user_code(item)
    loaded = _load(model_name, weights, preprocess, input_size, labels_file, trust, output)
    return set_precision(check_image_channels(loaded), precision)


def _load(model_name, weights, preprocess, input_size, labels_file, trust, output):
    spec = registry.find(model_name)
    class_names = labels_module.read_labels(labels_file) if labels_file else None
    if spec is not None:
        if input_size is not None and tuple(input_size) != (spec.input_size, spec.input_size):
            raise ModelError(
                f"{spec.name} takes {spec.input_size}x{spec.input_size} inputs; "
                f"{argument('input_size')} is for model files whose input size is not fixed"
            )
        model = build_registered(spec, weights)
        size = (spec.input_size, spec.input_size)
        names = class_names or spec.labels or labels_module.imagenet_labels()
        chosen = _resolve_preprocess(preprocess, spec.preprocess)
        notes = []
        if chosen != spec.preprocess:
            notes.append(f"preprocessing {chosen} replaces {spec.name}'s own ({spec.preprocess})")
        return describe(model, spec.name, size, chosen, names, spec, output=output, warnings=notes)

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
    size = _input_size(model, input_size)
    if weights is not None:
        _load_weights(model, Path(weights))
    try:
        out_shape = graph.select_output(model, output).shape
    except ValueError:
        out_shape = ()  # describe() says what is wrong
    if class_names is None and len(out_shape) == 2 and out_shape[-1] == 1000:
        class_names = labels_module.imagenet_labels()  # a saved ImageNet classifier
    return describe(model, path.name, size, _resolve_preprocess(preprocess, "none"), class_names, output=output)


def import_user_code(item):
    """Import a module by name ('mypackage.layers') or a Python file ('layers.py'), so that the
    Keras classes it registers (keras.saving.register_keras_serializable) can be deserialized.
    Importing runs the module's code. ModelError in one line when it cannot be imported."""
    import importlib
    import importlib.util

    text = str(item)
    path = Path(text)
    try:
        if text.endswith(".py") or path.is_file():
            if not path.is_file():
                raise ModelError(f"cannot import {text}: no such file")
            name = path.stem
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None:
                raise ModelError(f"cannot import {text}: not a Python file")
            module = importlib.util.module_from_spec(spec)
            folder = str(path.resolve().parent)
            if folder not in sys.path:
                sys.path.insert(0, folder)  # as `python FILE` does: its sibling modules import
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
            return module
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # `--import mylayers` finds ./mylayers.py
        return importlib.import_module(text)
    except ModelError:
        raise
    except ModuleNotFoundError as error:
        raise ModelError(f"cannot import {text}: {error}") from None
    except Exception as error:  # the user's module failed while running: say how, in one line
        raise ModelError(f"cannot import {text}: {type(error).__name__}: {one_line(error, 200)}") from None
