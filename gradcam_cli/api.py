"""The Python API: load a model once, build an explainer once, call it on images.

    from gradcam_cli import load_model, Explainer

    model = load_model("demo-gap")                      # a name, or a .keras / .h5 path
    explain = Explainer(model, method="gradcam", batch_size=16)
    for e in explain(["a.png", "b.jpg"], top_k=2):      # paths, or RGB arrays
        e.map, e.small_map, e.class_index, e.label, e.score, e.probability, e.predictions
        e.overlay(colormap="jet", alpha=0.4)            # an RGB array
        e.save("out/")                                  # the files the command writes

An Explainer built from a model name or path (`Explainer("demo-gap", ...)`) holds only plain,
picklable arguments until its first call, which loads the model in the process that makes it:
a Ray or Dask worker can receive one and build its own. Errors are `gradcam_cli.errors`'s
GradcamError family (ValueErrors), whose messages say what is wrong.

The command line runs the same steps (`Explainer.prepare_run` gives the pipeline its engine and
context) through a streamed pipeline that writes files as it goes.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradcam_cli.errors import ClassError, GradcamError, ImageError, LayerError


def load_model(model, weights=None, preprocess=None, input_size=None, labels=None, trust=False,
               precision="float32", output=None, imports=(), device="auto"):
    """A model ready to explain: a keras.applications or demo name ('resnet50', 'demo-gap') or a
    .keras / .h5 path. weights: None (ImageNet for named models, the file's own), 'none'
    (random), or a weights file. preprocess: a preprocessing mode (models.preprocess.MODES) or a
    keras.applications name. labels: a class-names file. output: the output to explain, by
    name or index, for models with several. imports: modules or .py files to import first (they
    run), for custom layers. Returns a models.loading.LoadedModel."""
    from gradcam_cli._keras import import_keras

    import_keras(device=device)
    from gradcam_cli.models.loading import load

    return load(model, weights=weights, preprocess=preprocess, input_size=input_size, labels_file=labels,
                trust=trust, precision=precision, output=output, imports=tuple(imports))


@dataclass
class Explanation:
    """One map: an image explained for one class."""

    image: np.ndarray  # (H, W, 3) uint8 RGB, as decoded
    small_map: np.ndarray  # (h, w) at the target layer's resolution, after the ReLU
    class_index: int
    label: str
    score: float  # the class score before the softmax
    probability: float
    predictions: list  # the top 5: [{"class", "label", "probability"}]
    method: str
    layer: str
    source: str = None  # the input's path, or None for an array
    name: str = "image.png"  # the name outputs are given (the file name, extension kept)
    tag: str = None  # the file-name tag: 'class3', 'top2', or None for the one top-1 map
    input_gradient: np.ndarray = None  # (H', W', C) at the model's input size, backprop methods
    box: tuple = None  # (x0, y0, x1, y1): the part of the image the model saw

    @property
    def map(self):
        """The map at the image's resolution, normalised to [0, 1] (zero everywhere if empty)."""
        from gradcam_cli.pipeline import full_map

        return full_map(self.small_map, self.box, self.image.shape)[1]

    @property
    def empty(self):
        return not float(self.small_map.max(initial=0.0)) > 0.0

    def heatmap(self, colormap="jet"):
        """The map in `colormap` as an (H, W, 3) uint8 RGB array."""
        from gradcam_cli import render

        return render.outside_box(render.colorize(self.map, colormap), self.image, self.box)

    def overlay(self, colormap="jet", alpha=0.4):
        """The coloured map blended onto the image: an (H, W, 3) uint8 RGB array."""
        from gradcam_cli import render
        from gradcam_cli.pipeline import map_overlay

        return map_overlay(self.image, render.colorize(self.map, colormap), self.box, alpha)

    def save(self, output_dir, save=None, colormap="jet", alpha=0.4):
        """Write this map's files as the command does (OUTDIR/NAME.METHOD[.TAG].KIND.png):
        `save` kinds (default: the method's, as the command's --save). Returns {kind: path}."""
        from gradcam_cli import pipeline
        from gradcam_cli.inputs import Source
        from gradcam_cli.methods import METHODS

        options = pipeline.Options(output_dir=Path(output_dir), method=self.method,
                                   save=tuple(save or METHODS[self.method].default_save),
                                   colormap=colormap.lower(), alpha=alpha)
        paths = pipeline.output_paths(Source(Path(self.source or self.name), self.name), options,
                                      pipeline.Target(0, self.tag))
        entry = pipeline.render_map(self.label, self.image, self.box, self.small_map, self.class_index,
                                    self.score, self.probability, paths, options)
        if self.input_gradient is not None:
            from gradcam_cli.methods.guided import guided_gradcam

            pipeline.render_gradients(self.image, self.box, self.input_gradient,
                                      guided_gradcam(self.input_gradient, self.small_map), paths, entry["outputs"])
        return entry["outputs"]


@dataclass
class _Ready:
    """What an Explainer builds on first use: the model it computes with, engine, context."""

    loaded: object
    engine: object  # its target_path is the layer explained (in the dilated copy, for those)
    context: object
    reference: object = None  # the original model, when `loaded` is its dilated copy


class Explainer:
    """Explain images with one model, method and layer; build once, call many times.

    model: a LoadedModel (load_model), or a name or path loaded on first use with
    `load_options` (load_model's arguments). method: a methods.METHODS name. layer: the target
    layer (None: the model's default). pool: Grad-CAM's channel pooling ('mean' or 'max').
    crop: centre-crop each image to the model's input instead of resizing it whole. max_masks:
    for methods that score masked inputs, the number of highest-variance channels kept.
    """

    def __init__(self, model, method="gradcam", layer=None, batch_size=16, pool="mean", crop=False, jit=False,
                 max_masks=None, **load_options):
        from gradcam_cli.methods import METHODS, POOLING

        if method not in METHODS:
            raise GradcamError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
        if pool not in POOLING:
            raise GradcamError(f"unknown pooling {pool!r}; choose from {', '.join(POOLING)}")
        if int(batch_size) < 1:
            raise GradcamError(f"the batch size must be at least 1. Received: {batch_size}")
        self.model, self.method, self.layer = model, method, layer
        self.batch_size, self.pool, self.crop, self.jit = int(batch_size), pool, crop, jit
        self.max_masks = max_masks
        self.load_options = load_options
        self._ready = None

    def __getstate__(self):  # what a worker receives: the arguments, not a built engine
        state = dict(self.__dict__, _ready=None)
        if not isinstance(self.model, (str, Path)):
            raise GradcamError("an Explainer built on a loaded model cannot be sent to another process; "
                               "give it the model's name or path instead")
        return state

    @property
    def loaded(self):
        """The model explained (for dilated methods, its dilated copy)."""
        return self._prepare().loaded

    def _prepare(self):
        if self._ready is None:
            self._ready = self.prepare_run(self.batch_size)
        return self._ready

    def prepare_run(self, batch_size):
        """Load the model if needed and build what computing maps takes: the engine for the
        target layer (on the dilated copy for dilated methods, its batch cut to fit memory)
        and the method's context. GradcamError when the method does not apply."""
        from gradcam_cli.engine import Engine
        from gradcam_cli.methods import METHODS, context_for
        from gradcam_cli.models.graph import path_name
        from gradcam_cli.models.loading import dilated_copy, fitting_batch

        loaded = self.model
        if isinstance(loaded, (str, Path)):
            loaded = load_model(str(loaded), **self.load_options)
        target_path = loaded.target_layer(self.layer)
        try:
            context = context_for(self.method, loaded, target_path, self.pool, self.max_masks)
        except GradcamError:
            raise
        except ValueError as error:
            raise LayerError(f"{self.method} does not apply to {loaded.name} at layer "
                             f"{path_name(target_path)}: {error}") from None
        reference = None
        network = METHODS[self.method].network
        if network:
            reference = loaded
            loaded, target_path = dilated_copy(loaded, network, target_path)
            batch_size = fitting_batch(loaded, batch_size)
        engine = Engine(loaded, target_path, batch_size=batch_size, jit=self.jit)
        return _Ready(loaded, engine, context, reference)

    def __call__(self, images, classes=None, top_k=1, names=None):
        """Explanations of `images` (paths, or (H, W, 3) / (H, W) uint8 arrays): for each image,
        one per class of `classes` (indices or class names), else one per its `top_k` most
        likely classes; in input order. `names`: the output names for arrays (default
        imageN.png). ImageError naming the file for an image that cannot be read."""
        from gradcam_cli import pipeline
        from gradcam_cli.models.graph import path_name
        from gradcam_cli.models.labels import class_index

        ready = self._prepare()
        loaded = ready.loaded
        items = list(images) if not isinstance(images, (str, Path, np.ndarray)) else [images]
        wanted = [classes] if isinstance(classes, (int, str)) else list(classes or ())
        indices = tuple(dict.fromkeys(class_index(c, loaded.labels, loaded.num_classes) for c in wanted))
        if not indices and not 1 <= top_k <= loaded.num_classes:
            raise ClassError(f"top_k must be 1..{loaded.num_classes} for {loaded.name}. Received: {top_k}")
        plan = pipeline.targets(pipeline.Options(output_dir=Path("."), classes=indices, top_k=top_k))
        layer = path_name(ready.engine.target_path)
        explanations = []
        for start in range(0, len(items), ready.engine.batch_size):
            chunk = items[start : start + ready.engine.batch_size]
            decoded = [_decode(item, start + i, names) for i, item in enumerate(chunk)]
            inputs, boxes = pipeline.prepare(loaded, [rgb for rgb, _, _ in decoded], self.crop)
            per_target = [(target, pipeline.compute_maps(loaded, ready.engine, inputs,
                                                         np.full(len(chunk), target.code), self.method,
                                                         ready.context))
                          for target in plan]
            for i, (rgb, source, name) in enumerate(decoded):
                for target, computed in per_target:
                    explanations.append(_explanation(loaded, computed, i, rgb, source, name, boxes[i], target,
                                                     self.method, layer))
        return explanations


def _decode(item, index, names):
    """(rgb, source path or None, output name) of one input."""
    from gradcam_cli.images import load_rgb

    if isinstance(item, np.ndarray):
        array = np.asarray(item)
        if array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8 or min(array.shape[:2]) < 1:
            raise ImageError(f"image {index}: expected an (H, W, 3) or (H, W) uint8 array. "
                             f"Received: shape {item.shape}, dtype {item.dtype}")
        name = names[index] if names is not None else f"image{index}.png"
        return array, None, name
    path = Path(item)
    try:
        rgb = load_rgb(path)
    except ImageError as error:
        raise ImageError(f"{path}: {error}") from None
    return rgb, str(path), names[index] if names is not None else path.name


def _explanation(loaded, computed, i, rgb, source, name, box, target, method, layer):
    from gradcam_cli.pipeline import predictions

    class_index = int(computed.classes[i])
    return Explanation(
        image=rgb, small_map=computed.small_maps[i], class_index=class_index, label=loaded.label(class_index),
        score=float(computed.scores[i, class_index]), probability=float(computed.probabilities[i, class_index]),
        predictions=predictions(loaded, computed.probabilities[i]), method=method, layer=layer, source=source,
        name=name, tag=target.tag, box=box,
        input_gradient=None if computed.input_gradients is None else computed.input_gradients[i],
    )
