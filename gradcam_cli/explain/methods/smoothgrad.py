"""SmoothGrad (Smilkov, Thorat, Kim, Viegas and Wattenberg 2017, "SmoothGrad: removing noise by
adding noise", Eq. 3): the input gradient of the class score averaged over noisy copies,

    M(x) = 1/n sum_i grad_x S_c(x + e_i),   e_i ~ N(0, sigma^2),   sigma = noise (max x - min x)

shown as its largest magnitude over the colours (a volume's: over its channels, noise drawn per
voxel). Open choices: docs/methods.md#smoothgrad.
"""

import numpy as np

from gradcam_cli.explain.methods.input_attribution import smoothgrad
from gradcam_cli.explain.methods.method import Method
from gradcam_cli.explain.methods.options import NOISE, MethodOption

SAMPLES = MethodOption("samples", int, 50, "noisy copies per image", minimum=1, metavar="N",
                       record="smoothgrad_samples")


def spatial_map(result, context):
    """(B, H, W): the largest magnitude over colours of the SmoothGrad of an batch.BatchResult's
    inputs and classes, at the input's resolution, with the context's samples and noise; a
    volume's (B, D1, D2, D3), over its channels."""
    gradients = smoothgrad(result.engine, result.inputs, result.classes, context.options["samples"],
                           context.options["noise"])
    return np.abs(gradients).max(axis=-1)


METHOD = Method(
    "smoothgrad",
    "SmoothGrad: the input gradient's largest colour magnitude, averaged over noisy copies",
    "Smilkov et al. 2017, SmoothGrad: removing noise by adding noise",
    ("plain-input-gradients",),
    spatial_map=spatial_map,
    options=(SAMPLES, NOISE),
    volumes=True,
)
