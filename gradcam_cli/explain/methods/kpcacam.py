"""KPCA-CAM (Karmani et al. 2024, "KPCA-CAM: Visual Explainability of Deep Computer Vision Models
using Kernel PCA"): gradient-free, Eigen-CAM with kernel PCA in place of PCA. For an image's
activations as N = hw centred samples, with G_c the centred kernel matrix (RBF or sigmoid, gamma 1/K),

    G_c u = lambda u (the largest eigenvalue),   map = sqrt(lambda) u

(sklearn's KernelPCA(n_components=1).fit_transform), exact by np.linalg.eigh, so at most
MAX_POSITIONS positions. Open choices (kernel, sign): docs/methods.md#kpca-cam.
"""

import numpy as np

from gradcam_cli.explain.methods.method import Method
from gradcam_cli.explain.methods.options import LibraryChoice, MethodOption
from gradcam_cli.explain.methods.pca import channel_mean, finite_features, orient

KERNEL = MethodOption("kpca_kernel", str, "rbf", "rbf: the kernel exp(-||x - y||^2 / K); sigmoid: "
                      "tanh(<x, y> / K + 1) (pytorch-grad-cam's default)", choices=("rbf", "sigmoid"))
MAX_POSITIONS = 4096


def spatial_map(result, context):
    """KPCA-CAM's map of an batch.BatchResult, (B, h, w) float32; the context's option
    kpca_kernel chooses the kernel."""
    return kpcacam_map(result.activations, kernel=context.options["kpca_kernel"])


def kpcacam_map(activations, kernel=KERNEL.default, gamma=None, coef0=1.0):
    """The first kernel principal component of each image's activations: (B, h, w, K) ->
    (B, h, w) float32, before the final ReLU."""
    if kernel not in KERNEL.choices:
        raise ValueError(f"kernel must be one of {', '.join(KERNEL.choices)}. Received: kernel={kernel!r}")
    features = finite_features(activations)
    batch, grid, channels = features.shape[0], features.shape[1:-1], features.shape[-1]
    positions = int(np.prod(grid))  # a volume's d1 d2 d3 positions
    if positions > MAX_POSITIONS:
        from gradcam_cli.errors import LayerError

        sides = "x".join(str(side) for side in grid)
        what = "(h*w) x (h*w)" if len(grid) == 2 else "(d1*d2*d3) x (d1*d2*d3)"
        raise LayerError(f"kpcacam builds an {what} kernel matrix per image; the target layer has "
                         f"{sides} = {positions} positions, more than {MAX_POSITIONS}: choose a "
                         f"deeper layer. Received: activations of shape {features.shape[1:]}")
    gamma = 1.0 / channels if gamma is None else float(gamma)
    samples = features.reshape(batch, positions, channels)
    centred = samples - samples.mean(axis=1, keepdims=True)
    projections = np.stack([_first_component(kernel_matrix(x, kernel, gamma, coef0)) for x in centred])
    return orient(projections, channel_mean(samples)).reshape((batch,) + grid).astype(np.float32)


def kernel_matrix(samples, kernel, gamma, coef0=1.0):
    """G_ij = kappa(x_i, x_j) of (N, K) samples: (N, N) float64."""
    inner = samples @ samples.T
    if kernel == "sigmoid":
        return np.tanh(gamma * inner + coef0)
    squared = np.diag(inner)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2.0 * inner, 0.0)
    return np.exp(-gamma * distances)


def _first_component(gram):
    """sqrt(lambda) u for the centred kernel matrix's largest eigenvalue lambda (0 if lambda <= 0)."""
    centred = gram - gram.mean(axis=0, keepdims=True) - gram.mean(axis=1, keepdims=True) + gram.mean()
    values, vectors = np.linalg.eigh((centred + centred.T) / 2.0)  # symmetric up to rounding
    return vectors[:, -1] * np.sqrt(max(values[-1], 0.0))


METHOD = Method(
    "kpcacam",
    "KPCA-CAM: the first kernel (RBF) principal component of the activations (gradient-free, class-agnostic)",
    "Karmani et al. 2024, KPCA-CAM: Visual Explainability of Deep Computer Vision Models using Kernel PCA",
    ("activations",),
    spatial_map=spatial_map,
    principal=True,
    options=(KERNEL,),
    choices=(LibraryChoice("kpca_kernel", "which kernel", "RBF, gamma 1 / K",
                           {"pytorch-grad-cam": ("sigmoid", "sigmoid, gamma 1 / K, coef0 1 (its map's sign: "
                                                 "sklearn's svd_flip, not ours)"),
                            "tf-keras-vis": (None, "not offered")}),),
    volumes=True,
)
