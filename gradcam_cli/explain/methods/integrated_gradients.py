"""Integrated Gradients (Sundararajan, Taly and Yan 2017, "Axiomatic Attribution for Deep
Networks", Eq. 1 and 3): input gradients along the straight path from a baseline x' (zeros in the
model's input space), times the difference,

    IG_i(x) = (x_i - x'_i) integral_0^1 dS_c(x' + a (x - x')) / dx_i da

summed over the colours for the map (a volume's: over its channels, the map (B, D1, D2, D3));
each image's record gets the completeness residual
sum_i IG_i - (S_c(x) - S_c(x')). Open choices: docs/methods.md#integrated-gradients.
"""

from gradcam_cli.explain.methods.input_attribution import integrated_gradients
from gradcam_cli.explain.methods.method import Method
from gradcam_cli.explain.methods.options import MethodOption

STEPS = MethodOption("steps", int, 32, "intervals of the path from a zero input (the completeness residual is in "
                     "--json)", minimum=1)


def spatial_map(result, context):
    """The map (attributions summed over colours) and, per image, the completeness residual
    sum(attributions) - (S_c(x) - S_c(x')) for its record."""
    steps = context.options["steps"]
    attributions, residuals = integrated_gradients(result.engine, result.inputs, result.classes, steps)
    details = [{"completeness_residual": float(r), "steps": int(steps), "baseline": "zero"}
               for r in residuals]
    return attributions.sum(axis=-1), details


METHOD = Method(
    "integrated-gradients",
    "Integrated Gradients: input gradients along the straight path from a zero input, times the "
    "difference, summed over colours",
    "Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks",
    ("plain-input-gradients",),
    spatial_map=spatial_map,
    options=(STEPS,),
    volumes=True,
)
