"""keras-hub models: presets by name (`hub:NAME`, `kaggle://...`, `hf://...`, or `hub:FOLDER`
for a preset saved with `save_to_preset`), and keras-hub ImageClassifier objects, explained with
the preset's own preprocessing.

A keras-hub classifier does not preprocess in its call: `predict` first runs its preprocessor's
ImageConverter, which centre-crops the image to the model's aspect ratio (when
`crop_to_aspect_ratio`), resizes it (its interpolation, antialiasing as set) and computes
x * scale + offset (the preset's mean and standard deviation folded in). Here the converter's
own resizing layer makes the model's view of each image, on float32 pixels as `predict`'s input
pipeline does, and the scale and offset are the preprocessing (`Affine`); the box a view covers
is the converter's crop. The classifier itself is explained as it is: its blocks inside
subclassed layers (keras-hub's `vit_encoder`) are reached by models/sublayers.py.

keras-hub is an extra: `pip install 'gradcam-cli[hub]'`. Presets are downloaded by keras-hub
(from Kaggle or Hugging Face) and cached; offline, a preset not in the cache fails at once, in one
line (`load_preset` states the rule).
"""

import contextlib
import os
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradcam_cli.errors import ModelError, one_line

SCHEMES = ("hub:", "kaggle://", "hf://")


def is_preset(name):
    """Whether a --model value names a keras-hub preset."""
    return isinstance(name, str) and name.startswith(SCHEMES)


def is_hub_model(model):
    return type(model).__module__.startswith("keras_hub.")


def import_hub():
    try:
        import keras_hub
    except ImportError:
        raise ModelError("keras-hub models need the keras-hub package: pip install 'gradcam-cli[hub]'") from None
    return keras_hub


def cache_folder(handle):
    """Where keras-hub's downloads of `handle` are kept (Hugging Face's or kagglehub's cache)."""
    if handle.startswith("hf://"):
        home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
        return os.environ.get("HF_HUB_CACHE") or str(Path(home) / "hub")
    return os.environ.get("KAGGLEHUB_CACHE") or str(Path.home() / ".cache" / "kagglehub")


def _network_failure(error, handle):
    kind = type(error).__name__
    text = str(error)
    return ("Connection" in kind or "Timeout" in kind or isinstance(error, OSError)
            or (handle.startswith("hf://") and "config.json" in text))


_EMPTY = ("a keras-hub preset needs a name: hub:NAME (a keras-hub preset, such as hub:resnet_50_imagenet; "
          "keras_hub.models.ImageClassifier.presets lists them), hub:FOLDER (a preset saved with save_to_preset), "
          "kaggle://OWNER/MODEL/keras/VARIANT[/VERSION] or hf://OWNER/MODEL")
HOSTS = {"hf": "huggingface.co", "kaggle": "www.kaggle.com"}
REACH_SECONDS = 3.0


def _remote(handle):
    """The kaggle:// or hf:// handle keras-hub downloads `handle` from (a built-in preset name's
    Kaggle handle), or None (a folder, an unknown name: keras-hub says what is wrong)."""
    if handle.startswith(("kaggle://", "hf://")):
        return handle
    try:  # keras-hub's registry of built-in names (0.32's module; another version: no offline check)
        from keras_hub.src.utils.preset_utils import BUILTIN_PRESETS
    except ImportError:
        return None
    entry = BUILTIN_PRESETS.get(handle)
    return entry.get("kaggle_handle") if isinstance(entry, dict) else None


def cached_preset(remote):
    """The folder of keras-hub's cache that holds the preset `remote` (its config.json), or None:
    Hugging Face's snapshot (huggingface_hub.try_to_load_from_cache), or kagglehub's
    CACHE/models/OWNER/MODEL/FRAMEWORK/VARIATION/VERSION (the newest version when none is given)."""
    if remote.startswith("hf://"):
        import huggingface_hub

        try:
            found = huggingface_hub.try_to_load_from_cache(remote[len("hf://"):], "config.json",
                                                           cache_dir=cache_folder(remote))
        except ValueError:  # not a repository id: keras-hub says so
            return None
        return os.path.dirname(found) if isinstance(found, str) else None
    parts = remote[len("kaggle://"):].split("/")
    if len(parts) not in (4, 5):
        return None
    base = Path(cache_folder(remote), "models", *parts[:4])
    versions = [parts[4]] if len(parts) == 5 else sorted(
        (p.name for p in base.glob("*") if p.name.isdigit()), key=int, reverse=True)
    return next((str(base / v) for v in versions if (base / v / "config.json").is_file()), None)


def _proxy_for(host):
    """(host, port) of the HTTPS proxy the download would go through, or None."""
    import urllib.parse
    import urllib.request

    proxy = urllib.request.getproxies().get("https")
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    parsed = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
    return (parsed.hostname, parsed.port or 80) if parsed.hostname else None


def reachable(host, seconds=REACH_SECONDS):
    """Whether a TCP connection to `host`:443 (or to the HTTPS proxy that would carry it) opens
    within `seconds`, name lookup included: the cheap check made before keras-hub's downloads,
    whose retries take most of a minute when the network is down."""
    address = _proxy_for(host) or (host, 443)
    opened = []

    def connect():
        try:
            socket.create_connection(address, timeout=seconds).close()
            opened.append(True)
        except OSError:
            pass

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(seconds)
    return bool(opened)


def _offline(remote):
    """Why `remote` cannot be downloaded now (the user's offline setting, an unreachable host), or
    None when the network may be tried."""
    scheme = remote.split("://")[0]
    if scheme == "hf" and os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return "HF_HUB_OFFLINE is set"
    host = HOSTS[scheme]
    if scheme == "hf":
        import urllib.parse

        host = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or host
    return None if reachable(host) else f"{host} cannot be reached"


def load_preset(name):
    """The keras-hub ImageClassifier of preset `name` (hub:NAME, hub:FOLDER, kaggle://..., hf://...).
    ModelError in one line when it cannot be had.

    The offline rule: a preset folder loads from disk. For a download, keras-hub's cache is looked
    at first only when the network cannot serve: when Hugging Face's offline mode is set
    (HF_HUB_OFFLINE) or a TCP connection to the host (huggingface.co, www.kaggle.com, or the HTTPS
    proxy that carries it) does not open within 3 s. Then a cached preset loads from its cache
    folder, with no network call (so no retries), and one that is not cached is refused at once,
    naming the preset and the cache folder. When the host answers, keras-hub downloads (or checks
    its cache online) as it always does."""
    handle = name[len("hub:"):] if name.startswith("hub:") else name
    if not handle.strip() or handle in ("kaggle://", "hf://"):
        raise ModelError(f"{_EMPTY}. Received: {name!r}")
    keras_hub = import_hub()
    remote = None if Path(handle).is_dir() else _remote(handle)
    if remote is not None:
        why = _offline(remote)
        if why is not None:
            cached = cached_preset(remote)
            if cached is None:
                raise ModelError(f"cannot load keras-hub preset {name!r}: it is not in keras-hub's cache "
                                 f"({cache_folder(remote)}) and {why}; download it once with a network, or give "
                                 "a preset folder (hub:FOLDER)")
            handle = cached
    try:
        with contextlib.redirect_stdout(sys.stderr):  # download progress: stdout carries results
            return keras_hub.models.ImageClassifier.from_preset(handle)
    except Exception as error:
        if Path(handle).is_dir():
            raise ModelError(f"cannot load the keras-hub preset in {handle}: {one_line(error, 200)}") from None
        if _network_failure(error, handle):
            raise ModelError(f"cannot load keras-hub preset {handle!r}: it is downloaded from the network on first use, "
                             f"and that failed ({type(error).__name__}); keras-hub keeps downloaded presets in "
                             f"{cache_folder(handle)}") from None
        raise ModelError(f"cannot load keras-hub preset {handle!r}: {one_line(error, 200)}") from None


@dataclass(frozen=True)
class Affine:
    """Per-channel preprocessing x * scale + offset of 0..255 RGB (a keras-hub ImageConverter's)."""

    scale: tuple
    offset: tuple

    def __call__(self, batch):
        return batch * np.asarray(self.scale, np.float32) + np.asarray(self.offset, np.float32)

    def __str__(self):
        numbers = lambda values: ",".join(f"{v:.4g}" for v in values)
        return f"x*[{numbers(self.scale)}]+[{numbers(self.offset)}]"


def _per_channel(value, default):
    if value is None:
        return (default,) * 3
    values = np.asarray(value, dtype=np.float64).reshape(-1)
    return tuple(float(v) for v in (values if values.size == 3 else np.repeat(values[:1], 3)))


def converter_of(classifier):
    """The classifier's ImageConverter, or None (no preprocessor)."""
    preprocessor = getattr(classifier, "preprocessor", None)
    return getattr(preprocessor, "image_converter", None)


def preprocessing(converter):
    """The converter's scale and offset as an Affine."""
    if converter is None:
        return Affine((1.0,) * 3, (0.0,) * 3)
    return Affine(_per_channel(converter.scale, 1.0), _per_channel(converter.offset, 0.0))


class ConverterView:
    """What a keras-hub classifier sees of an image: the converter's resizing (its crop to the
    aspect ratio, interpolation, antialiasing) on float32 pixels, and the box of the image the
    view covers. Callable as view(rgb) -> (view (H, W, 3) float32 0..255, box (x0, y0, x1, y1))."""

    def __init__(self, converter, size):
        if getattr(converter, "pad_to_aspect_ratio", False):
            raise ModelError("its image converter pads images to the model's aspect ratio (pad_to_aspect_ratio), "
                             "which gradcam-cli cannot yet map back onto the image; give the model object with "
                             "a converter that crops or resizes")
        self.resizing = converter.resizing
        self.crop = bool(getattr(converter, "crop_to_aspect_ratio", False))
        self.size = tuple(size)

    def __call__(self, rgb):
        from keras import ops

        height, width = rgb.shape[:2]
        target_h, target_w = self.size
        if self.crop:  # keras.layers.Resizing's crop: the centred box of the target's aspect ratio
            crop_h = max(min(height, int(width * target_h / target_w)), 1)
            crop_w = max(min(width, int(height * target_w / target_h)), 1)
            y0, x0 = int((height - crop_h) / 2), int((width - crop_w) / 2)
            box = (x0, y0, x0 + crop_w, y0 + crop_h)
        else:
            box = (0, 0, width, height)
        view = ops.convert_to_numpy(self.resizing(np.asarray(rgb, np.float32)[None]))[0]
        return np.asarray(view, np.float32), box


def input_size_of(classifier, converter):
    size = getattr(converter, "image_size", None) if converter is not None else None
    if size is not None and None not in tuple(size):
        return tuple(int(s) for s in size)
    shape = classifier.input_shape
    shape = next(iter(shape.values())) if isinstance(shape, dict) else shape
    if shape[1] is None or shape[2] is None:
        raise ModelError(f"{classifier.name}: neither its image converter nor its input fixes an image size")
    return (int(shape[1]), int(shape[2]))


def detection_decoder(model, input_size):
    """For a keras-hub RetinaNetObjectDetector, the decoding its own `decode_predictions` does
    before non-maximum suppression: its anchors for `input_size` (its anchor generator), the box
    deltas decoded onto them (keras.utils.bounding_boxes.decode_deltas_to_boxes, center_xywh) as
    x0 y0 x1 y1 in the input's pixels, and the class logits' sigmoid. Returns (output names
    (boxes, scores), decode(flat outputs) -> (boxes (B, N, 4), scores (B, N, C)) in keras.ops),
    or None for another model. The suppression is left out: the box rule matches boxes itself."""
    if type(model).__name__ != "RetinaNetObjectDetector":
        return None
    import keras
    from keras import ops

    height, width = input_size
    generated = model.anchor_generator(np.zeros((1, height, width, 3), "float32"))
    anchors = np.concatenate([np.asarray(level) for level in generated.values()], axis=0).astype("float32")
    anchor_format = model.anchor_generator.bounding_box_format
    names = sorted(model.output)  # keras.tree.flatten's order: bbox_regression, cls_logits

    def decode(flat):
        deltas, logits = flat[names.index("bbox_regression")], flat[names.index("cls_logits")]
        boxes = keras.utils.bounding_boxes.decode_deltas_to_boxes(
            anchors=anchors, boxes_delta=deltas, encoded_format="center_xywh", anchor_format=anchor_format,
            box_format="xyxy", image_shape=(height, width, 3))
        return boxes, ops.sigmoid(ops.cast(logits, boxes.dtype))

    return ("bbox_regression", "cls_logits"), decode
