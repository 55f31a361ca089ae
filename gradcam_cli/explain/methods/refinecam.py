"""RefineCAM (Domeniconi, Stramiglio, Lombardi and Salti, "How to Evaluate and Refine your CAM",
2026; pytorch-grad-cam 1.5.7's refine_cam.py): a meta-method. Its base method's map is computed
at several layers, each normalised to [0, 1] and upsampled to the input's resolution, and the
maps are multiplied element-wise, so that the coarse, deep maps say where and the shallow,
fine ones say exactly where:

    M_l = mm(Up(mm(ReLU(base map at layer l))))      mm: min-max to [0, 1] (a constant map: 0)
    R   = prod_l M_l                                  then the drawing normalises R

Our choices, each named:
- The base method: Grad-CAM++ by default (pytorch-grad-cam's default), any map method with
  --base-method (its own options pass through).
- The layers: those given (--layer a --layer b ...), else one per spatial resolution of the
  network, the deepest layer of each of its last four resolutions up to the default layer
  (`stage_layers`): ResNet50's conv2..conv5 block outputs, as the authors' example takes
  ResNet's layer1[-1]..layer4[-1].
- Normalisation: exact min-max before and after the bilinear (half-pixel) upsampling, as
  pytorch-grad-cam's scale_cam_image does with its 1e-7; a map that is zero everywhere stays 0,
  and then so is the product.
- Every layer explains the class the first (deepest given) layer's pass chose.
How pytorch-grad-cam differs: docs/methods.md#refinecam.
"""

import numpy as np

from gradcam_cli.explain.methods.method import Method, base_method_option, base_suffix

BASE_METHOD = base_method_option("gradcam++")
# How many resolutions the default layers span at most (ResNet's four stages).
DEFAULT_STAGES = 4


def stage_layers(loaded, stages=DEFAULT_STAGES):
    """The default layers: per spatial resolution (height, width) of the layers up to the
    model's default layer, the last layer at that resolution; the deepest `stages` of them,
    deepest first. Paths, as LoadedModel.layers gives them."""
    infos = loaded.layers
    end = [info.path for info in infos].index(loaded.default_layer)
    last = {}
    for info in infos[: end + 1]:
        if info.spatial and info.shape[0] > 1 and info.shape[1] > 1 and \
                type(info.layer).__name__ not in ("InputLayer", "Rescaling", "Normalization"):
            last[tuple(info.shape[:2])] = info.path
    by_depth = sorted(last.values(), key=[info.path for info in infos].index, reverse=True)
    by_depth = [loaded.default_layer] + [p for p in by_depth if p != loaded.default_layer]
    return by_depth[:stages]


def min_max(maps):
    """Each (h, w) map of a batch scaled to [0, 1] by its minimum and maximum; a constant map
    is 0 everywhere. (B, h, w) float32."""
    maps = np.asarray(maps, dtype=np.float32)
    low = maps.reshape(len(maps), -1).min(axis=1)[:, None, None]
    span = maps.reshape(len(maps), -1).max(axis=1)[:, None, None] - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)


def refine(layer_maps, size):
    """R = prod_l mm(Up(mm(M_l))) of each image: `layer_maps` a list over layers of (B, h_l, w_l)
    ReLU'd maps, `size` (H, W) the input's. (B, H, W) float32."""
    from gradcam_cli.explain.maps import upsample

    height, width = size
    product = None
    for maps in layer_maps:
        up = np.stack([upsample(m, (0, 0, width, height), (height, width)) for m in min_max(maps)])
        up = min_max(up)
        product = up if product is None else product * up
    return product.astype(np.float32)


def meta(explainer, inputs, codes):
    """The meta-method's batch: the base method at each of the Explainer's layers (api.Explainer.base),
    multiplied (refine). Returns an explain.compute.MapBatch with maps at the input's size."""
    from dataclasses import replace

    bases = [explainer.base([name]) for name in explainer.layer_names]
    first = bases[0].compute(inputs, codes)
    others = [base.compute(inputs, first.classes) for base in bases[1:]]
    refined = refine([first.small_maps] + [other.small_maps for other in others],
                     explainer.build().loaded.input_size)
    return replace(first, small_maps=refined, weighted_sums=refined, input_gradients=None)


def suffix(values):
    """The base method in output names when it is not Grad-CAM++ (method.base_suffix)."""
    return base_suffix(values, BASE_METHOD.default)


METHOD = Method(
    "refinecam",
    "RefineCAM: the base method's maps at several layers (one per resolution by default), each normalised and "
    "upsampled to the input, multiplied",
    "Domeniconi et al. 2026, How to Evaluate and Refine your CAM",
    ("base-method",),
    meta=meta,
    default_layers=stage_layers,
    options=(BASE_METHOD,),
    suffix=suffix,
    volumes=False,
    no_volumes=("it multiplies its base method's maps of several layers, one per 2-D resolution (height, width), and "
               "a volume's maps are of one layer"),
)
