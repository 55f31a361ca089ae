"""Deconvnet x Grad-CAM (Zeiler and Fergus 2014, "Visualizing and Understanding Convolutional
Networks"): Guided Grad-CAM (guided.py) with the deconvnet's ReLU rule, the gradient passed where it
is positive whatever the forward input (models/backprop_relus.py). Open choices:
docs/methods.md#deconvnet.
"""

from gradcam_cli.explain.methods.guided import (
    NEEDS,
    SMOOTHGRAD,
    channel_weights,
    record,
    smoothed_gradients,
    suffix,
)
from gradcam_cli.explain.methods.method import Method
from gradcam_cli.explain.methods.options import NOISE


def input_gradients(result, context):
    """The deconvnet input gradients this method draws (smoothed with --smoothgrad N)."""
    return smoothed_gradients(result, context, "deconvnet")


METHOD = Method(
    "deconvnet",
    "deconvnet x the Grad-CAM map",
    "Zeiler and Fergus 2014, Visualizing and Understanding Convolutional Networks",
    NEEDS,
    channel_weights=channel_weights,
    backprop="deconvnet",
    input_gradients=input_gradients,
    options=(SMOOTHGRAD, NOISE),
    record=record,
    suffix=suffix,
    volumes=True,
)
