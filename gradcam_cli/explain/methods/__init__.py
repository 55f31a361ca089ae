"""The methods and their registry: the registry alone feeds the engine, `--method`, `gradcam
methods`, `compare`, `eval` and the help text.

A method is one module in this folder (its paper and equation in the docstring) and one entry
below. The entry says what the method needs (NEEDS) and how it makes its map:

- the Grad-CAM family gives `channel_weights(result, context) -> (B, K)`, and the map is
  sum_k w_k A_k (maps.weighted_sum);
- a method whose map is a sum over channels of element-wise terms (LayerCAM, HiResCAM) gives
  `contributions(result, context) -> (B, h, w, K)`, and the map is their channel sum;
- any other method gives `spatial_map(result, context) -> (B, h, w)` (`principal=True` when that
  map is a first principal component already);
both before the final ReLU, which explain/compute.py applies (drawing resizes and normalises).
`result` is the engine's engine.BatchResult: the target layer's activations, their gradients
(None unless the method needs them: a gradient-free method never pays for one), the classes
explained, the preprocessed inputs, and the engine, whose `scores` and `probabilities` score
further inputs with the forward pass alone. A method with `backprop` also has the engine compute
the input gradient through guided (or deconvnet) ReLUs, and compute.py multiplies it by the
map (methods/guided.py).

Eigen smoothing (pytorch-grad-cam's eigen_smooth) replaces the channel sum of w_k A_k or of the
contributions by its first principal component (methods/pca.py); a principal-component map is
left as it is, and a method with a map of another kind refuses it.

What an entry holds: method.py (Method, Context, NEEDS) and options.py (Option, Choice).
Adding a method: write its module and its tests, and add one entry to METHODS.
"""

from gradcam_cli.explain.methods.ablationcam import DENOMINATORS as ABLATION_DENOMINATORS
from gradcam_cli.explain.methods.ablationcam import DEFAULT_DENOMINATOR as DEFAULT_ABLATION_DENOMINATOR
from gradcam_cli.explain.methods.ablationcam import ablationcam_channel_weights
from gradcam_cli.explain.methods.attention_maps import DEFAULT_DISCARD, DEFAULT_FUSION, FUSIONS
from gradcam_cli.explain.methods.attention_maps import generic_attention_map, rollout_map
from gradcam_cli.explain.methods.cam import cam_weights
from gradcam_cli.explain.methods.eigencam import eigencam_map
from gradcam_cli.explain.methods.eigengradcam import eigengradcam_map
from gradcam_cli.explain.methods.segeigencam import segeigencam_map
from gradcam_cli.explain.methods.fem import DEFAULT_WEIGHTING as DEFAULT_FEM_WEIGHTING
from gradcam_cli.explain.methods.fem import WEIGHTINGS as FEM_WEIGHTINGS
from gradcam_cli.explain.methods.fem import fem_channel_contributions
from gradcam_cli.explain.methods.finercam import DEFAULT_ALPHA, DEFAULT_COMPARE, FinerObjective, finercam_weights
from gradcam_cli.explain.methods.fullgrad import bias_warning, fullgrad_map
from gradcam_cli.explain.methods.gradcam import gradcam_weights
from gradcam_cli.explain.methods.gradcam_elementwise import gradcam_elementwise_contributions
from gradcam_cli.explain.methods.gradcam_plus_plus import ALPHAS as GRADCAMPP_ALPHAS
from gradcam_cli.explain.methods.gradcam_plus_plus import DEFAULT_ALPHAS as DEFAULT_GRADCAMPP_ALPHAS
from gradcam_cli.explain.methods.gradcam_plus_plus import gradcam_plus_plus_channel_weights
from gradcam_cli.explain.methods.hirescam import hirescam_contributions
from gradcam_cli.explain.methods.input_attribution import (DEFAULT_NOISE, DEFAULT_SAMPLES, DEFAULT_STEPS,
                                                            integrated_gradients_method_map, smoothgrad_method_map)
from gradcam_cli.explain.methods.kpcacam import DEFAULT_KERNEL as DEFAULT_KPCA_KERNEL
from gradcam_cli.explain.methods.kpcacam import KERNELS as KPCA_KERNELS
from gradcam_cli.explain.methods.kpcacam import kpcacam_spatial_map
from gradcam_cli.explain.methods.layercam import layercam_contributions
from gradcam_cli.explain.methods.legrad import legrad_applies, legrad_map
from gradcam_cli.explain.methods.randomcam import randomcam_weights
from gradcam_cli.explain.methods.refinecam import refinecam_maps, stage_layers
from gradcam_cli.explain.methods.scorecam import BASELINES as SCORECAM_BASELINES
from gradcam_cli.explain.methods.scorecam import DEFAULT_BASELINE as DEFAULT_SCORECAM_BASELINE
from gradcam_cli.explain.methods.scorecam import DEFAULT_SCORE as DEFAULT_SCORECAM_SCORE
from gradcam_cli.explain.methods.scorecam import DEFAULT_UPSAMPLING as DEFAULT_SCORECAM_UPSAMPLING
from gradcam_cli.explain.methods.scorecam import SCORES as SCORECAM_SCORES
from gradcam_cli.explain.methods.scorecam import UPSAMPLINGS as SCORECAM_UPSAMPLINGS
from gradcam_cli.explain.methods.scorecam import scorecam_channel_weights
from gradcam_cli.explain.methods.sess import DEFAULT_BLUR as SESS_BLUR
from gradcam_cli.explain.methods.sess import DEFAULT_SCALE_STEP as SESS_SCALE_STEP
from gradcam_cli.explain.methods.sess import DEFAULT_SCALES as SESS_SCALES
from gradcam_cli.explain.methods.sess import POOLS as SESS_POOLS
from gradcam_cli.explain.methods.sess import sess_maps
from gradcam_cli.explain.methods.shapleycam import ReST, shapleycam_channel_weights
from gradcam_cli.explain.methods.xgradcam import xgradcam_weights
from gradcam_cli.explain.methods.method import NEEDS, Context, Method  # noqa: F401 (the registry's types, here)
from gradcam_cli.explain.methods.options import LIBRARIES, Choice, Option  # noqa: F401 (LIBRARIES: here too)

def _gradcam(result, context):
    return gradcam_weights(result.activations, result.gradients, pool=context.pool)


_GRADCAM_PAPER = "Selvaraju et al. 2017, Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization"
_GRADIENT_NEEDS = ("activations", "gradients")
_PYTORCH_GRAD_CAM = "Gildenblat and contributors 2021, PyTorch library for CAM methods (pytorch-grad-cam)"

# Options several methods share (one definition each: one flag on the command line).
MAX_MASKS = Option("max_masks", int, None, "score only N channels per image (Score-CAM: those of highest variance; "
                   "Ablation-CAM: of largest L1 norm); not given: all", minimum=1, metavar="N")
NOISE = Option("noise", float, DEFAULT_NOISE, "the noise's standard deviation, as a fraction of the input's range",
               minimum=0.0, record="smoothgrad_noise")
GUIDED_SAMPLES = Option("smoothgrad_samples", int, None, "SmoothGrad (Smilkov et al. 2017): average the gradient over N noisy "
                        "copies of the image (outputs named NAME.MODE-smoothgrad.KIND.png)", minimum=1,
                        flag="--smoothgrad", metavar="N", record="smoothgrad_samples")


def _smoothed_gradient_record(values):
    if not values["smoothgrad_samples"]:
        return {}
    return {"smoothgrad_samples": values["smoothgrad_samples"], "smoothgrad_noise": values["noise"]}


def _smoothed_gradient_suffix(values):
    return "-smoothgrad" if values["smoothgrad_samples"] else ""


def _gradient_image_method(mode, summary, paper):
    """guided and deconvnet: Grad-CAM's map and the input gradient through the ReLUs `mode`'s way
    (models/backprop_relus.py), optionally smoothed (--smoothgrad N)."""
    return Method(mode, summary, paper, _GRADIENT_NEEDS + ("input-gradients",), channel_weights=_gradcam,
                  backprop=mode, options=(GUIDED_SAMPLES, NOISE), record=_smoothed_gradient_record,
                  suffix=_smoothed_gradient_suffix)


def _fullgrad_warnings(loaded):
    return [w for w in [bias_warning(loaded)] if w]


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
        channel_weights=gradcam_plus_plus_channel_weights,
        options=(Option("gradcampp_alphas", str, DEFAULT_GRADCAMPP_ALPHAS, "paper: the pixel weights of the "
                        "paper's Eq. 19, g^2 / (2 g^2 + sum A g^3), no eps; paper-eps: the same with 1e-6 added to "
                        "the denominator (pytorch-grad-cam; shrinks the alphas where g^2 is near 1e-6); normalised: "
                        "each channel's alphas divided by their sum over the positions (tf-keras-vis, the authors' "
                        "code)", choices=GRADCAMPP_ALPHAS),),
        choices=(Choice("gradcampp_alphas", "how the pixel weights (alphas) are computed",
                        "the paper's closed form (Eq. 19), no eps, not normalised",
                        {"pytorch-grad-cam": ("paper-eps", "the closed form with 1e-6 added to its denominator, 0 "
                                              "where g = 0"),
                         "tf-keras-vis": ("normalised", "the closed form, each channel's alphas divided by their "
                                          "sum over the positions; it also multiplies the weights by exp(S), left "
                                          "out here: a positive factor per image that the drawn map's "
                                          "normalisation removes (inf in float32 for S > 88.7)")}),),
    ),
    "layercam": Method(
        "layercam",
        "LayerCAM: each activation weighted by its own positive gradient, summed over channels",
        "Jiang et al. 2021, LayerCAM: Exploring Hierarchical Class Activation Maps for Localization",
        _GRADIENT_NEEDS,
        contributions=lambda result, context: layercam_contributions(result.activations, result.gradients),
    ),
    "scorecam": Method(
        "scorecam",
        "Score-CAM: channel weights = the class probability of the input masked by each upsampled, "
        "min-max normalised channel (minus that of the zero input with --scorecam-baseline zero)",
        "Wang et al. 2020, Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks",
        ("activations", "forward-scores"),
        channel_weights=scorecam_channel_weights,
        options=(MAX_MASKS,
                 Option("scorecam_baseline", str, DEFAULT_SCORECAM_BASELINE, "none: each channel's weight is the "
                        "class probability of the masked input, as the authors' code, pytorch-grad-cam and "
                        "tf-keras-vis compute it; zero: minus that of the zero input, the paper's Eq. 4 (the increase "
                        "of confidence)", choices=SCORECAM_BASELINES),
                 Option("scorecam_score", str, DEFAULT_SCORECAM_SCORE, "probability: a masked input scores the "
                        "class probability (the authors' code); softmax-logits: it scores the class logit, and the "
                        "weights are a softmax of those scores over the channels, a constant channel's zero mask "
                        "scored too (pytorch-grad-cam)", choices=SCORECAM_SCORES),
                 Option("scorecam_upsample", str, DEFAULT_SCORECAM_UPSAMPLING, "half-pixel: the channels are "
                        "upsampled to masks bilinearly with half-pixel centres (cv2; the authors' "
                        "align_corners=False); corners: bilinearly with the corners aligned (pytorch-grad-cam's "
                        "UpsamplingBilinear2d, tf-keras-vis's scipy zoom of order 1)", choices=SCORECAM_UPSAMPLINGS)),
        choices=(Choice("scorecam_baseline", "what a masked input's probability is compared with",
                        "nothing: the probability itself (the authors' code)",
                        {"pytorch-grad-cam": ("none", "nothing (then a softmax over the channels' scores)"),
                         "tf-keras-vis": ("none", "nothing")}),
                 Choice("scorecam_score", "what scores a masked input",
                        "the class probability, each channel's weight as it is (the authors' code)",
                        {"pytorch-grad-cam": ("softmax-logits", "the class logit, then a softmax over the channels; "
                                              "a constant channel's zero mask is scored too"),
                         "tf-keras-vis": ("probability", "its score of softmax(model output): the class probability "
                                          "when the output is made linear (ReplaceToLinear)")}),
                 Choice("scorecam_upsample", "how a channel is upsampled to a mask",
                        "bilinear, half-pixel centres (cv2; the authors' align_corners=False)",
                        {"pytorch-grad-cam": ("corners", "bilinear, corners aligned (UpsamplingBilinear2d)"),
                         "tf-keras-vis": ("corners", "bilinear, corners aligned (scipy.ndimage.zoom, order 1)")})),
    ),
    "ablationcam": Method(
        "ablationcam",
        "Ablation-CAM: channel weights = the relative drop of the class score when the channel is set to 0, "
        "scored by the layers above the target alone",
        "Desai and Ramaswamy 2020, Ablation-CAM: Visual Explanations for Deep Convolutional Network via "
        "Gradient-free Localization",
        ("activations", "upper-graph-scores"),
        channel_weights=ablationcam_channel_weights,
        options=(MAX_MASKS, Option("ablation_denominator", str, DEFAULT_ABLATION_DENOMINATOR, "absolute: the drops "
                                   "are divided by |y_c| (at least 1e-6), so a negative class score keeps the "
                                   "weights' signs; signed: by y_c itself (pytorch-grad-cam), an image with y_c = 0 "
                                   "getting an empty map", choices=ABLATION_DENOMINATORS)),
        choices=(Choice("ablation_denominator", "what the drop of the class score is divided by",
                        "|y_c|, at least 1e-6",
                        {"pytorch-grad-cam": ("signed", "y_c, no guard (y_c = 0 gives a NaN map; here an empty "
                                              "one). Its ablated value min(A) - 1e7 on a layer with negative "
                                              "activations is not reproduced: the ablated value stays 0"),
                         "tf-keras-vis": (None, "not offered")}),),
    ),
    "xgradcam": Method(
        "xgradcam",
        "XGrad-CAM: channel weights = gradients averaged with the channel's normalised activations as pixel weights",
        "Fu et al. 2020, Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs",
        _GRADIENT_NEEDS,
        channel_weights=lambda result, context: xgradcam_weights(result.activations, result.gradients),
    ),
    "hirescam": Method(
        "hirescam",
        "HiResCAM: gradients times activations, element by element, summed over channels (no pooling)",
        "Draelos and Carin 2020, Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional "
        "neural networks",
        _GRADIENT_NEEDS,
        contributions=lambda result, context: hirescam_contributions(result.activations, result.gradients),
    ),
    "gradcam-elementwise": Method(
        "gradcam-elementwise",
        "element-wise Grad-CAM: the positive part of gradients times activations, summed over channels",
        _PYTORCH_GRAD_CAM + ", GradCAMElementWise",
        _GRADIENT_NEEDS,
        contributions=lambda result, context: gradcam_elementwise_contributions(result.activations, result.gradients),
    ),
    "eigengradcam": Method(
        "eigengradcam",
        "Eigen-Grad-CAM: the first principal component of gradients times activations",
        _PYTORCH_GRAD_CAM + ", EigenGradCAM",
        _GRADIENT_NEEDS,
        spatial_map=lambda result, context: eigengradcam_map(result.activations, result.gradients),
        principal=True,
    ),
    "segeigencam": Method(
        "segeigencam",
        "Seg-Eigen-CAM: the first principal component of |gradients| times activations, its larger side positive",
        "Chung and Ying 2025, Seg-Eigen-CAM: Eigen-Value-Based Visual Explanations for Semantic Segmentation Models",
        _GRADIENT_NEEDS,
        spatial_map=lambda result, context: segeigencam_map(result.activations, result.gradients),
        principal=True,
    ),
    "eigencam": Method(
        "eigencam",
        "Eigen-CAM: the first principal component of the activations (gradient-free, class-agnostic)",
        "Muhammad and Yeasin 2020, Eigen-CAM: Class Activation Map using Principal Components",
        ("activations",),
        spatial_map=lambda result, context: eigencam_map(result.activations),
        principal=True,
    ),
    "kpcacam": Method(
        "kpcacam",
        "KPCA-CAM: the first kernel (RBF) principal component of the activations (gradient-free, class-agnostic)",
        "Karmani et al. 2024, KPCA-CAM: Visual Explainability of Deep Computer Vision Models using Kernel PCA",
        ("activations",),
        spatial_map=kpcacam_spatial_map,
        principal=True,
        options=(Option("kpca_kernel", str, DEFAULT_KPCA_KERNEL, "rbf: the kernel exp(-||x - y||^2 / K); sigmoid: "
                        "tanh(<x, y> / K + 1) (pytorch-grad-cam's default)", choices=KPCA_KERNELS),),
        choices=(Choice("kpca_kernel", "which kernel", "RBF, gamma 1 / K",
                        {"pytorch-grad-cam": ("sigmoid", "sigmoid, gamma 1 / K, coef0 1 (its map's sign: sklearn's "
                                              "svd_flip, not ours)"),
                         "tf-keras-vis": (None, "not offered")}),),
    ),
    "fem": Method(
        "fem",
        "FEM: each channel's responses above mean + 2 std, weighted by the channel's mean (gradient-free)",
        "Fuad et al. 2020, Features Understanding in 3D CNNs for Actions Recognition in Video",
        ("activations",),
        contributions=fem_channel_contributions,
        options=(Option("fem_weights", str, DEFAULT_FEM_WEIGHTING, "channel-mean: each channel's binary map of "
                        "responses above mean + 2 std, weighted by the channel's mean (the paper); fraction-above: "
                        "each channel's activations, weighted by the fraction of its positions above that "
                        "threshold (pytorch-grad-cam)", choices=FEM_WEIGHTINGS),),
        choices=(Choice("fem_weights", "what is weighted, and by what",
                        "the binary maps, by the channel means (the paper, the reference code)",
                        {"pytorch-grad-cam": ("fraction-above", "the activations, by the fraction of positions "
                                              "above the threshold"),
                         "tf-keras-vis": (None, "not offered")}),),
    ),
    "randomcam": Method(
        "randomcam",
        "Random-CAM: channel weights uniform in [-1, 1], fixed per channel count (a baseline)",
        _PYTORCH_GRAD_CAM + ", RandomCAM",
        ("activations",),
        channel_weights=lambda result, context: randomcam_weights(result.activations),
    ),
    "finercam": Method(
        "finercam",
        "Finer-CAM: Grad-CAM of the class score minus alpha x the scores of its nearest-scoring classes "
        "(softmax-weighted)",
        "Zhang et al. 2025, Finer-CAM: Spotting the Difference Reveals Finer Details for Visual Explanation",
        _GRADIENT_NEEDS,
        channel_weights=finercam_weights,
        objective=lambda context: FinerObjective(context.options.get("finer_alpha", DEFAULT_ALPHA),
                                                 context.options.get("finer_compare", DEFAULT_COMPARE)),
        options=(Option("finer_alpha", float, DEFAULT_ALPHA, "how much of the compared classes' scores is subtracted "
                        "from the class's"),
                 Option("finer_compare", int, DEFAULT_COMPARE, "how many classes, those scored nearest to the class, "
                        "it is compared with (listed in --json as compared_classes)", minimum=1)),
    ),
    "shapleycam": Method(
        "shapleycam",
        "Shapley-CAM: channel weights = spatial mean of (gradient - 1/2 Hessian x activations) of the "
        "ReST utility",
        "Cai et al. 2025, CAMs as Shapley Value-based Explainers",
        _GRADIENT_NEEDS + ("hessian",),
        channel_weights=shapleycam_channel_weights,
        objective=lambda context: ReST(),
    ),
    "fullgrad": Method(
        "fullgrad",
        "FullGrad: |input gradient x input| plus every conv/BN layer's |bias gradient|, each normalised, "
        "at the input's resolution",
        "Srinivas and Fleuret 2019, Full-Gradient Representation for Neural Network Visualization",
        ("plain-input-gradients", "bias-gradients"),
        spatial_map=fullgrad_map,
        warnings=_fullgrad_warnings,
    ),
    "smoothgrad": Method(
        "smoothgrad",
        "SmoothGrad: the input gradient's largest colour magnitude, averaged over noisy copies",
        "Smilkov et al. 2017, SmoothGrad: removing noise by adding noise",
        ("plain-input-gradients",),
        spatial_map=smoothgrad_method_map,
        options=(Option("samples", int, DEFAULT_SAMPLES, "noisy copies per image", minimum=1, metavar="N",
                        record="smoothgrad_samples"), NOISE),
    ),
    "integrated-gradients": Method(
        "integrated-gradients",
        "Integrated Gradients: input gradients along the straight path from a zero input, times the "
        "difference, summed over colours",
        "Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks",
        ("plain-input-gradients",),
        spatial_map=integrated_gradients_method_map,
        options=(Option("steps", int, DEFAULT_STEPS, "intervals of the path from a zero input (the completeness "
                        "residual is in --json)", minimum=1),),
    ),
    "guided": _gradient_image_method(
        "guided", "Guided Grad-CAM: guided backpropagation x the Grad-CAM map",
        "Springenberg et al. 2015, Striving for Simplicity: The All Convolutional Net; " + _GRADCAM_PAPER),
    "deconvnet": _gradient_image_method(
        "deconvnet", "deconvnet x the Grad-CAM map",
        "Zeiler and Fergus 2014, Visualizing and Understanding Convolutional Networks"),
    "rollout": Method(
        "rollout",
        "Attention rollout: each block's attention with the identity added for the residual, rows renormalised, "
        "multiplied through the blocks (a transformer's; gradient-free, class-agnostic)",
        "Abnar and Zuidema 2020, Quantifying Attention Flow in Transformers",
        ("attention",),
        spatial_map=rollout_map,
        options=(Option("head_fusion", str, DEFAULT_FUSION, "how the heads' attention is fused: their mean (the "
                        "paper), max or min", choices=FUSIONS),
                 Option("discard_ratio", float, DEFAULT_DISCARD, "the fraction of each block's lowest fused "
                        "attention set to 0 before the identity is added (not in the paper: jacobgil/vit-explain's, "
                        "which uses 0.9)", minimum=0.0, maximum=0.99)),
    ),
    "generic-attention": Method(
        "generic-attention",
        "Generic attention explainability: each block's attention times its gradient, positive part averaged over "
        "heads, propagated through the blocks (a transformer's)",
        "Chefer, Gur and Wolf 2021, Generic Attention-model Explainability for Interpreting Bi-Modal and "
        "Encoder-Decoder Transformers",
        ("attention", "attention-gradients"),
        spatial_map=generic_attention_map,
    ),
    "legrad": Method(
        "legrad",
        "LeGrad: each block's attention's sensitivity to that block's own score (the head on its tokens), "
        "positive part averaged over heads and queries, then over blocks (a transformer's)",
        "Bousselham et al. 2024, LeGrad: An Explainability Method for Vision Transformers via Feature Formation "
        "Sensitivity",
        ("attention", "block-attention-gradients"),
        spatial_map=legrad_map,
        options=(Option("legrad_blocks", int, None, "average the last K blocks only (not given: every block; "
                        "torchcam's example takes 4, the authors' code 2)", minimum=1, metavar="K"),),
        applies=legrad_applies,
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

POOLING = ("mean", "max")


def context_for(method, loaded, target_path, pool="mean", options=None):
    """What `method` needs beyond the engine's results; ValueError when it does not apply.
    options: the method's option values (Method.values)."""
    from gradcam_cli.models.backprop_relus import census
    from gradcam_cli.models.heads import cam_classifier

    kernel = relus = None
    if METHODS[method].needs_classifier:
        kernel, _ = cam_classifier(loaded.layers, target_path)
        if loaded.head.kind == "binary":  # one sigmoid unit: class 0's score is -z, so its column is -w
            import numpy as np

            kernel = np.concatenate([-kernel, kernel], axis=1)
    if "input-gradients" in METHODS[method].needs:
        relus = census(loaded.layers, loaded.final_path)
    if METHODS[method].reads_attention:
        from gradcam_cli.explain.attention import check_applies

        check_applies(loaded, target_path, blocks="block-attention-gradients" in METHODS[method].needs)
    METHODS[method].check_applies(loaded, target_path, options)  # an option that would have no effect there
    return Context(pool=pool, classifier_kernel=kernel, relus=relus, options=dict(options or {}))


NETWORKS = ("exact", "no-pooling")


def output_name(method, network=None):
    """The name in output files: the method's, or for a method on a dilated copy
    dilated[-no-pooling]-METHOD (Grad-CAM's: the methods dilated and dilated-no-pooling)."""
    if network is None:
        return method
    base = "dilated" if network == "exact" else "dilated-no-pooling"
    return base if method == "gradcam" else f"{base}-{method}"


# Meta-methods: they take any map method as their base (--base-method) and compose its maps.
BASE_METHODS = tuple(name for name, method in METHODS.items() if method.backprop is None and method.network is None)
_BASE_HELP = "the method whose maps are composed (see `gradcam methods`; its own options apply)"


def _base_suffix(default):
    """A meta-method's file names carry its base method when it is not the default one
    (NAME.refinecam-layercam.overlay.png), so runs with two bases do not overwrite each other."""
    return lambda values: "" if values["base_method"] == default else f"-{values['base_method']}"

METHODS["refinecam"] = Method(
    "refinecam",
    "RefineCAM: the base method's maps at several layers (one per resolution by default), each normalised and "
    "upsampled to the input, multiplied",
    "Domeniconi et al. 2026, How to Evaluate and Refine your CAM",
    ("base-method",),
    meta=refinecam_maps,
    default_layers=stage_layers,
    options=(Option("base_method", str, "gradcam++", _BASE_HELP, choices=BASE_METHODS),),
    suffix=_base_suffix("gradcam++"),
)
METHODS["sess"] = Method(
    "sess",
    "SESS: the base method's maps of windows sliding over upscaled copies of the image, weighted by the class's "
    "probability in each window, pasted back, fused and blurred",
    "Tursun et al. 2022, SESS: Saliency Enhancing with Scaling and Sliding",
    ("base-method",),
    meta=sess_maps,
    suffix=_base_suffix("gradcam"),
    options=(Option("base_method", str, "gradcam", _BASE_HELP, choices=BASE_METHODS),
             Option("sess_scales", int, SESS_SCALES, "how many scales the image is enlarged to (the first is its "
                    "own size); each adds windows", minimum=1),
             Option("sess_scale_step", float, SESS_SCALE_STEP, "each scale's short side grows by this fraction of "
                    "the input's", minimum=0.0),
             Option("sess_stride", int, None, "the windows' stride in pixels; not given: the window's size", minimum=1,
                    metavar="PIXELS"),
             Option("sess_pre_filter", float, 0.0, "leave out this fraction of the windows, those in which the class "
                    "scores lowest", minimum=0.0, maximum=0.99),
             Option("sess_theta", float, 0.0, "with --sess-pool mean, a pixel's mean takes the pasted maps above "
                    "this value only", minimum=0.0),
             Option("sess_pool", str, "mean", "how the pasted maps are fused: their mean (over those above theta) "
                    "or their maximum", choices=SESS_POOLS),
             Option("sess_blur", float, SESS_BLUR, "the Gaussian blur's sigma over an 11 x 11 window (0: none)",
                    minimum=0.0)),
)
NEEDS["base-method"] = "the maps of a base method (--base-method) at other layers or on other inputs"

# The columns `compare` draws -> (METHODS key, what the cell shows: the map, the input gradient,
# or the gradient times the map): every map method, and the views of guided and deconvnet.
COMPARE_COLUMNS = {
    **{name: (name, "map") for name, method in METHODS.items() if method.backprop is None},
    "guided": ("guided", "gradient"),
    "guided-gradcam": ("guided", "product"),
    "deconvnet": ("deconvnet", "gradient"),
}

# Every option name of every method: the API tells them from the model-loading arguments.
OPTION_NAMES = frozenset(option.name for method in METHODS.values() for option in method.options)
