"""The cascading model-parameter randomisation test (Adebayo et al., "Sanity Checks for Saliency
Maps", NeurIPS 2018, Sec. 3.1): a map that explains the model must change when its learned weights
are replaced by random ones. The weights are re-initialised from the output layer down, cumulatively,
on a copy of the model; after each step each method's map is computed again for the same images and
class and compared with its map on the trained model (Spearman's rho, per image and the mean).

Findings, choices (the copy, the class, steps, what is re-initialised and how, the maps compared, the
metrics, undefined correlations) and cost: docs/evaluation.md#cascading-randomisation-randomisationpy.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from gradcam_cli.errors import GradcamError, LayerError, argument

if TYPE_CHECKING:
    from gradcam_cli.api import ClassChoice, ModelInput

ORIGINAL = "original"
REINIT = ("initializer", "normal")
METRICS = ("spearman", "spearman_signed", "ssim")
METRIC_TITLES = {"spearman": "Spearman rank correlation (maps as drawn)",
                 "spearman_signed": "Spearman rank correlation (signed maps)",
                 "ssim": "SSIM (maps as drawn)"}
DEFAULT_METHODS = ("gradcam", "guided-backprop", "guided-gradcam")
COMPARED_SIDE = 64  # localization.rank_correlation's default
# Running statistics, kept: not learned by gradient (the paper re-initialises trainable variables).
STATISTICS = ("moving_mean", "moving_variance")


def _views():
    """{name: (METHODS key, what is compared: 'map', 'gradient' or 'product')}."""
    from gradcam_cli.explain.methods import METHODS

    views = {name: (name, "map") for name, method in METHODS.items() if method.backprop is None}
    for mode in (name for name, method in METHODS.items() if method.backprop):
        views.update({mode: (mode, "product"), f"{mode}-backprop": (mode, "gradient"),
                      f"{mode}-gradcam": (mode, "product")})
    return views


VIEWS = _views()


@dataclass(frozen=True)
class Step:
    """A step of the cascade: its name (the lowest layer re-initialised so far, 'original' for the
    trained model) and the layers it re-initialises (path names, top first)."""

    name: str
    layers: tuple[str, ...] = ()


@dataclass
class Point:
    """One method at one step: the mean Spearman rho over images (the maps as drawn), each
    image's rho (NaN where undefined), and every metric computed: {metric: (mean, per image)}."""

    step: str
    rho: float
    rhos: tuple[float, ...]
    figures: dict[str, tuple[float, tuple[float, ...]]] = field(default_factory=dict)

    @property
    def undefined(self) -> int:
        """How many images have no rho (their original map is constant)."""
        return int(np.isnan(np.asarray(self.rhos, dtype=np.float64)).sum())


@dataclass
class Randomisation:
    """The cascade's results: per method (a VIEWS name), one Point per step."""

    model: str
    methods: tuple[str, ...]
    steps: list[Step]  # 'original' first
    classes: tuple[int, ...]  # the class explained in each image: the original model's (or the one given)
    curves: dict[str, list[Point]]  # method -> a Point per step
    metrics: tuple[str, ...]
    reinit: str
    seed: int
    layer: str  # the target layer of the map methods

    def table(self, metric: str = "spearman") -> str:
        """The mean of `metric` per step (rows) and method (columns), as text."""
        rows = [("step",) + tuple(self.methods)]
        for k, step in enumerate(self.steps):
            cells = []
            for method in self.methods:
                value = self.curves[method][k].figures[metric][0]
                cells.append("-" if np.isnan(value) else f"{value:.3f}")
            rows.append((step.name,) + tuple(cells))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        line = lambda row: "  ".join(cell.rjust(w) if i else cell.ljust(w)
                                     for i, (cell, w) in enumerate(zip(row, widths)))
        return "\n".join(line(row) for row in rows)

    def as_record(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN as None)."""
        number = lambda value: None if np.isnan(value) else round(float(value), 6)
        return {
            "test": "cascading model-parameter randomisation (Adebayo et al. 2018)",
            "model": self.model, "layer": self.layer, "reinit": self.reinit, "seed": self.seed,
            "classes": list(self.classes),
            "steps": [{"name": s.name, "layers": list(s.layers)} for s in self.steps],
            "methods": {method: [{"step": p.step, "undefined": p.undefined,
                                  **{metric: {"mean": number(mean), "per_image": [number(v) for v in values]}
                                     for metric, (mean, values) in p.figures.items()}}
                                 for p in points]
                        for method, points in self.curves.items()},
        }


# -- the copy and its steps --------------------------------------------------------------------


def model_copy(loaded):
    """A LoadedModel of a copy of `loaded`'s model: new layers and variables holding the same
    values (keras.models.clone_model, which rebuilds nested models, then set_weights), the same
    output, preprocessing, labels and precision. ModelError when Keras cannot clone the model
    (a custom layer without get_config, a subclassed model)."""
    import keras

    from gradcam_cli.errors import ModelError
    from gradcam_cli.models.graph import model_outputs
    from gradcam_cli.models.loading import describe
    from gradcam_cli.models.precision import set_precision

    try:
        model = keras.models.clone_model(loaded.model)
        model.set_weights(loaded.model.get_weights())
    except Exception as error:  # Keras raises several types here; all mean "cannot be copied"
        from gradcam_cli.errors import unexpected

        raise ModelError(f"{loaded.name}: cannot copy the model for the randomisation test (its weights are "
                         f"re-initialised on a copy, never on the model itself): {unexpected(error)}") from None
    copy = describe(model, loaded.name, loaded.input_size, loaded.preprocess, loaded.labels, loaded.spec,
                    output=loaded.output.index if len(model_outputs(loaded.model)) > 1 else None,
                    warnings=loaded.warnings, token_layout=loaded.token_layout)
    copy.view = loaded.view  # a keras-hub preset's converter: the same views of the images
    return set_precision(copy, loaded.precision)


def learned_weights(layer):
    """The weights of `layer` that training learns, which the test re-initialises: all its float
    weights but the running statistics (STATISTICS) and a Normalization layer's adapted ones."""
    import keras

    if isinstance(layer, keras.layers.Normalization):
        return []
    return [w for w in layer.weights if w.name not in STATISTICS and "float" in str(w.dtype)]


def _weighted_layers(model):
    """[(path, layer)] of the layers with learned weights, in call order (nested models entered)."""
    from gradcam_cli.models.graph import is_model, iter_layers

    seen, found = set(), []
    for path, layer in iter_layers(model):
        if not is_model(layer) and id(layer) not in seen and learned_weights(layer):
            seen.add(id(layer))
            found.append((path, layer))
    return found


def cascade_steps(loaded, max_steps=None):
    """The cascade's steps: Step('original') and then the layers with learned weights from the
    output layer down, one per step, or grouped into `max_steps` steps of nearly equal size
    (the larger at the top); each named after its lowest layer."""
    from gradcam_cli.models.graph import path_name

    if max_steps is not None and not _whole(max_steps):
        raise GradcamError(f"{argument('max_steps')} must be a whole number of steps, at least 1. Received: "
                           f"{max_steps!r}")
    top_down = [path_name(path) for path, _ in reversed(_weighted_layers(loaded.model))]
    if not top_down:
        raise GradcamError(f"{loaded.name} has no layer with learned weights to re-initialise")
    count = len(top_down) if max_steps is None else min(int(max_steps), len(top_down))
    groups = [list(g) for g in np.array_split(np.array(top_down, dtype=object), count)]
    return [Step(ORIGINAL)] + [Step(group[-1], tuple(group)) for group in groups]


def _whole(value):
    """Whether `value` is a whole number >= 1 (not a bool, not a string)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def weight_seed(seed, position, index):
    """The seed of weight `index` of the layer at `position` (call order) for the run `seed`."""
    return int(np.random.SeedSequence([int(seed), int(position), int(index)]).generate_state(1)[0] % 2**31)


def _own_initializer(layer, variable, seed):
    """The layer's initializer of `variable` (kernel -> kernel_initializer, depthwise_kernel ->
    depthwise_initializer...) re-seeded with `seed`, or None when it has none."""
    import keras

    name = variable.name
    for attribute in (f"{name}_initializer", f"{name[: -len('_kernel')]}_initializer" if name.endswith("_kernel")
                      else None):
        initializer = getattr(layer, attribute, None) if attribute else None
        if isinstance(initializer, keras.initializers.Initializer):
            config = initializer.get_config()
            if "seed" in config:
                config["seed"] = seed
            try:
                return type(initializer).from_config(config)
            except (TypeError, ValueError):  # a custom initializer that cannot be rebuilt
                return None
    return None


def reinitialise(layer, position, seed=0, reinit="initializer"):
    """Redraw `layer`'s learned weights in place (call it on a copy only), seeded by (seed,
    position, the weight's index): with the layer's own initializers, or 'normal' noise of each
    tensor's root mean square (docs/evaluation.md#randomisation-choices)."""
    from keras import ops

    for index, variable in enumerate(learned_weights(layer)):
        drawn_seed = weight_seed(seed, position, index)
        initializer = _own_initializer(layer, variable, drawn_seed) if reinit == "initializer" else None
        if initializer is not None:
            value = initializer(tuple(variable.shape), dtype=variable.dtype)
        else:
            trained = ops.convert_to_numpy(variable).astype(np.float64)
            scale = float(np.sqrt(np.mean(np.square(trained)))) if trained.size else 0.0
            value = np.random.default_rng(drawn_seed).normal(0.0, scale, trained.shape).astype(str(variable.dtype))
        variable.assign(value)


# -- comparing maps ----------------------------------------------------------------------------


def structural_similarity(a, b):
    """SSIM of two maps in [0, 1] (Wang et al. 2004, "Image quality assessment: from error
    visibility to structural similarity"): the mean of the SSIM map over an 11 x 11 Gaussian window
    of sigma 1.5, C1 = (0.01)^2, C2 = (0.03)^2 for a data range of 1."""
    a, b = (np.asarray(m, dtype=np.float64) for m in (a, b))
    blur = lambda m: cv2.GaussianBlur(m, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)
    mean_a, mean_b = blur(a), blur(b)
    var_a = blur(a * a) - mean_a ** 2
    var_b = blur(b * b) - mean_b ** 2
    covariance = blur(a * b) - mean_a * mean_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    numerator = (2 * mean_a * mean_b + c1) * (2 * covariance + c2)
    return float((numerator / ((mean_a ** 2 + mean_b ** 2 + c1) * (var_a + var_b + c2))).mean())


def spearman(randomised, original):
    """rank_correlation, NaN when the original is constant, 0 when only the randomised map is."""
    from gradcam_cli.evaluate.localization import rank_correlation

    if np.ptp(original) == 0:
        return float("nan")
    if np.ptp(randomised) == 0:
        return 0.0
    return rank_correlation(randomised, original)


def _figures(randomised, original, metrics):
    """{metric: value} for one image: each argument a (drawn, signed) pair of maps."""
    out = {}
    for metric in metrics:
        if metric == "spearman":
            out[metric] = spearman(randomised[0], original[0])
        elif metric == "spearman_signed":
            out[metric] = spearman(randomised[1], original[1])
        else:
            constant = np.ptp(original[0]) == 0
            out[metric] = float("nan") if constant else structural_similarity(randomised[0], original[0])
    return out


def _view_maps(found, i, shows, side):
    """Image i's (drawn, signed) maps for a view (api.ImageMaps), at the image's resolution
    shrunk to `side`."""
    from gradcam_cli.explain import maps
    from gradcam_cli.files import render

    computed, box, shape = found.batch, found.boxes[i], found.images[i].shape
    if shows == "map":
        drawn = maps.full_map(computed.small_maps[i], box, shape)[1]
        before_relu = computed.weighted_sums if computed.weighted_sums is not None else computed.small_maps
        signed = maps.upsample(before_relu[i], box, shape)
    else:
        gradient = computed.input_gradients[i] if shows == "gradient" else computed.gradient_times_map(i)
        drawn = maps.saliency_map(gradient, box, shape)[0]
        signed = maps.resize_into_box(render.gray(gradient), box, shape)
    return maps.shrink(drawn, side), maps.shrink(signed, side)


# -- the test ----------------------------------------------------------------------------------


def _rgb(item, index):
    from gradcam_cli.errors import ImageError
    from gradcam_cli.files.images import load_rgb

    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8:
            raise ImageError(f"image {index}: expected an (H, W, 3) uint8 RGB array. Received: shape {item.shape}, "
                             f"dtype {item.dtype}")
        return item
    try:
        return load_rgb(Path(item))
    except ImageError as error:
        raise ImageError(f"{item}: {error}") from None


def _check(methods: str | Sequence[str], metrics: str | Sequence[str], reinit: str, batch_size: object,
           side: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
    methods = tuple(dict.fromkeys([methods] if isinstance(methods, str) else methods))
    if not methods:
        raise GradcamError("give at least one method")
    for method in methods:
        if method not in VIEWS:
            raise GradcamError(f"unknown method {method!r} for the randomisation test; choose from {', '.join(VIEWS)}")
    metrics = tuple(dict.fromkeys(("spearman",) + tuple([metrics] if isinstance(metrics, str) else metrics)))
    for metric in metrics:
        if metric not in METRICS:
            raise GradcamError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    if reinit not in REINIT:
        raise GradcamError(f"{argument('reinit')}: choose from {', '.join(REINIT)}. Received: {reinit!r}")
    if not _whole(batch_size):
        raise GradcamError(f"the batch size must be a whole number, at least 1. Received: {batch_size!r}")
    if not _whole(side):
        raise GradcamError(f"{argument('side')} must be a whole number of pixels, at least 1. Received: {side!r}")
    return methods, metrics


def cascading_randomisation(loaded: ModelInput, images: Iterable[str | os.PathLike[str] | npt.NDArray[np.uint8]],
                            methods: str | Sequence[str] = DEFAULT_METHODS, layer: str | None = None,
                            classes: ClassChoice | Sequence[ClassChoice | None] | None = None, batch_size: int = 16,
                            seed: int = 0, reinit: Literal["initializer", "normal"] = "initializer",
                            max_steps: int | None = None, metrics: str | Sequence[str] = METRICS,
                            side: int = COMPARED_SIDE) -> Randomisation:
    """Adebayo et al.'s cascading randomisation test of `methods` (VIEWS names) on `loaded` (a
    LoadedModel, a model name or path, or an Explainer's model; left unchanged) for `images`
    ((H, W, 3) uint8 RGB arrays or paths): a Randomisation.

    layer: the map methods' target layer (None: the model's default). classes: the class to
    explain, one for all images or one per image (indices or names; None, for all or in the
    list: the image's top-1 class on the original model, kept through every step). seed and
    reinit: how weights are redrawn; max_steps: group the layers into that many steps; metrics:
    METRICS to compute ('spearman' always); side: maps are compared on at most side x side
    pixels. Every choice: docs/evaluation.md#randomisation-choices."""
    from gradcam_cli.api import Explainer, loaded_model
    from gradcam_cli.explain.engine import Engine
    from gradcam_cli.models.graph import path_name
    from gradcam_cli.models.labels import class_codes

    loaded = loaded_model(loaded)
    methods, metrics = _check(methods, metrics, reinit, batch_size, side)
    rgbs = [_rgb(item, k) for k, item in enumerate(images)]
    if not rgbs:
        raise GradcamError("give at least one image")
    copy = model_copy(loaded)
    target = path_name(copy.target_layer(layer))
    steps = cascade_steps(copy, max_steps)
    positions = {path_name(path): (position, layer_) for position, (path, layer_) in
                 enumerate(_weighted_layers(copy.model))}
    size = int(batch_size)
    codes = class_codes(copy, classes, len(rgbs))
    shared: dict[Any, Any] = {}
    if (codes < 0).any():  # the top-1 class of the trained model, kept through every step
        judge = Explainer(copy, "gradcam", layer=layer, batch_size=size)
        judge.build(shared)
        top1 = np.argmax(judge.probabilities(judge.prepare(rgbs)[0]), axis=1)
        codes = np.where(codes < 0, top1, codes)
    per_method: dict[str, list[str]] = {}
    for view in methods:
        per_method.setdefault(VIEWS[view][0], []).append(view)

    # what the Explainers share across steps: the engines of the copy, nothing else
    engines = {key: value for key, value in shared.items() if isinstance(value, Engine) and value.loaded is copy}
    reference: dict[str, list[Any]] | None = None
    curves: dict[str, list[Point]] = {view: [] for view in methods}
    for step in steps:
        for name in step.layers:
            position, layer_ = positions[name]
            reinitialise(layer_, position, seed, reinit)
        shared = dict(engines)
        explainers = {m: Explainer(copy, m, layer=layer, batch_size=size) for m in per_method}
        for method, explainer in explainers.items():
            try:
                explainer.build(shared)
            except LayerError as error:
                raise LayerError(f"{method}: {error.args[0]}") from None
        engines = {key: value for key, value in shared.items() if isinstance(value, Engine) and value.loaded is copy}
        step_maps: dict[str, list[Any]] = {view: [] for view in methods}
        for method, views in per_method.items():
            found = explainers[method].maps(rgbs, codes)
            for view in views:
                step_maps[view] += [_view_maps(found, i, VIEWS[view][1], side) for i in range(len(rgbs))]
        if reference is None:  # step 0: the original model's maps
            reference = step_maps
        for view in methods:
            per_image = [_figures(now, before, metrics) for now, before in zip(step_maps[view], reference[view])]
            figures = {}
            for metric in metrics:
                values = np.array([f[metric] for f in per_image], dtype=np.float64)
                mean = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
                figures[metric] = (mean, tuple(float(v) for v in values))
            curves[view].append(Point(step.name, figures["spearman"][0], figures["spearman"][1], figures))
    return Randomisation(model=loaded.name, methods=methods, steps=steps, classes=tuple(int(c) for c in codes),
                         curves=curves, metrics=metrics, reinit=reinit, seed=int(seed), layer=target)


# -- the figure --------------------------------------------------------------------------------

def render_curves(result: Randomisation, metric: str = "spearman") -> npt.NDArray[np.uint8]:
    """The randomisation curves as a uint8 RGB image: x = the cascade's steps ('original' first),
    y = the mean `metric` over the images in [-1, 1], one coloured line with markers per method,
    a legend (files.charts.curves, matplotlib; wider by charts.STEP_WIDTH per step)."""
    from gradcam_cli.files import charts

    if metric not in result.metrics:
        raise GradcamError(f"{metric!r} was not computed; the result has {', '.join(result.metrics)}")
    steps = [step.name for step in result.steps]
    series = {method: (range(len(steps)), [p.figures[metric][0] for p in result.curves[method]])
              for method in result.methods}
    panel = charts.Panel(f"{result.model}: cascading randomisation, {METRIC_TITLES[metric]}",
                         "re-initialised from the output layer down to (cumulative)", series, x_labels=steps)
    return charts.curves([panel], METRIC_TITLES[metric].split(" (")[0], (-1.0, 1.0),
                         y_ticks=(-1.0, -0.5, 0.0, 0.5, 1.0))


def write_curves(result: Randomisation, path: str | os.PathLike[str], metric: str = "spearman") -> str:
    """render_curves written as a PNG at `path`; returns the path as a string."""
    from gradcam_cli.files import outputs

    return outputs.write_png(Path(path), render_curves(result, metric))
