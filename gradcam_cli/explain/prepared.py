"""What an api.Explainer builds once (Prepared), the engines its Explainers share, and how it
takes volumes.

Volumes: a model whose input is (batch, d1, d2, d3, channels) (`takes_volumes`: its input_size has
three sides) is given float arrays, not RGB images: a sample (D1, D2, D3) gets a channel axis
appended, (D1, D2, D3, C) is taken as it is, converted to float32; no uint8 decoding, no
preprocessing mode, no crop (`volume_inputs`). A sample of another shape than the model's input is
resized trilinearly to it (maps.resize_volume: half-pixel centres, torch's trilinear
interpolate), `prepare_volumes`; its map comes back at the sample's own shape, resized the same
way (maps.full_map). What does not take volumes yet is refused in one line (`check_volumes`;
methods: their entry's `volumes`, methods/context.py).

Clips: a model of volumes whose input has 3 channels is a video model (`takes_clips`): its input
(batch, T, H, W, 3) is a clip's frames. A clip comes as RGB 0..255 float32, like an image's pixels,
and `prepare_volumes` gives it the model's preprocessing mode after the resize, as an image gets
it (demo-clip's 'unit'; a model file's default 'none', so --preprocess names what it was trained
on). The choice: a video model's frames are images, and a video backbone is trained on
preprocessed frames; a scan (other channel counts) keeps its values as stored (--window aside).
A 3-channel .npy given to a video model is taken as RGB 0..255 frames too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gradcam_cli.explain.methods.method import Context
    from gradcam_cli.explain.targets import Bound
    from gradcam_cli.models.loading import LoadedModel


@dataclass
class Prepared:
    """What an Explainer builds on first use: the model it computes with, engines, context."""

    loaded: LoadedModel
    engines: list  # one per target layer; their target_path is the layer (in the dilated copy, for those)
    context: Context
    reference: LoadedModel | None  # the original model, when `loaded` is its dilated copy
    target: Bound  # the explain.targets.Bound target: `loaded` reads it (its head is the target's)
    warnings: list = None  # what the method says of this model (FullGrad without biases)
    shared: dict = None  # what Explainers of this model share (Explainer.build's `shared`)

    @property
    def engine(self):
        """The first layer's engine (the only one, unless several layers are averaged)."""
        return self.engines[0]

    @property
    def layer(self):
        """The layer (or layers, joined by +) the maps are of."""
        from gradcam_cli.models.graph import path_name

        return "+".join(path_name(engine.target_path) for engine in self.engines)


def shared_engine(shared, loaded, target_path, batch_size, jit, inputs=None):
    """The engine of `loaded` at `target_path`, one per model, layer, batch size and compilation
    in `shared`. inputs: how many inputs the run explains, when known: when this call makes the
    engine, its steps run eagerly first if explain.eager.eager_pays says so."""
    from gradcam_cli.explain.eager import eager_pays
    from gradcam_cli.explain.engine import Engine

    key = ("engine", id(loaded), tuple(target_path), batch_size, jit)
    if key not in shared:
        eager = eager_pays(loaded, None if inputs is None else -(-int(inputs) // batch_size), jit)
        shared[key] = Engine(loaded, target_path, batch_size=batch_size, jit=jit, eager_first=eager)
    return shared[key]


def details(explainer, ready):
    """What a record says of how an api.Explainer's maps were made (`ready`: what it built), beyond
    method and layer: the network, the smoothing, compat, the method's options (its entry's
    record), a token layer's grid, warnings, the guided ReLUs."""
    from gradcam_cli.explain.methods import METHODS

    out = {}
    if explainer.network is not None:
        out["network"] = f"dilated ({explainer.network})"
    if explainer.aug_smooth:
        out["aug_smooth"] = True
    if explainer.eigen_smooth:
        out["eigen_smooth"] = True
    if explainer.compat is not None:
        out["compat"] = explainer.compat
    if explainer.frames is not None and takes_clips(ready.loaded):  # --frames: which frames a clip gives
        out["frames"] = explainer.frames
    out.update(METHODS[explainer.method].record_of(explainer.options))
    if METHODS[explainer.method].meta is not None:  # the base method's options, as its own record gives them
        base = METHODS[explainer.options["base_method"]]
        out.update(base.record_of(base.values(explainer.base_options, explainer.compat)))
    grid = next((engine.grid for engine in ready.engines if engine.grid is not None), None)
    if grid is not None:  # a token layer: the grid its tokens are read as
        out.update(grid.as_record())
    if ready.warnings:
        out["method_warnings"] = list(ready.warnings)
    if ready.context.relus is not None:
        out["backprop"] = ready.context.relus.as_record(METHODS[explainer.method].backprop)
    return out


def takes_volumes(loaded):
    """Whether `loaded`'s model takes volumes, (batch, d1, d2, d3, channels): its input_size has
    three sides."""
    return len(tuple(loaded.input_size)) == 3


def takes_clips(loaded):
    """Whether `loaded`'s model is a video model: it takes volumes (`takes_volumes`) of 3 channels,
    (batch, T, H, W, 3): clips of RGB frames."""
    return takes_volumes(loaded) and loaded.channels == 3


def check_volumes(explainer, loaded, target_paths, batch_size):
    """The batch size `loaded` is run with: for a model of volumes, `batch_size` cut to fit
    models.precision.VOLUME_MEMORY_BUDGET (a scan's activations are large, and the engine pads a
    short batch to its size). GradcamError, one line, for what an api.Explainer on a model of
    volumes does not do yet: augmentation smoothing, several layers averaged, a dilated copy, a
    centre crop, a target other than a class or a 3-D segment."""
    from gradcam_cli.errors import GradcamError
    from gradcam_cli.explain.target_spec import parse
    from gradcam_cli.models import precision

    if not takes_volumes(loaded):
        return batch_size
    refused = [(explainer.aug_smooth, "aug_smooth (its flips and zooms are of images)"),
               (len(target_paths) > 1, "several layers averaged"),
               (explainer.network is not None, f"network={explainer.network!r} (a dilated copy)"),
               (explainer.crop, "crop (a volume is resized whole to the model's input)")]
    target = explainer.target
    kind = parse(target).kind if isinstance(target, str) else getattr(getattr(target, "target", target), "kind", None)
    if target is not None and kind not in ("class", "segment"):
        refused.append((True, f"target={target!r} (a volume's map explains a class, or a 3-D segmenter's segment)"))
    found = [what for refuse, what in refused if refuse]
    if found:
        raise GradcamError(f"{loaded.name} takes volumes: {found[0]} does not apply to volumes yet")
    return precision.fitting_batch(loaded, batch_size, precision.VOLUME_MEMORY_BUDGET)


def volume_inputs(loaded, items, names=None):
    """The API's inputs for a model of volumes, [(volume, None, name)]: each a real-valued array
    (D1, D2, D3) (a channel axis appended) or (D1, D2, D3, C) with the model's channels, as
    float32, named names[i] or volumeI.npy. ImageError naming the input's index otherwise (a path:
    volumes are given here as arrays)."""
    import numpy as np

    from gradcam_cli.errors import ImageError

    found = []
    for index, item in enumerate(items):
        if not isinstance(item, np.ndarray):
            raise ImageError(f"volume {index}: {loaded.name} takes volumes, given here as arrays (D1, D2, D3) or "
                             f"(D1, D2, D3, C). Received: {type(item).__name__}")
        if item.dtype.kind not in "iuf" or item.ndim not in (3, 4) or min(item.shape, default=0) < 1:
            raise ImageError(f"volume {index}: expected a real-valued (D1, D2, D3) or (D1, D2, D3, C) array. "
                             f"Received: shape {item.shape}, dtype {item.dtype}")
        volume = np.asarray(item, dtype=np.float32)
        volume = volume[..., None] if volume.ndim == 3 else volume
        if volume.shape[-1] != loaded.channels:
            raise ImageError(f"volume {index}: {loaded.name} takes {loaded.channels} channel(s). Received: shape "
                             f"{item.shape}")
        if not np.isfinite(volume).all():
            raise ImageError(f"volume {index}: it holds NaN or infinite values")
        found.append((volume, None, names[index] if names is not None else f"volume{index}.npy"))
    return found


def prepare_volumes(loaded, volumes):
    """Volumes (D1, D2, D3, C) float32 as the model takes them: (batch (B, d1, d2, d3, C) at the
    model's input size, each resized trilinearly when its shape differs, one None box each: a volume
    is never cropped). A video model's clips (T, H, W, 3), RGB 0..255, then get its preprocessing
    mode (the module's docstring)."""
    import numpy as np

    from gradcam_cli.explain.maps import resize_volume

    size = tuple(loaded.input_size)
    batch = [volume if volume.shape[:3] == size else resize_volume(volume, size) for volume in volumes]
    batch = np.stack(batch).astype(np.float32, copy=False)
    if takes_clips(loaded):
        from gradcam_cli.models.preprocess import preprocess

        batch = preprocess(batch, loaded.preprocess)
    return batch, [None] * len(batch)
