"""Finer-CAM (Zhang, Gu, Chowdhury, Mai, Carlyn, Berger-Wolf, Su and Chao, "Finer-CAM: Spotting
the Difference Reveals Finer Details for Visual Explanation", CVPR 2025): Grad-CAM of the
difference between the class's score and those of the classes the model finds most similar,
so that what the class shares with them cancels and what tells it apart remains.

Per image of class c with class scores y (before the softmax) and p = softmax(y):

    D = the n classes d != c whose scores are nearest to y_c (smallest |y_d - y_c|)
    S = sum_{d in D} p_d (y_c - alpha y_d) / (sum_{d in D} p_d + 1e-9)     the objective
    w_k = (1/Z) sum_ij dS / dA^k_ij                                         Grad-CAM's Eq. 1
    map = sum_k w_k A_k                                                     before the ReLU

The paper's objective is y_c - alpha y_d for one similar class d ("comparison strength" alpha:
0 is Grad-CAM, 1 the plain difference), aggregated over several references. Our choices, each
named:

- Similar classes: by score proximity, |y_d - y_c| ascending, on the scores before the softmax:
  n = 3 by default, alpha = 1. c itself is excluded explicitly, ties are broken by the lower class
  index, and n = min(n, classes - 1).
- Aggregation: the softmax-weighted mean of the n differences, eps 1e-9. The weights p_d are part
  of the objective and differentiated with it (nothing is detached). With n = 1 the weight all but
  cancels: S = (y_c - alpha y_d) p_d / (p_d + 1e-9).
- p is the softmax of the class scores whatever the model's own head; for a binary model
  (scores -z, z) it is softmax(-z, z), and n = 1 anyway.
- The compared classes are returned per image (batch.BatchResult.compared, (B, n)) for the
  JSON record.

They follow pytorch-grad-cam's FinerCAM (contributed by the paper's authors); where they differ:
docs/methods.md#finer-cam.
"""

from dataclasses import dataclass

from gradcam_cli.explain.methods.gradcam import gradcam_weights
from gradcam_cli.explain.methods.method import GRADIENT_NEEDS, Method
from gradcam_cli.explain.methods.options import MethodOption

ALPHA = MethodOption("finer_alpha", float, 1.0, "how much of the compared classes' scores is subtracted from the "
                     "class's")
COMPARE = MethodOption("finer_compare", int, 3, "how many classes, those scored nearest to the class, it is "
                       "compared with (listed in --json as compared_classes)", minimum=1)
_EPSILON = 1e-9


@dataclass(frozen=True)
class FinerObjective:
    """The engine objective S above (engine.Engine.run(..., objective=FinerObjective(...))):
    called in the compiled step with the class scores (B, C) and the classes (B,), returns
    (S (B,), {"compared": (B, n) int32})."""

    alpha: float = ALPHA.default
    compare: int = COMPARE.default

    def __post_init__(self):
        if isinstance(self.compare, bool) or not isinstance(self.compare, int) or self.compare < 1:
            raise ValueError(f"compare must be a whole number of classes, 1 or more. Received: compare={self.compare!r}")
        object.__setattr__(self, "alpha", float(self.alpha))

    def __call__(self, scores, classes):
        from keras import ops  # in the compiled step; not at import: `gradcam --help` must not load Keras

        count = int(scores.shape[-1])
        n = min(self.compare, count - 1)
        target = ops.one_hot(classes, count, dtype=scores.dtype)
        chosen = ops.sum(scores * target, axis=-1)
        # Nearest scores first; the class itself never (its distance is +inf). top_k of the
        # negated distance lists equal values lower index first.
        distance = ops.where(target > 0, float("inf"), ops.abs(scores - chosen[:, None]))
        _, compared = ops.top_k(-distance, k=n)
        compared = ops.cast(compared, "int32")
        probabilities = ops.softmax(scores, axis=-1)
        weights = ops.take_along_axis(probabilities, compared, axis=-1)
        others = ops.take_along_axis(scores, compared, axis=-1)
        numerator = ops.sum(weights * (chosen[:, None] - self.alpha * others), axis=-1)
        return numerator / (ops.sum(weights, axis=-1) + _EPSILON), {"compared": compared}


def objective(context):
    """The registry's engine objective: FinerObjective with the context's finer_alpha and finer_compare."""
    return FinerObjective(context.options["finer_alpha"], context.options["finer_compare"])


def channel_weights(result, context):
    """Finer-CAM channel weights (B, K): Grad-CAM's gradients, pooled with the context's pooling,
    of a BatchResult computed with objective=FinerObjective."""
    if result.compared is None:
        raise ValueError("Finer-CAM needs the engine run with objective=FinerObjective(...)")
    return gradcam_weights(result.activations, result.gradients, pool=context.pool)


METHOD = Method(
    "finercam",
    "Finer-CAM: Grad-CAM of the class score minus alpha x the scores of its nearest-scoring classes "
    "(softmax-weighted)",
    "Zhang et al. 2025, Finer-CAM: Spotting the Difference Reveals Finer Details for Visual Explanation",
    GRADIENT_NEEDS,
    channel_weights=channel_weights,
    objective=objective,
    options=(ALPHA, COMPARE),
    volumes=True,
)
