"""The first principal component of an image's feature vectors: the map of Eigen-CAM
(eigencam.py), Eigen-Grad-CAM (eigengradcam.py) and KPCA-CAM's orientation, and eigen smoothing
(pytorch-grad-cam's `--eigen-smooth`). With M (hw, K) an image's features,

    M_c = M - mean over positions,   M_c = U S V^T,   map = M_c V[:, 0]

oriented to correlate positively with the channel mean (else its largest entry positive), since an
SVD's sign is arbitrary. Open choices (centring, sign): docs/methods.md#eigen-cam,
docs/methods.md#eigen-smooth.
"""

import numpy as np

# Below this |cosine| between a map and the features' channel mean, the sign is not read from the
# correlation but from the map's largest entry.
_TIE_COSINE = 1e-6
# A channel mean below this fraction of the largest feature is taken as 0 (see `orient`).
_NIL_MEAN = 1e-5


def first_principal_component(features):
    """Each image's centred feature vectors projected onto their first principal axis, oriented to
    correlate positively with the channel mean: (B, h, w, K) -> (B, h, w) float32; a volume's
    (B, d1, d2, d3, K) -> (B, d1, d2, d3), its d1 d2 d3 positions the samples."""
    features = finite_features(features)
    batch, positions, channels = features.shape[0], features.shape[1:-1], features.shape[-1]
    samples = features.reshape(batch, int(np.prod(positions)), channels)
    centred = samples - samples.mean(axis=1, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    projections = np.einsum("bnk,bk->bn", centred, vt[:, 0, :])
    oriented = orient(projections, channel_mean(samples))
    return oriented.reshape((batch,) + positions).astype(np.float32)


def eigen_smooth(weighted):
    """pytorch-grad-cam's eigen smoothing: instead of the channel sum of the weighted activations
    (w_k A_k, or element-wise weights times A), their first principal component, per image:
    (B, h, w, K) -> (B, h, w) float32 (a volume's (B, d1, d2, d3, K) -> (B, d1, d2, d3)), oriented like the channel sum it replaces (see the module's
    notes)."""
    return first_principal_component(weighted)


def channel_mean(samples):
    """The reference a map is oriented by: each position's channel mean of (B, n, K) samples,
    (B, n); 0 for an image whose channel means are all below 1e-5 of its largest feature. A
    LayerNorm's output (a transformer's token layer) has a channel mean of 0 up to rounding: no
    direction to agree with, so `orient`'s tie rule decides, the same for a batch and one image."""
    reference = samples.mean(axis=2)
    scale = np.abs(samples).max(axis=(1, 2))
    nil = np.abs(reference).max(axis=1) <= _NIL_MEAN * scale
    return np.where(nil[:, None], 0.0, reference)


def orient(projections, reference):
    """Flip each row of `projections` (B, n) whose correlation with the same row of `reference`
    (B, n) is negative; a row with |cos| < 1e-6 (or a constant reference) is flipped so its entry
    of largest magnitude, the first such, is positive. Returns float64 (B, n)."""
    projections = np.asarray(projections, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    centred_projection = projections - projections.mean(axis=1, keepdims=True)
    centred_reference = reference - reference.mean(axis=1, keepdims=True)
    inner = np.einsum("bn,bn->b", centred_projection, centred_reference)
    norms = np.linalg.norm(centred_projection, axis=1) * np.linalg.norm(centred_reference, axis=1)
    cosine = np.divide(inner, norms, out=np.zeros_like(inner), where=norms > 0)
    largest = projections[np.arange(len(projections)), np.abs(projections).argmax(axis=1)]
    sign = np.where(np.abs(cosine) >= _TIE_COSINE, np.sign(cosine), np.where(largest < 0, -1.0, 1.0))
    return projections * sign[:, None]


def finite_features(features):
    """(B, h, w, K) or a volume's (B, d1, d2, d3, K) float64 with non-finite entries set to 0;
    ValueError for another rank."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim not in (4, 5):
        raise ValueError(f"features must be (batch, height, width, channels) or (batch, d1, d2, d3, channels). "
                         f"Received: shape={features.shape}")
    return np.where(np.isfinite(features), features, 0.0)
