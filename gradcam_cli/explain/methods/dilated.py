"""Dilated Grad-CAM, exact: Grad-CAM (Selvaraju et al. 2017) on the exact a trous dilated copy of
the model (Holschneider et al. 1989; models/dilated.py): every pooling made stride 1 over a window
dilated like the convolutions after it, so the copy computes the original classifier at full
resolution. Open choices: docs/methods.md#dilated-grad-cam-exact.
"""

from gradcam_cli.explain.methods import gradcam
from gradcam_cli.explain.methods.method import GRADIENT_NEEDS, Method

channel_weights = gradcam.channel_weights

METHOD = Method(
    "dilated",
    "Grad-CAM on the exact (a trous) dilated copy: the original classifier at full resolution",
    "Holschneider et al. 1989, the a trous algorithm; " + gradcam.PAPER,
    GRADIENT_NEEDS + ("dilated-copy",),
    channel_weights=channel_weights,
    network="exact",
    volumes=False,
    no_volumes=("it runs on a dilated copy of a 2-D network (its Conv2D and 2-D pooling layers rewritten)"),
)
