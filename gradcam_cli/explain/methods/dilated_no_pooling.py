"""Dilated Grad-CAM without pooling: Grad-CAM (Selvaraju et al. 2017) on the copy whose poolings
are removed and whose later convolutions are dilated (Yu and Koltun 2016, "Multi-Scale Context
Aggregation by Dilated Convolutions"; models/dilated.py): same parameters, a different classifier.
Open choices: docs/methods.md#dilated-grad-cam-without-pooling.
"""

from gradcam_cli.explain.methods import gradcam
from gradcam_cli.explain.methods.method import GRADIENT_NEEDS, Method

channel_weights = gradcam.channel_weights

METHOD = Method(
    "dilated-no-pooling",
    "Grad-CAM on the no-pooling dilated copy (poolings removed; a different classifier)",
    "Yu and Koltun 2016, Multi-Scale Context Aggregation by Dilated Convolutions; " + gradcam.PAPER,
    GRADIENT_NEEDS + ("dilated-copy",),
    channel_weights=channel_weights,
    network="no-pooling",
    volumes=False,
    no_volumes=("it runs on a dilated copy of a 2-D network (its Conv2D and 2-D pooling layers rewritten)"),
)
