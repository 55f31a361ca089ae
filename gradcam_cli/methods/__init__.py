"""The methods: each a small function of arrays; the registry feeds the engine and the CLI.

A method returns channel weights (B, K) from what the engine computed for a batch (the target
layer's activations and gradients, the classes explained) and, for CAM, the classifier's kernel;
the engine forms the map ReLU(sum_k w_k A_k) and does everything else. A method with `backprop`
also has the engine compute the input gradient through guided (or deconvnet) ReLUs, and the
pipeline multiplies it by the map (methods/guided.py).
"""

from dataclasses import dataclass
from typing import Callable

from gradcam_cli.methods.cam import cam_weights
from gradcam_cli.methods.gradcam import gradcam_weights
from gradcam_cli.outputs import GRADIENT_KINDS, MAP_KINDS


@dataclass(frozen=True)
class Method:
    name: str
    channel_weights: Callable  # (batch result, context) -> (B, K)
    summary: str
    needs_classifier: bool = False  # CAM: the GAP + linear head's kernel (heads.cam_classifier)
    backprop: str = None  # 'guided' or 'deconvnet': input gradients through modified ReLUs
    network: str = None  # 'exact' or 'no-pooling': computed on a dilated copy of the model (models/dilated.py)

    @property
    def kinds(self):
        """What --save may name for this method."""
        return MAP_KINDS + (GRADIENT_KINDS if self.backprop else ())

    @property
    def default_save(self):
        return ("heatmap", "overlay") + (GRADIENT_KINDS if self.backprop else ())


@dataclass(frozen=True)
class Context:
    pool: str = "mean"
    classifier_kernel: object = None  # (K, C) for CAM
    relus: object = None  # models.guided.Census for backprop methods


def _gradcam(result, context):
    return gradcam_weights(result.activations, result.gradients, pool=context.pool)


METHODS = {
    "gradcam": Method(
        "gradcam",
        _gradcam,
        "Grad-CAM: channel weights = spatially pooled gradients of the class score",
    ),
    "cam": Method(
        "cam",
        lambda result, context: cam_weights(context.classifier_kernel, result.classes),
        "CAM: channel weights = the linear classifier's kernel column for the class",
        needs_classifier=True,
    ),
    "guided": Method(
        "guided",
        _gradcam,
        "Guided Grad-CAM: guided backpropagation x the Grad-CAM map",
        backprop="guided",
    ),
    "deconvnet": Method(
        "deconvnet",
        _gradcam,
        "deconvnet x the Grad-CAM map",
        backprop="deconvnet",
    ),
    "dilated": Method(
        "dilated",
        _gradcam,
        "Grad-CAM on the exact (a trous) dilated copy: the original classifier at full resolution",
        network="exact",
    ),
    "dilated-no-pooling": Method(
        "dilated-no-pooling",
        _gradcam,
        "Grad-CAM on the no-pooling dilated copy (poolings removed; a different classifier)",
        network="no-pooling",
    ),
}

POOLING = ("mean", "max")


def context_for(method, loaded, target_path, pool="mean"):
    """What `method` needs beyond the engine's results; ValueError when it does not apply."""
    from gradcam_cli.models.guided import census
    from gradcam_cli.models.heads import cam_classifier

    kernel = relus = None
    if METHODS[method].needs_classifier:
        kernel, _ = cam_classifier(loaded.layers, target_path)
        if loaded.head.kind == "binary":  # one sigmoid unit: class 0's score is -z, so its column is -w
            import numpy as np

            kernel = np.concatenate([-kernel, kernel], axis=1)
    if METHODS[method].backprop:
        relus = census(loaded.layers, loaded.final_path)
    return Context(pool=pool, classifier_kernel=kernel, relus=relus)
