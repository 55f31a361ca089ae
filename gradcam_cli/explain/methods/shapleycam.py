"""Shapley-CAM (Cai, "CAMs as Shapley Value-based Explainers", The Visual Computer 2025,
arXiv:2501.06261): channel weights from the gradient and the Hessian-vector product of the
class score with respect to the target activations, a second-order estimate of each channel's
Shapley value.

Per image of class c, target activations A (h, w, K) and objective S (see below):

    g = dS / dA,   H A = (d^2 S / dA dA) A     (the Hessian applied to the activations)
    w_k = (1/Z) sum_ij (g - 1/2 H A)^k_ij      the weights
    map = sum_k w_k A_k                        before the ReLU

Our choices, each named:

- The sign: g - 1/2 H A, pooled by the spatial mean like Grad-CAM's Eq. 1.
- H A: the vector is the activations themselves, held fixed. The engine computes it in one
  compiled second-order step (engine.Engine.run with "hessian" in its needs: a double GradientTape on
  TensorFlow, jax.linearize of jax.grad on JAX).
- The objective S: the paper's ReST utility, y_c + log softmax(y)_c (the logit minus the
  cross-entropy), `ReST()` here: engine.run(..., needs=(..., "hessian"), objective=ReST()); objective=None
  differentiates the logit.
- Why ReST: a network of ReLUs, max pooling, batch normalisation, global pooling and Dense
  layers is piecewise linear in A, so the logit's Hessian is zero almost everywhere and with
  the logit Shapley-CAM is Grad-CAM exactly (VGG, ResNet). H A comes from ReST's log-softmax,
  and from smooth activations above the target (swish and sigmoid gates in EfficientNet, tanh).

They follow pytorch-grad-cam's ShapleyCAM (by the paper's author); where they differ:
docs/methods.md#shapley-cam.
"""

from dataclasses import dataclass

import numpy as np

from gradcam_cli.explain.methods.method import GRADIENT_NEEDS, Method, spatial_axes


@dataclass(frozen=True)
class ReST:
    """The Residual Softmax Target-class utility y_c + log softmax(y)_c, the paper's, as an
    engine objective: (scores (B, C), classes (B,)) -> (values (B,), {})."""

    def __call__(self, scores, classes):
        from keras import ops  # in the compiled step; not at import: `gradcam --help` must not load Keras

        target = ops.one_hot(classes, int(scores.shape[-1]), dtype=scores.dtype)
        return ops.sum((scores + ops.log_softmax(scores, axis=-1)) * target, axis=-1), {}


def shapleycam_weights(gradients, hessian_products):
    """w_k = mean_ij (g - 1/2 H A): (B, h, w, K) x (B, h, w, K) -> (B, K) float32."""
    gradients = np.asarray(gradients, dtype=np.float32)
    hessian_products = np.asarray(hessian_products, dtype=np.float32)
    return (gradients - 0.5 * hessian_products).mean(axis=spatial_axes(gradients))


def objective(context):
    """The registry's engine objective: the paper's ReST utility."""
    return ReST()


def channel_weights(result, context):
    """Shapley-CAM channel weights of an batch.BatchResult computed with "hessian" in its needs."""
    if result.hessian_products is None:
        raise ValueError("Shapley-CAM needs the engine run with \"hessian\" in its needs")
    return shapleycam_weights(result.gradients, result.hessian_products)


METHOD = Method(
    "shapleycam",
    "Shapley-CAM: channel weights = spatial mean of (gradient - 1/2 Hessian x activations) of the "
    "ReST utility",
    "Cai et al. 2025, CAMs as Shapley Value-based Explainers",
    GRADIENT_NEEDS + ("hessian",),
    channel_weights=channel_weights,
    objective=objective,
    volumes=True,
)
