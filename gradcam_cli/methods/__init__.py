"""The methods and their registry: the registry alone feeds the engine, `--method`, `gradcam
methods`, `compare`, `eval` and the help text.

A method is one module in this folder (its paper and equation in the docstring) and one entry
below. The entry says what the method needs (NEEDS) and how it makes its map:

- the Grad-CAM family gives `channel_weights(result, context) -> (B, K)`, and the map is
  sum_k w_k A_k (maps.weighted_sum);
- any other method gives `spatial_map(result, context) -> (B, h, w)`;

both before the final ReLU, which the pipeline applies (with resizing and normalising).
`result` is the engine's engine.BatchResult: the target layer's activations, their gradients
(None unless the method needs them: a gradient-free method never pays for one), the classes
explained, the preprocessed inputs, and the engine, whose `scores` and `probabilities` score
further inputs with the forward pass alone. A method with `backprop` also has the engine compute
the input gradient through guided (or deconvnet) ReLUs, and the pipeline multiplies it by the
map (methods/guided.py).

Adding a method: write its module and its tests, and add one entry to METHODS.
"""

from dataclasses import dataclass
from typing import Callable

from gradcam_cli.methods.cam import cam_weights
from gradcam_cli.methods.gradcam import gradcam_weights
from gradcam_cli.methods.gradcam_plus_plus import gradcam_plus_plus_weights
from gradcam_cli.methods.layercam import layercam_map
from gradcam_cli.methods.scorecam import scorecam_map
from gradcam_cli.outputs import GRADIENT_KINDS, MAP_KINDS

# What a method may need from the engine.
NEEDS = {
    "activations": "the target layer's activations",
    "gradients": "the class score's gradients at the target layer",
    "input-gradients": "input gradients through modified ReLUs",
    "forward-scores": "class scores of further inputs (forward passes, no gradient)",
    "classifier": "the linear classifier after global average pooling",
    "dilated-copy": "a dilated copy of the model",
}


@dataclass(frozen=True)
class Method:
    name: str
    summary: str  # one line: what the map is
    paper: str  # author(s), year and title
    needs: tuple  # keys of NEEDS
    channel_weights: Callable = None  # (batch result, context) -> (B, K): the Grad-CAM family
    spatial_map: Callable = None  # (batch result, context) -> (B, h, w): any other method
    backprop: str = None  # 'guided' or 'deconvnet': input gradients through modified ReLUs
    network: str = None  # 'exact' or 'no-pooling': computed on a dilated copy of the model (models/dilated.py)

    @property
    def needs_classifier(self):
        return "classifier" in self.needs

    @property
    def gradients(self):
        """Whether the engine must compute the target layer's gradients."""
        return "gradients" in self.needs

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
    max_masks: int = None  # Score-CAM: keep the channels of highest variance (None: all)


def _gradcam(result, context):
    return gradcam_weights(result.activations, result.gradients, pool=context.pool)


_GRADCAM_PAPER = "Selvaraju et al. 2017, Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization"
_GRADIENT_NEEDS = ("activations", "gradients")

METHODS = {
    "gradcam": Method(
        "gradcam",
        "Grad-CAM: channel weights = spatially pooled gradients of the class score",
        _GRADCAM_PAPER,
        _GRADIENT_NEEDS,
        channel_weights=_gradcam,
    ),
    "cam": Method(
        "cam",
        "CAM: channel weights = the linear classifier's kernel column for the class",
        "Zhou et al. 2016, Learning Deep Features for Discriminative Localization",
        ("activations", "classifier"),
        channel_weights=lambda result, context: cam_weights(context.classifier_kernel, result.classes),
    ),
    "gradcam++": Method(
        "gradcam++",
        "Grad-CAM++: channel weights = positive gradients summed with closed-form pixel weights (alphas)",
        "Chattopadhyay et al. 2018, Grad-CAM++: Generalized Gradient-based Visual Explanations for Deep "
        "Convolutional Networks",
        _GRADIENT_NEEDS,
        channel_weights=lambda result, context: gradcam_plus_plus_weights(result.activations, result.gradients),
    ),
    "layercam": Method(
        "layercam",
        "LayerCAM: each activation weighted by its own positive gradient, summed over channels",
        "Jiang et al. 2021, LayerCAM: Exploring Hierarchical Class Activation Maps for Localization",
        _GRADIENT_NEEDS,
        spatial_map=lambda result, context: layercam_map(result.activations, result.gradients),
    ),
    "scorecam": Method(
        "scorecam",
        "Score-CAM: channel weights = the class probability of the input masked by each upsampled, "
        "min-max normalised channel, minus that of the zero input",
        "Wang et al. 2020, Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks",
        ("activations", "forward-scores"),
        spatial_map=scorecam_map,
    ),
    "guided": Method(
        "guided",
        "Guided Grad-CAM: guided backpropagation x the Grad-CAM map",
        "Springenberg et al. 2015, Striving for Simplicity: The All Convolutional Net; " + _GRADCAM_PAPER,
        _GRADIENT_NEEDS + ("input-gradients",),
        channel_weights=_gradcam,
        backprop="guided",
    ),
    "deconvnet": Method(
        "deconvnet",
        "deconvnet x the Grad-CAM map",
        "Zeiler and Fergus 2014, Visualizing and Understanding Convolutional Networks",
        _GRADIENT_NEEDS + ("input-gradients",),
        channel_weights=_gradcam,
        backprop="deconvnet",
    ),
    "dilated": Method(
        "dilated",
        "Grad-CAM on the exact (a trous) dilated copy: the original classifier at full resolution",
        "Holschneider et al. 1989, the a trous algorithm; " + _GRADCAM_PAPER,
        _GRADIENT_NEEDS + ("dilated-copy",),
        channel_weights=_gradcam,
        network="exact",
    ),
    "dilated-no-pooling": Method(
        "dilated-no-pooling",
        "Grad-CAM on the no-pooling dilated copy (poolings removed; a different classifier)",
        "Yu and Koltun 2016, Multi-Scale Context Aggregation by Dilated Convolutions; " + _GRADCAM_PAPER,
        _GRADIENT_NEEDS + ("dilated-copy",),
        channel_weights=_gradcam,
        network="no-pooling",
    ),
}

# The columns `compare` draws -> (METHODS key, what the cell shows: the map, the input gradient,
# or the gradient times the map): every map method, and the views of guided and deconvnet.
COMPARE_COLUMNS = {
    **{name: (name, "map") for name, method in METHODS.items() if method.backprop is None},
    "guided": ("guided", "gradient"),
    "guided-gradcam": ("guided", "product"),
    "deconvnet": ("deconvnet", "gradient"),
}

POOLING = ("mean", "max")


def context_for(method, loaded, target_path, pool="mean", max_masks=None):
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
    return Context(pool=pool, classifier_kernel=kernel, relus=relus, max_masks=max_masks)
