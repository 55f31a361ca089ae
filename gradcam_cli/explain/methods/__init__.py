"""The registry: every method's entry, collected. The registry alone feeds the engine, `--method`,
`gradcam methods`, `compare`, `eval` and the help text; its order is theirs.

A method is one module here that ends with its entry, `METHOD = Method(...)` (method.py): its
needs, its one rule (`channel_weights`, `contributions` or `spatial_map`, each
`(result, context)`, before the final ReLU: explain/compute.py), its options and open choices
(options.py). Adding a method: its module and its tests, and one line below.
"""

from gradcam_cli.explain.methods import (
    ablationcam,
    cam,
    deconvnet,
    dilated,
    dilated_no_pooling,
    eigencam,
    eigengradcam,
    fem,
    finercam,
    fullgrad,
    generic_attention,
    gradcam,
    gradcam_elementwise,
    gradcam_plus_plus,
    guided,
    hirescam,
    integrated_gradients,
    kpcacam,
    layercam,
    legrad,
    randomcam,
    refinecam,
    rollout,
    scorecam,
    segeigencam,
    sess,
    shapleycam,
    smoothgrad,
    xgradcam,
)
from gradcam_cli.explain.methods.context import NETWORKS, POOLING, context_for, output_name  # noqa: F401
from gradcam_cli.explain.methods.method import NEEDS, Context, Method, collected  # noqa: F401
from gradcam_cli.explain.methods.options import LIBRARIES, LibraryChoice, MethodOption  # noqa: F401

METHODS = collected(
    gradcam.METHOD,
    cam.METHOD,
    gradcam_plus_plus.METHOD,
    layercam.METHOD,
    scorecam.METHOD,
    ablationcam.METHOD,
    xgradcam.METHOD,
    hirescam.METHOD,
    gradcam_elementwise.METHOD,
    eigengradcam.METHOD,
    segeigencam.METHOD,
    eigencam.METHOD,
    kpcacam.METHOD,
    fem.METHOD,
    randomcam.METHOD,
    finercam.METHOD,
    shapleycam.METHOD,
    fullgrad.METHOD,
    smoothgrad.METHOD,
    integrated_gradients.METHOD,
    guided.METHOD,
    deconvnet.METHOD,
    rollout.METHOD,
    generic_attention.METHOD,
    legrad.METHOD,
    dilated.METHOD,
    dilated_no_pooling.METHOD,
    refinecam.METHOD,
    sess.METHOD,
)

# The methods a meta-method may compose (--base-method).
BASE_METHODS = tuple(name for name, method in METHODS.items() if method.is_base)

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
