"""FullGrad (Srinivas and Fleuret 2019, "Full-Gradient Representation for Neural Network
Visualization"): the input-gradient and every spatial layer's bias-gradient, each made a map and
summed at the input's resolution (Eq. 4),

    map = sum_c psi(|grad_x S o x|_c) + sum_{l spatial} sum_k psi(|dS / dz^l_k b^l_k|)

psi: |.|, min-max per image and channel, bilinear resize. Open choices (which layers, batch
normalisation's effective bias, psi): docs/methods.md#fullgrad.

Volumes: the input (D1, D2, D3, C) and every 3-D layer's bias-gradient (d1, d2, d3, K) are the
terms ("spatial" there means volumetric); psi's min-max runs over the three axes, its resize is
trilinear with half-pixel centres (maps.resize_volume), and the map is (D1, D2, D3).
"""


from dataclasses import dataclass

import numpy as np

from gradcam_cli.explain.methods.method import Method, spatial_axes
from gradcam_cli.explain.methods.scorecam import bilinear

NO_BIAS_WARNING = "no layer has a bias: FullGrad reduces to the input-gradient term"
ZERO_BIAS_WARNING = "every layer's bias is zero: FullGrad reduces to the input-gradient term"


@dataclass(frozen=True)
class BiasTerm:
    path: tuple
    bias: np.ndarray  # (K,) float32: the layer's bias, or batch normalisation's effective bias
    spatial: bool  # an (h, w, K) output (a volume's model: (d1, d2, d3, K)): its term goes on the map


def _effective_bias(layer):
    """The bias b of `layer`'s output z = (linear in its input) + b, or None when it has none."""
    from keras import ops  # here: the registry imports this module, and `gradcam --help` must not load Keras

    kind = type(layer).__name__
    if kind == "BatchNormalization":
        mean = ops.convert_to_numpy(layer.moving_mean).astype(np.float64)
        variance = ops.convert_to_numpy(layer.moving_variance).astype(np.float64)
        gamma = ops.convert_to_numpy(layer.gamma).astype(np.float64) if layer.scale else 1.0
        beta = ops.convert_to_numpy(layer.beta).astype(np.float64) if layer.center else 0.0
        return (beta - mean * gamma / np.sqrt(variance + layer.epsilon)).astype(np.float32)
    if getattr(layer, "use_bias", False) and getattr(layer, "bias", None) is not None:
        return ops.convert_to_numpy(layer.bias).astype(np.float32)
    return None


def bias_terms(loaded):
    """Every layer of `loaded` (models.loading.LoadedModel) with a bias, in call order, nested
    models entered: [BiasTerm]. Batch normalisation counts when it normalises the last axis. A
    model of volumes (its input_size three sides) puts its 3-D layers' terms on the map."""
    from gradcam_cli.models import graph

    volumes = len(tuple(loaded.input_size)) == 3
    terms = []
    for info in loaded.layers:
        layer = info.layer
        if graph.is_model(layer):
            continue  # its layers are listed after it
        if type(layer).__name__ == "BatchNormalization" and layer.axis not in (-1, len(info.shape or ())):
            continue  # channels first: its bias is not per channel of our (h, w, K) maps
        bias = _effective_bias(layer)
        if bias is not None:
            terms.append(BiasTerm(info.path, bias, bool(info.volumetric) if volumes else info.spatial))
    return terms


def bias_warning(loaded):
    """The one-line warning when FullGrad has no bias term on its map, else None."""
    spatial = [term for term in bias_terms(loaded) if term.spatial]
    if not spatial:
        return NO_BIAS_WARNING
    if not any(np.any(term.bias != 0) for term in spatial):
        return ZERO_BIAS_WARNING
    return None


def normalised_sum(terms):
    """psi summed over channels: (B, h, w, K) non-negative -> (B, h, w) float32, each (image,
    channel) min-max normalised, a constant one 0; a volume's (B, d1, d2, d3, K) -> (B, d1, d2, d3)."""
    terms = np.asarray(terms, dtype=np.float64)
    axes = spatial_axes(terms)
    low = terms.min(axis=axes, keepdims=True)
    span = terms.max(axis=axes, keepdims=True) - low
    normalised = np.where(span > 0, (terms - low) / np.where(span > 0, span, 1.0), 0.0)
    return normalised.sum(axis=-1).astype(np.float32)


def fullgrad_maps(inputs, input_gradients, layer_gradients, biases):
    """The FullGrad map of each image, (B, H, W) float32, before the final min-max. Resizing is
    linear, so each layer's channels are summed at its own resolution and the sum resized once.

    inputs, input_gradients (B, H, W, C) in the model's input space; layer_gradients
    [(B, h, w, K) dS/dz] and biases [(K,)], one pair per spatial bias layer. A volume's: inputs (B, D1, D2, D3, C),
    layers' (B, d1, d2, d3, K), resized trilinearly (maps.resize_volume) to (B, D1, D2, D3)."""
    inputs = np.asarray(inputs, dtype=np.float32)
    size = inputs.shape[1:-1]
    total = normalised_sum(np.abs(np.asarray(input_gradients, dtype=np.float32) * inputs))
    for gradients, bias in zip(layer_gradients, biases):
        layer = normalised_sum(np.abs(np.asarray(gradients, dtype=np.float32) * np.asarray(bias, np.float32)))
        if inputs.ndim == 5:
            from gradcam_cli.explain.maps import resize_volume  # here: maps imports OpenCV (`gradcam --help`)

            total += np.stack([resize_volume(one, size) for one in layer])
        else:
            total += np.stack([bilinear(one[:, :, None], size)[:, :, 0] for one in layer])
    return total


def spatial_map(result, context):
    """The FullGrad map of each image of an batch.BatchResult at the input's resolution,
    (B, H, W) float32, shifted to a minimum of 0 per image. Runs one compiled step through the
    engine (engine.layer_gradients) for the input- and bias-gradients of `result.classes`."""
    engine = result.engine
    terms = [term for term in bias_terms(engine.loaded) if term.spatial]
    computed = engine.layer_gradients(result.inputs, result.classes, [term.path for term in terms])
    bias = {term.path: term.bias for term in terms}
    maps = fullgrad_maps(result.inputs, computed.input_gradients, [g for _, g in computed.layers],
                         [bias[path] for path, _ in computed.layers])
    return maps - maps.min(axis=tuple(range(1, maps.ndim)), keepdims=True)


def warnings(loaded):
    """The registry's warnings: FullGrad without a bias term on its map."""
    return [w for w in [bias_warning(loaded)] if w]


METHOD = Method(
    "fullgrad",
    "FullGrad: |input gradient x input| plus every conv/BN layer's |bias gradient|, each normalised, "
    "at the input's resolution",
    "Srinivas and Fleuret 2019, Full-Gradient Representation for Neural Network Visualization",
    ("plain-input-gradients", "bias-gradients"),
    spatial_map=spatial_map,
    warnings=warnings,
    volumes=True,
)
