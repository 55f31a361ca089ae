"""The methods: each a small function of arrays; the registry feeds the engine and the CLI.

A method returns channel weights (B, K) from what the engine computed for a batch (the target
layer's activations and gradients, the classes explained) and, for CAM, the classifier's kernel;
the engine forms the map ReLU(sum_k w_k A_k) and does everything else.
"""

from dataclasses import dataclass
from typing import Callable

from gradcam_cli.methods.cam import cam_weights
from gradcam_cli.methods.gradcam import gradcam_weights


@dataclass(frozen=True)
class Method:
    name: str
    channel_weights: Callable  # (batch result, context) -> (B, K)
    summary: str
    needs_classifier: bool = False  # CAM: the GAP + linear head's kernel (heads.cam_classifier)


@dataclass(frozen=True)
class Context:
    pool: str = "mean"
    classifier_kernel: object = None  # (K, C) for CAM


METHODS = {
    "gradcam": Method(
        "gradcam",
        lambda result, context: gradcam_weights(result.activations, result.gradients, pool=context.pool),
        "Grad-CAM: channel weights = spatially pooled gradients of the class score",
    ),
    "cam": Method(
        "cam",
        lambda result, context: cam_weights(context.classifier_kernel, result.classes),
        "CAM: channel weights = the linear classifier's kernel column for the class",
        needs_classifier=True,
    ),
}

POOLING = ("mean", "max")


def context_for(method, loaded, target_path, pool="mean"):
    """What `method` needs beyond the engine's results; ValueError when it does not apply."""
    from gradcam_cli.models.heads import cam_classifier

    kernel = None
    if METHODS[method].needs_classifier:
        kernel, _ = cam_classifier(loaded.layers, target_path)
    return Context(pool=pool, classifier_kernel=kernel)
