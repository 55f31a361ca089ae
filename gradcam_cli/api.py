"""The Python API: load a model once, build an explainer once, call it on images.

    from gradcam_cli import load_model, Explainer

    model = load_model("demo-gap")                      # a name, or a .keras / .h5 path
    explain = Explainer(model, method="gradcam", batch_size=16)
    for e in explain(["a.png", "b.jpg"], top_k=2):      # paths, or RGB arrays
        e.map, e.small_map, e.class_index, e.label, e.score, e.probability, e.predictions
        e.overlay(colormap="jet", alpha=0.4)            # an RGB array
        e.save("out/")                                  # the files the command writes

An Explainer made from a model's name is picklable until its first call (a Ray worker builds its
own). Volumes (arrays of 3 or 4 axes) go to a Conv3D model as they are; files.writer writes maps."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast

import numpy as np
import numpy.typing as npt

from gradcam_cli.errors import GradcamError, LayerError
from gradcam_cli.explain.prepared import Prepared, check_volumes, prepare_volumes, shared_engine, takes_volumes
from gradcam_cli.files.clips import check_frames, model_inputs
from gradcam_cli.files.explanation import Explanation, ImageMaps, explanation  # noqa: F401 (Explanation: public here)
from gradcam_cli.files.images import decode_input, input_list, read_input
from gradcam_cli.models.labels import class_codes  # noqa: F401 (part of the API)

if TYPE_CHECKING:  # (the casts below: explain/prepared.py's Prepared types its fields `object`)
    import keras

    from gradcam_cli.explain.compute import MapBatch
    from gradcam_cli.explain.engine import Engine
    from gradcam_cli.explain.targets import Bound
    from gradcam_cli.files.inputs import Source
    from gradcam_cli.files.writing import FileOptions, Report
    from gradcam_cli.models.loading import LoadedModel

# What the API takes: an image is a path or an (H, W, 3) / (H, W) uint8 RGB array; a class an index or a name,
# one for all images or one per image (None: the image's top-1); a model a LoadedModel, name, path or Explainer.
ImageInput: TypeAlias = str | Path | npt.NDArray[np.uint8]
Images: TypeAlias = ImageInput | Iterable[ImageInput]
ClassChoice: TypeAlias = int | str
Classes: TypeAlias = ClassChoice | Sequence[ClassChoice | None] | None
ModelInput: TypeAlias = "LoadedModel | str | Path | Explainer"


def load_model(model: str | os.PathLike[str] | keras.Model, weights: str | os.PathLike[str] | None = None,
               preprocess: str | None = None, input_size: tuple[int, int] | None = None,
               labels: str | os.PathLike[str] | None = None, trust: bool = False,
               precision: Literal["float32", "mixed-bfloat16"] = "float32", output: str | int | None = None,
               imports: Iterable[str] = (), device: Literal["auto", "cpu", "gpu"] = "auto",
               grid: tuple[int, int] | str | None = None, prefix_tokens: int | None = None) -> LoadedModel:
    """A model ready to explain: a keras.applications or demo name ('resnet50', 'demo-gap'), a
    .keras / .h5 path, a keras-hub preset ('hub:vit_base_patch16_224_imagenet', 'kaggle://...',
    'hf://...'; the [hub] extra) or a Keras model object (a keras-hub ImageClassifier is given
    its preset's preprocessing). weights: None (ImageNet for named models, the file's own), 'none'
    (random), or a weights file. preprocess: a preprocessing mode (models.preprocess.MODES) or a
    keras.applications name. labels: a class-names file. output: the output to explain, by
    name or index, for models with several. imports: modules or .py files to import first (they
    run), for custom layers. grid, prefix_tokens: how a vision transformer's token layers read as
    maps ((h, w) or 'HxW'; the tokens before the grid), found from the model when None. Returns a
    models.loading.LoadedModel."""
    from gradcam_cli.explain.runtime import import_keras

    import_keras(device=device)
    from gradcam_cli.models.loading import load

    return load(model, weights=weights, preprocess=preprocess, input_size=input_size, labels_file=labels,
                trust=trust, precision=precision, output=output, imports=tuple(imports), grid=grid,
                prefix_tokens=prefix_tokens)


# load_model's arguments, which an Explainer given a model's name or path passes on.
LOAD_OPTIONS = ("weights", "preprocess", "input_size", "labels", "trust", "precision", "output", "imports", "device",
                "grid", "prefix_tokens")


class Explainer:
    """Explain images with one model, method and layer; build once, call many times.

    model: a LoadedModel (load_model), or a name or path loaded on first use with load_model's
    arguments (LOAD_OPTIONS, among `arguments`). method: a methods.METHODS name. layer: the
    target layer (None: the model's default), or a list of layers whose maps are averaged (each
    normalised and upsampled to the input size: smoothing.py). pool: Grad-CAM's channel pooling
    ('mean' or 'max'). crop: centre-crop each image to the model's input instead of resizing it
    whole. aug_smooth: average each map over flipped and zoomed views (smoothing.py).
    eigen_smooth: the first principal component of the map's channel terms instead of their sum.
    network: 'exact' or 'no-pooling' to compute `method` on a dilated copy of the model
    (full-resolution maps; the methods dilated and dilated-no-pooling are Grad-CAM on them).
    compat: 'pytorch-grad-cam' or 'tf-keras-vis': the method's open choices made as that library
    makes them (its registry entry's choices). target: what the maps explain (explain/targets.py):
    None (each image's classes), a spec ('segment:circle', 'similar:ref.png', 'output:0',
    'class:3') or a callable outputs (B, ...) -> (B,) in keras.ops. frames: for a video model
    (input (T, H, W, 3)), the frames each clip path gives, evenly sampled (files.clips; default T).
    inputs: how many inputs it will explain, when known: one batch of a deep model then computes without
    tracing (explain.eager.eager_pays); None: the steps are compiled on first use.
    `arguments`: the method's own options (`gradcam methods NAME`; None: "not given"), and load_model's.
    """

    def __init__(self, model: LoadedModel | str | Path, method: str = "gradcam",
                 layer: str | Sequence[str] | None = None, batch_size: int = 16, pool: Literal["mean", "max"] = "mean",
                 crop: bool = False, jit: bool = False, aug_smooth: bool = False, eigen_smooth: bool = False,
                 network: Literal["exact", "no-pooling"] | None = None,
                 compat: Literal["pytorch-grad-cam", "tf-keras-vis"] | None = None,
                 target: str | Callable[[Any], Any] | Bound | None = None, frames: int | None = None,
                 inputs: int | None = None, **arguments: Any) -> None:
        from gradcam_cli.explain.methods import METHODS, NETWORKS, OPTION_NAMES, POOLING

        if method not in METHODS:
            raise GradcamError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
        if pool not in POOLING:
            raise GradcamError(f"unknown pooling {pool!r}; choose from {', '.join(POOLING)}")
        if int(batch_size) < 1:
            raise GradcamError(f"the batch size must be at least 1. Received: {batch_size}")
        check_frames(frames)
        if network is not None and network not in NETWORKS:
            raise GradcamError(f"unknown network {network!r}; choose from {', '.join(NETWORKS)}")
        if network is not None and METHODS[method].network is not None:
            raise GradcamError(f"{method} is computed on a dilated copy already; give gradcam with network={network!r}")
        if network is not None and METHODS[method].backprop is not None:
            raise GradcamError(f"{method} draws input gradients, which a dilated copy does not change")
        if network is not None and METHODS[method].meta is not None:
            raise GradcamError(f"{method} composes its base method's maps on the model itself; give network to the "
                               "base method instead")
        if eigen_smooth and not METHODS[method].smoothable and METHODS[method].meta is None:
            raise GradcamError(f"eigen smoothing takes the principal component of a map's channel terms; {method}'s "
                               "map is not a sum over channels")
        layers = [layer] if layer is None or isinstance(layer, str) else list(layer)
        if not layers:
            raise LayerError("give a layer, a list of layers, or None for the model's default")
        unknown = [name for name in arguments if name not in OPTION_NAMES and name not in LOAD_OPTIONS]
        if unknown:
            raise GradcamError(f"Explainer has no argument {', '.join(map(repr, unknown))}: give a method's options "
                               f"(`gradcam methods NAME`) or load_model's ({', '.join(LOAD_OPTIONS)})")
        given = {name: value for name, value in arguments.items() if name in OPTION_NAMES and value is not None}
        self.model, self.method, self.layer = model, method, layer
        self.layers = tuple(dict.fromkeys(layers))
        self.batch_size, self.pool, self.crop, self.jit = int(batch_size), pool, crop, jit
        self.aug_smooth, self.eigen_smooth = bool(aug_smooth), bool(eigen_smooth)
        self.network, self.compat, self.target, self.frames, self.inputs = network, compat, target, frames, inputs
        chosen = METHODS[method]
        if chosen.meta is not None:  # a meta-method: the options of its base method are the base's
            base = str(chosen.values({k: v for k, v in given.items() if k == "base_method"})["base_method"])
            self.base_options = {k: v for k, v in given.items() if chosen.option(k) is None}
            given = {k: v for k, v in given.items() if chosen.option(k) is not None}
            METHODS[base].values(self.base_options, compat)  # checked here, used by `base`
            if eigen_smooth and not METHODS[base].smoothable:
                raise GradcamError(f"eigen smoothing takes the principal component of a map's channel terms; "
                                   f"{method}'s base method {base}'s map is not a sum over channels")
        else:
            self.base_options = {}
        self.options = chosen.values(given, compat)  # every option's value, checked
        self.load_options = {name: value for name, value in arguments.items() if name in LOAD_OPTIONS}
        self._ready: Prepared | None = None
        self._bases: dict[Any, Explainer] = {}  # a meta-method's base Explainers, by their layers (`base`)

    # An API input (a path or an array) as RGB through files/'s one gate: how explain/ code handed
    # this Explainer (explain.concepts) reads images without reading files itself.
    read_image = staticmethod(read_input)

    def __getstate__(self) -> dict[str, Any]:  # what a worker receives: the arguments, not a built engine
        state = dict(self.__dict__, _ready=None, _bases={})
        if not isinstance(self.model, (str, Path)):
            raise GradcamError("an Explainer built on a loaded model cannot be sent to another process; "
                               "give it the model's name or path instead")
        return state

    @property
    def loaded(self) -> LoadedModel:
        """The model explained (for dilated methods, its dilated copy)."""
        return self.build().loaded

    @property
    def name(self) -> str:
        """What the outputs are named after: the method, and the dilated copy it runs on."""
        from gradcam_cli.explain.methods import METHODS, output_name

        smoothing = ("-aug-smooth" if self.aug_smooth else "") + ("-eigen-smooth" if self.eigen_smooth else "")
        method = METHODS[self.method]
        return output_name(self.method, self.network) + (method.suffix(self.options) if method.suffix else "") \
            + smoothing

    def build(self, shared: dict[Any, Any] | None = None) -> Prepared:
        """Load the model if needed and build what computing maps takes, once: an engine per
        target layer (on the dilated copy for dilated methods, its batch cut to fit memory)
        and the method's context. Returns them as a Prepared. `shared`: a dict that Explainers
        of one model pass to share the model, dilated copies and engines (one engine per
        network, layer and batch size). GradcamError when the method does not apply."""
        if self._ready is None:
            self._ready = self._build({} if shared is None else shared)
        return self._ready

    def _build(self, shared):
        from gradcam_cli.explain.methods import METHODS, context_for
        from gradcam_cli.models.dilated import dilated_copy, dilated_target, fitting_batch
        from gradcam_cli.models.graph import path_name

        batch_size = self.batch_size
        loaded = self.model
        if isinstance(loaded, (str, Path)):
            key = ("model", str(loaded), tuple(sorted(self.load_options.items())))
            if key not in shared:
                shared[key] = load_model(str(loaded), **self.load_options)
            loaded = shared[key]
        elif not hasattr(loaded, "target_layer"):  # a Keras model object (a keras-hub ImageClassifier...)
            key = ("model", id(loaded), tuple(sorted(self.load_options.items())))
            if key not in shared:
                shared[key] = load_model(loaded, **self.load_options)
            loaded = shared[key]
        default_layers = METHODS[self.method].default_layers
        if self.layer is None and default_layers is not None:  # the method's own default (RefineCAM's stages)
            target_paths = list(default_layers(loaded))
        else:
            target_paths = [loaded.target_layer(layer) for layer in self.layers]
        try:
            context = context_for(METHODS[self.method], loaded, target_paths[0], self.pool, self.options)
            for target_path in target_paths[1:]:
                context_for(METHODS[self.method], loaded, target_path, self.pool, self.options)
        except GradcamError:
            raise
        except ValueError as error:
            raise LayerError(f"{self.method} does not apply to {loaded.name} at layer "
                             f"{path_name(target_paths[0])}: {error}") from None
        batch_size = check_volumes(self, loaded, target_paths, batch_size)  # a scan's batch fits a budget
        reference = None
        network = self.network or METHODS[self.method].network
        if network:
            reference = loaded
            key = ("copy", id(loaded), network)
            if key not in shared:
                shared[key] = dilated_copy(loaded, network, target_paths[0])[0]
            loaded = shared[key]
            target_paths = [dilated_target(loaded, target_path) for target_path in target_paths]
            batch_size = fitting_batch(loaded, batch_size)
        bound = self._bound(loaded, shared)
        loaded = bound.loaded
        engines = [shared_engine(shared, loaded, path, batch_size, self.jit, self.inputs) for path in target_paths]
        method = METHODS[self.method]
        if method.meta is not None:  # its base method must apply at every layer: said now, not per image
            base = self.options["base_method"]
            base_options = METHODS[base].values(self.base_options, self.compat)
            for target_path in target_paths:
                try:
                    context_for(METHODS[base], loaded, target_path, self.pool, base_options)
                except ValueError as error:
                    raise LayerError(f"{self.method}'s base method {base} does not apply to {loaded.name} at layer "
                                     f"{path_name(target_path)}: {error}") from None
        warnings = list(method.warnings(loaded)) if method.warnings is not None else []
        return Prepared(loaded, engines, context, reference, bound, warnings, shared)

    def _bound(self, loaded, shared):
        """The target bound to `loaded`, once per model and target in `shared` (explain.targets.for_method)."""
        from gradcam_cli.explain.targets import for_method
        from gradcam_cli.files.images import prepare
        from gradcam_cli.files.references import TargetFiles

        embedding = lambda rgb: shared_engine(shared, loaded, loaded.default_layer, 1, self.jit).raw_outputs(
            prepare(loaded, [rgb], self.crop)[0])[0]
        return for_method(self.target, self.method, self.network, loaded, shared, TargetFiles(embedding))

    def with_method(self, method: str, **options: Any) -> Explainer:
        """An Explainer of another method on this one's model, layer, batch size and compilation,
        sharing what this one built (the model, dilated copies, engines): `options` are its own."""
        ready = self.build()
        other = Explainer(ready.reference or ready.loaded, method, layer=self.layer,
                          batch_size=self.batch_size, jit=self.jit, crop=self.crop, compat=self.compat,
                          target=self.target, **options)
        other.build(ready.shared)
        return other

    def class_indices(self, classes: ClassChoice | Iterable[ClassChoice] | None) -> tuple[int, ...]:
        """Class indices of `classes` (indices or class names, one or several), duplicates
        dropped; ClassError for one the model does not have."""
        from gradcam_cli.models.labels import class_index

        loaded = cast("LoadedModel", self.model if hasattr(self.model, "target_layer") else self.build().loaded)
        wanted = [classes] if isinstance(classes, (int, str)) else list(classes or ())
        return tuple(dict.fromkeys(class_index(c, loaded.labels, loaded.num_classes) for c in wanted))

    @property
    def aug_mode(self) -> str:
        """How --aug-smooth makes its views: zoomed (ours) or, under compat='pytorch-grad-cam', the
        input multiplied by 0.9/1.0/1.1 (its ttach transforms: smoothing.py)."""
        from gradcam_cli.explain.smoothing import COMPAT_MODES

        return COMPAT_MODES.get(self.compat or "", "zoom")

    @property
    def layer_names(self) -> list[str]:
        """The names of the layers the maps are of (several for a list of layers)."""
        from gradcam_cli.models.graph import path_name

        return [path_name(engine.target_path) for engine in self.build().engines]

    def base(self, layers: Sequence[str]) -> Explainer:
        """A meta-method's base method as an Explainer on `layers` (names; several are averaged),
        sharing this one's model, engines, batch size, compilation, crop and compat; the base
        method's own options are those this Explainer was given for it."""
        ready = self.build()
        key = tuple(layers)
        if key not in self._bases:
            base = Explainer(ready.reference or ready.loaded, str(self.options["base_method"]),
                             layer=list(layers) if len(layers) > 1 else layers[0], batch_size=self.batch_size,
                             pool=self.pool, crop=self.crop, jit=self.jit, eigen_smooth=self.eigen_smooth,
                             compat=self.compat, target=self.target, **self.base_options)
            base.build(ready.shared)  # the engines are this Explainer's
            self._bases[key] = base
        return self._bases[key]

    def compute(self, inputs: npt.NDArray[np.floating[Any]], codes: npt.ArrayLike, strongest: bool = False,
                views: Sequence[tuple[int, int, int, int]] | None = None) -> MapBatch:
        """Maps for a preprocessed batch (`prepare`) with one target code per image (a class
        index, or batch.top_rank(r)): an explain.compute.MapBatch, smoothed and averaged over
        layers as the Explainer says. `strongest`: for channel-weight methods, the map of the
        channel with the largest weight alone (a variant). `views`: each image's view box (from
        `prepare`), which a box target needs to carry its box onto each image."""
        from gradcam_cli.explain import smoothing
        from gradcam_cli.explain.compute import MapBatch, compute_maps
        from gradcam_cli.explain.methods import METHODS

        ready = self.build()
        codes = np.asarray(codes)
        if ready.target.per_view:  # a box target: the images of each view geometry together
            if views is None or len(views) != len(inputs):
                raise GradcamError("a box target is carried onto each image's view: give the images' view boxes")
            groups: dict[tuple[int, ...], list[int]] = {}
            for i, view in enumerate(views):
                groups.setdefault(tuple(int(v) for v in view), []).append(i)
            parts = [self._view(view).compute(inputs[rows], codes[rows], strongest) for view, rows in groups.items()]
            order = np.argsort([i for rows in groups.values() for i in rows], kind="stable")
            return MapBatch.joined(parts).take(order)

        meta = METHODS[self.method].meta
        if meta is not None:  # a meta-method composes its base method's maps itself
            compute = lambda batch, batch_codes: meta(self, batch, batch_codes)
            if self.aug_smooth:
                return smoothing.augmentation_smoothed(compute, inputs, codes, mode=self.aug_mode)
            return compute(inputs, codes)

        def one_layer(engine, layer_codes):
            compute = lambda batch, batch_codes: compute_maps(
                ready.loaded, engine, batch, batch_codes, self.method, ready.context, strongest=strongest,
                eigen_smooth=self.eigen_smooth)
            if self.aug_smooth:
                return smoothing.augmentation_smoothed(compute, inputs, layer_codes, mode=self.aug_mode)
            return compute(inputs, layer_codes)

        first = one_layer(ready.engines[0], codes)
        if len(ready.engines) == 1:
            return first
        # every other layer explains the class the first one chose
        others = [one_layer(engine, first.classes) for engine in ready.engines[1:]]
        return smoothing.layers_averaged([first] + others, ready.loaded.input_size)

    def _view(self, view):
        """This Explainer for one view geometry of a box target (explain.targets.bind_view),
        sharing what it built."""
        from gradcam_cli.explain.targets import bind_view

        ready = self.build()
        bound = bind_view(ready.target, view)
        if bound not in self._bases:
            other = Explainer(ready.loaded, self.method, layer=self.layer, batch_size=self.batch_size, pool=self.pool,
                              crop=self.crop, jit=self.jit, aug_smooth=self.aug_smooth, eigen_smooth=self.eigen_smooth,
                              compat=self.compat, target=bound, **self.options, **self.base_options)
            other.build(ready.shared)
            self._bases[bound] = other
        return self._bases[bound]

    def prepare(self, rgbs: Iterable[npt.NDArray[np.uint8]]
                ) -> tuple[npt.NDArray[np.floating[Any]], list[tuple[int, int, int, int]]]:
        """Decoded RGB images as the model sees them: (preprocessed batch, boxes)."""
        from gradcam_cli.files.images import prepare

        if takes_volumes(self.build().loaded):  # volumes (D1, D2, D3, C) float32, resized trilinearly, no box
            return prepare_volumes(self.build().loaded, rgbs)
        return prepare(self.build().loaded, rgbs, self.crop)

    @property
    def scoring_engine(self) -> Engine:
        """The compiled forward step of the model judged: the original model (for an Explainer
        on a dilated copy, the model it was made from)."""
        ready = self.build()
        reference = ready.reference
        if reference is None:
            return ready.engine
        return shared_engine(ready.shared, reference, reference.target_layer(None), self.batch_size, self.jit)

    def probabilities(self, inputs: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float32]:
        """Class probabilities of preprocessed inputs (N, H, W, C) by the original model, through
        its compiled forward step (the one scoring route: faithfulness, compare, the top-1 of the
        randomisation test). (N, C) float32."""
        return self.scoring_engine.probabilities(inputs)

    def maps(self, images: Images, classes: Classes = None, strongest: bool = False) -> ImageMaps:
        """Maps for these images and classes, in batches of the engine's batch size: an ImageMaps.
        images: decoded RGB arrays (H, W, 3) uint8 or paths. classes: None (each image's top-1),
        one class (an index or a name) for all, or one per image (None in the list: that image's
        top-1; a negative code: batch.top_rank). `strongest`: as compute."""
        ready = self.build()
        rgbs = [rgb for rgb, _, _ in self._decoded(images, None)]
        target = ready.target
        if classes is None and target.code >= 0:  # class:N, or a target's own column
            classes = target.code
        codes = class_codes(ready.reference or ready.loaded, classes, len(rgbs))  # a target's columns alike
        size = ready.engine.batch_size
        batches, boxes = [], []
        for start in range(0, len(rgbs), size):
            inputs, batch_boxes = self.prepare(rgbs[start : start + size])
            batches.append(self.compute(inputs, codes[start : start + size], strongest=strongest, views=batch_boxes))
            boxes += batch_boxes
        from gradcam_cli.explain.compute import MapBatch

        return ImageMaps(MapBatch.joined(batches) if batches else None, rgbs, boxes)

    def _decoded(self, images: Images, names: Sequence[str] | None) -> list[tuple[Any, str | None, str]]:
        """(image, source, name) of each input: decoded RGB, or for a model of volumes float32 volumes
        (explain/prepared.py's volume_inputs; a video model's clips RGB 0..255: files.clips)."""
        if takes_volumes(self.build().loaded):  # a video model's clip paths too (files.clips.model_inputs)
            return model_inputs(self.build().loaded, input_list(images), names, self.frames)
        return [decode_input(item, i, names) for i, item in enumerate(input_list(images))]

    def file_options(self, output_dir: str | os.PathLike[str], classes: Classes = (), top_k: int = 1,
                     save: Sequence[str] | None = None, colormap: str = "jet", alpha: float = 0.4,
                     window: tuple[float, float] | None = None, max_voxels: int | None = None) -> FileOptions:
        """What `write` writes, as files.writing.FileOptions: files named as the command names them
        (files.writer.plan_outputs; window, max_voxels: a model of volumes' intensity window and voxel limit)."""
        from gradcam_cli.files.writer import plan_outputs

        return plan_outputs(self, output_dir, classes, top_k, save, colormap, alpha, window, max_voxels)

    def details(self) -> dict[str, Any]:
        """What a record says of how its maps were made, beyond method and layer: the network,
        the smoothing, compat, the method's options (its entry's record) and warnings."""
        from gradcam_cli.explain.prepared import details

        return details(self, self.build())

    def stream(self, sources: Iterable[Source], options: FileOptions, image_workers: int | None = None,
               skip_existing: bool = False) -> Iterator[tuple[str, Source | None, Any]]:
        """Explain inputs.Sources (files) and write their outputs and records as the command does,
        streaming; yields the run's events in input order (files.writer.stream_outputs).
        `skip_existing`: images an earlier run finished are not done again; their stored records
        are yielded in their places."""
        from gradcam_cli.files.writer import stream_outputs

        return stream_outputs(self, sources, options, image_workers, skip_existing)

    def write(self, sources: Iterable[Source], options: FileOptions,
              on_result: Callable[[dict[str, Any]], object] | None = None,
              on_failure: Callable[..., object] | None = None, on_empty: Callable[[Source, int], object] | None = None,
              progress: Callable[[int], object] | None = None, image_workers: int | None = None,
              skip_existing: bool = False) -> Report:
        """`stream`, with a callback per event (files.writer.write_outputs): on_result(record) per
        image done, on_failure(source, reason[, record]) per image that failed (the others go on),
        on_empty(source, class_index) per map that is zero everywhere, progress(n) per batch.
        Returns a files.writing.Report."""
        from gradcam_cli.files.writer import write_outputs

        return write_outputs(self, sources, options, on_result, on_failure, on_empty, progress, image_workers,
                             skip_existing)

    def __call__(self, images: Images, classes: Classes = None, top_k: int = 1,
                 names: Sequence[str] | None = None) -> list[Explanation]:
        """Explanations of `images` (paths, or (H, W, 3) / (H, W) uint8 arrays): for each image,
        one per class of `classes` (indices or class names), else one per its `top_k` most
        likely classes; in input order. `names`: the output names for arrays (default
        imageN.png). ImageError naming the file for an image that cannot be read."""
        from gradcam_cli.files.writing import planned_maps

        ready = self.build()
        decoded = self._decoded(images, names)
        rgbs = [rgb for rgb, _, _ in decoded]
        per_map = [(planned, self.maps(rgbs, planned.code))
                   for planned in planned_maps(self.file_options(".", classes, top_k))]
        bound = None if ready.target.is_class else ready.target
        return [explanation(ready.loaded, found.batch, i, rgb, source, name, found.boxes[i], planned, self.method,
                            ready.layer, self.network, self.name, bound)
                for i, (rgb, source, name) in enumerate(decoded) for planned, found in per_map]


def loaded_model(model: ModelInput) -> LoadedModel:
    """A LoadedModel from what the API's functions take: a LoadedModel (load_model), a model
    name or file path (loaded with default options), or an Explainer (its model; the original
    for one on a dilated copy)."""
    if isinstance(model, (str, Path)):
        return load_model(str(model))
    if isinstance(model, Explainer):
        built = model.build()
        return built.reference or built.loaded
    if not hasattr(model, "target_layer"):
        raise GradcamError("give a model name or path, a model from gradcam_cli.load_model, or an Explainer. "
                           f"Received: {type(model).__name__}")
    return model
