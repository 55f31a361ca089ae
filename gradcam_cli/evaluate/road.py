"""ROAD's noisy linear imputation (Rong et al., "A Consistent and Efficient Evaluation Strategy
for Attribution Methods", ICML 2022): each removed pixel becomes the weighted average of its
8-neighbours (1/6 direct, 1/12 diagonal), solved exactly with SciPy's sparse solver, plus noise,
so the removed region's shape does not tell the model where the map was. faithfulness.py removes
the pixels (road_views) and scores them.

Equations and choices (weights, noise scale, solver): docs/evaluation.md#roads-imputation-roadpy.
"""

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import spsolve

from gradcam_cli.errors import GradcamError, argument

ROAD_DIRECT_WEIGHT = 1.0 / 6.0
ROAD_DIAGONAL_WEIGHT = 1.0 / 12.0
# (dy, dx), weight of the 8 neighbours.
ROAD_NEIGHBOURS = tuple(((dy, dx), ROAD_DIRECT_WEIGHT if dy == 0 or dx == 0 else ROAD_DIAGONAL_WEIGHT)
                        for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


def linear_imputation(view, removed, noise=0.0, rng=None):
    """ROAD's noisy linear imputation of an (H, W, C) view: every `removed` pixel ((H, W) bool)
    the weighted average of its in-image 8-neighbours (1/6 direct, 1/12 diagonal), solved
    exactly for all removed pixels together, plus `noise` x N(0, 1) per pixel and channel drawn
    from `rng` over the whole grid (numpy Generator; needed when noise > 0). Kept pixels are
    unchanged. (H, W, C) float32. GradcamError when every pixel is removed."""
    view = np.asarray(view, dtype=np.float64)
    removed = np.asarray(removed, dtype=bool)
    if view.ndim != 3 or removed.shape != view.shape[:2]:
        raise GradcamError(f"a view (H, W, C) and a removed mask (H, W). Received: {view.shape}, {removed.shape}")
    out = view.copy()
    if removed.any():
        if removed.all():
            raise GradcamError("linear imputation needs at least one kept pixel: every pixel was removed")
        ys, xs = np.nonzero(removed)
        out[ys, xs] = _solve(view, removed, ys, xs)
    if noise:
        if rng is None:
            raise GradcamError(f"noisy imputation needs a random generator: give {argument('rng')}")
        out[removed] += float(noise) * rng.standard_normal(view.shape)[removed]
    return out.astype(np.float32)


def _solve(view, removed, ys, xs):
    """The removed pixels' values (n, C): the system (sum_j w_ij) x_i - sum_{j removed} w_ij x_j =
    sum_{j kept} w_ij v_j over the in-image neighbours j of each removed pixel i, as one sparse
    matrix, solved by SuperLU for every channel at once."""
    height, width, channels = view.shape
    count = len(ys)
    index = np.full((height, width), -1, np.int64)
    index[ys, xs] = np.arange(count)
    diagonal = np.zeros(count)
    rhs = np.zeros((count, channels))
    rows, cols, values = [], [], []
    for (dy, dx), weight in ROAD_NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        diagonal[inside] += weight  # a neighbour outside the image is dropped, the rest re-weighted
        neighbour = np.full(count, -1, np.int64)
        neighbour[inside] = index[ny[inside], nx[inside]]
        unknown = neighbour >= 0
        rows.append(np.flatnonzero(unknown))
        cols.append(neighbour[unknown])
        values.append(np.full(int(unknown.sum()), -weight))
        known = inside & ~unknown
        rhs[known] += weight * view[ny[known], nx[known]]
    everything = np.arange(count)
    matrix = sparse.csc_matrix((np.concatenate([diagonal] + values),
                                (np.concatenate([everything] + rows), np.concatenate([everything] + cols))),
                               shape=(count, count))
    return np.asarray(spsolve(matrix, rhs)).reshape(count, channels)
