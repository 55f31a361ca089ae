"""Guided Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017, Sec. 3.1): guided backpropagation's input gradient
(Springenberg et al. 2015) multiplied point-wise by the Grad-CAM map upsampled to the input's
resolution, so the fine-grained gradient keeps only the region that speaks for the class. With
--smoothgrad N the gradient is SmoothGrad's mean over N noisy copies. On volumes the input
gradient is (D1, D2, D3, C) and the map is upsampled trilinearly; its saliency is the largest
|gradient| over the channels. Deconvnet (deconvnet.py)
shares all of it but the ReLU rule. Open choices: docs/methods.md#guided-grad-cam."""

import numpy as np

from gradcam_cli.explain.methods import gradcam
from gradcam_cli.explain.methods.input_attribution import smoothgrad
from gradcam_cli.explain.methods.method import GRADIENT_NEEDS, Method
from gradcam_cli.explain.methods.options import NOISE, MethodOption

# SmoothGrad of the backprop gradients (guided's and deconvnet's own option; NOISE is SmoothGrad's).
SMOOTHGRAD = MethodOption("smoothgrad_samples", int, None, "SmoothGrad (Smilkov et al. 2017): average the gradient "
                          "over N noisy copies of the image (outputs named NAME.MODE-smoothgrad.KIND.png)", minimum=1,
                          flag="--smoothgrad", metavar="N", record="smoothgrad_samples")
# The needs of guided and deconvnet: Grad-CAM's, and the input gradients through modified ReLUs.
NEEDS = GRADIENT_NEEDS + ("input-gradients",)


def guided_gradcam(input_gradient, small_map):
    """(H, W, C) input gradient x the (h, w) Grad-CAM map, bilinearly upsampled to (H, W) and
    scaled to [0, 1] by its maximum. Zero wherever the map is zero; zero if the map is empty.
    A volume's (D1, D2, D3, C) input gradient x its (d1, d2, d3) map upsampled trilinearly to
    (D1, D2, D3) (maps.resize_volume: half-pixel centres, as the volume's own map is resized)."""
    input_gradient = np.asarray(input_gradient, dtype=np.float32)
    height, width = input_gradient.shape[:2]
    from gradcam_cli.explain import maps  # here: the registry imports this module, and `--help` must not load OpenCV

    if input_gradient.ndim == 4:  # a volume
        upsampled = maps.resize_volume(np.asarray(small_map, dtype=np.float32), input_gradient.shape[:3])
    else:
        upsampled = maps.upsample(np.asarray(small_map, dtype=np.float32), (0, 0, width, height), (height, width))
    normalised, _ = maps.normalise(np.maximum(upsampled, 0.0))
    return input_gradient * normalised[..., None]


channel_weights = gradcam.channel_weights


def smoothed_gradients(result, context, backprop):
    """The input gradients through `backprop`'s ReLUs: the engine's, or with the context's
    smoothgrad_samples N their SmoothGrad over N noisy copies (input_attribution.smoothgrad)."""
    samples = context.options["smoothgrad_samples"]
    if not samples:
        return result.input_gradients
    return smoothgrad(result.engine, result.inputs, result.classes, samples, context.options["noise"],
                      backprop=backprop)


def input_gradients(result, context):
    """The guided input gradients this method draws (smoothed with --smoothgrad N)."""
    return smoothed_gradients(result, context, "guided")


def record(values):
    """What a record says of the options: SmoothGrad's samples and noise, when it smooths."""
    if not values["smoothgrad_samples"]:
        return {}
    return {"smoothgrad_samples": values["smoothgrad_samples"], "smoothgrad_noise": values["noise"]}


def suffix(values):
    """Output names of smoothed gradients add '-smoothgrad'."""
    return "-smoothgrad" if values["smoothgrad_samples"] else ""


METHOD = Method(
    "guided",
    "Guided Grad-CAM: guided backpropagation x the Grad-CAM map",
    "Springenberg et al. 2015, Striving for Simplicity: The All Convolutional Net; " + gradcam.PAPER,
    NEEDS,
    channel_weights=channel_weights,
    backprop="guided",
    input_gradients=input_gradients,
    options=(SMOOTHGRAD, NOISE),
    record=record,
    suffix=suffix,
    volumes=True,
)
