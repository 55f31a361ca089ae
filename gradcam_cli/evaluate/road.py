"""ROAD (Rong, Leemann, Borisov, Kasneci and Kasneci, "A Consistent and Efficient Evaluation
Strategy for Attribution Methods", ICML 2022): RemOve And Debias. The removed pixels are not
set to a constant, whose shape would tell the model where the map was (the paper's class
information leakage), but imputed by noisy linear imputation: each removed pixel i is the
weighted average of its in-image 8-neighbours N(i), removed or kept,

    (sum_{j in N(i)} w_ij) x_i - sum_{j in N(i), removed} w_ij x_j = sum_{j in N(i), kept} w_ij v_j
    w_ij = 1/6 for the 4 direct neighbours, 1/12 for the 4 diagonal ones (they sum to 1)

solved exactly for every removed pixel and colour, then x_i + sigma eps_i with eps ~ N(0, 1)
per pixel and colour. MoRF at p% removes the p% most relevant pixels, LeRF the p% least
relevant, p = 10, 20, ..., 90; a faithful map's MoRF probabilities fall fast and its LeRF ones
stay high. The summary's ROAD figure (pytorch-grad-cam's ROADCombined) is
(mean LeRF - mean MoRF) / 2.

This module is the imputation; faithfulness.py removes the pixels (road_views) and scores them.
Our choices, each named:

- ROAD's weights and noise: 1/6 and 1/12 (road_evaluation's and pytorch-grad-cam's
  `neighbors_weights`); pixels outside the image are dropped and the rest re-weighted (their
  weights subtracted from the diagonal, as both do). The noise is ROAD_NOISE = 0.01 of the pixel
  range, 2.55 on 0..255: road_evaluation's NoisyLinearImputer(noise=0.01) imputes ToTensor images
  in [0, 1] before normalising. pytorch-grad-cam applies 0.01 to the normalised tensor instead
  (about 0.58 on 0..255 for ImageNet's std). Imputed values are not clipped to 0..255 (neither
  reference clips).
- The solver: the references call scipy's spsolve; scipy is not a dependency here, so
  `linear_imputation` eliminates the system exactly (float64) as a block-tridiagonal one, one
  block per image row of the shorter side (block Cholesky / Thomas: S_r = D_r - B_{r-1}^T
  S_{r-1}^{-1} B_{r-1}, then back substitution). The matrix is symmetric positive definite
  whenever one pixel is kept (weakly diagonally dominant, and every 8-connected region of removed
  pixels touches a kept one), so every Schur complement S_r is too and each block solve is well
  posed. Each 8-connected region is solved in its own bounding box (regions under
  REGION_MIN_PIXELS together); cost O(long side x short side^3) a region. All pixels removed is
  refused.
"""

import cv2
import numpy as np

from gradcam_cli.errors import GradcamError, argument

ROAD_DIRECT_WEIGHT = 1.0 / 6.0
ROAD_DIAGONAL_WEIGHT = 1.0 / 12.0
# Regions of removed pixels this large are solved alone; smaller ones together (fewer calls).
REGION_MIN_PIXELS = 64
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
        # Each 8-connected region of removed pixels is its own system (no equation links two),
        # solved in its bounding box grown by one pixel (every neighbour that enters is inside):
        # regions of REGION_MIN_PIXELS or more alone, the smaller ones together in one pass.
        count, labels, stats, _ = cv2.connectedComponentsWithStats(removed.astype(np.uint8), connectivity=8)
        large = [label for label in range(1, count) if stats[label, cv2.CC_STAT_AREA] >= REGION_MIN_PIXELS]
        boxes = [(label, tuple(int(v) for v in stats[label, :4])) for label in large]
        small = removed & ~np.isin(labels, large)
        if small.any():
            ys, xs = np.nonzero(small)
            x0, y0 = int(xs.min()), int(ys.min())
            boxes.append((None, (x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1)))
        height, width = removed.shape
        for label, (x, y, w, h) in boxes:
            rows = slice(max(0, y - 1), min(height, y + h + 1))
            cols = slice(max(0, x - 1), min(width, x + w + 1))
            region = small[rows, cols] if label is None else labels[rows, cols] == label
            block = out[rows, cols]
            block[region] = _solve_region(view[rows, cols], region)[region]
    if noise:
        if rng is None:
            raise GradcamError(f"noisy imputation needs a random generator: give {argument('rng')}")
        out[removed] += float(noise) * rng.standard_normal(view.shape)[removed]
    return out.astype(np.float32)


def _solve_region(grid, removed):
    """The imputation of one region: blocks along the shorter side (cost long x short^3)."""
    if removed.shape[1] > removed.shape[0]:
        return _solve_imputation(grid.transpose(1, 0, 2), removed.T).transpose(1, 0, 2)
    return _solve_imputation(grid, removed)


def _solve_imputation(grid, removed):
    """The imputation's linear system on (H, W, C) `grid` (H >= W here), solved by block
    elimination row by row: row r's unknowns x_r satisfy B_{r-1}^T x_{r-1} + D_r x_r + B_r
    x_{r+1} = b_r. Returns the grid with the removed pixels solved (float64)."""
    height, width, channels = grid.shape
    kept = np.where(removed[..., None], 0.0, grid)
    padded_kept = np.pad(kept, ((1, 1), (1, 1), (0, 0)))
    padded_inside = np.pad(np.ones((height, width)), 1)
    rhs = np.zeros_like(grid)
    diagonal = np.zeros((height, width))
    for (dy, dx), weight in ROAD_NEIGHBOURS:
        rhs += weight * padded_kept[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
        diagonal += weight * padded_inside[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
    columns = [np.flatnonzero(removed[r]) for r in range(height)]
    position = np.full((height, width), -1, dtype=np.int64)
    for r, cols in enumerate(columns):
        position[r, cols] = np.arange(len(cols))

    def within_row(r):  # D_r
        cols = columns[r]
        block = np.diag(diagonal[r, cols])
        adjacent = np.flatnonzero(np.diff(cols) == 1)
        block[adjacent, adjacent + 1] = block[adjacent + 1, adjacent] = -ROAD_DIRECT_WEIGHT
        return block

    def to_next_row(r):  # B_r: row r's unknowns x row r+1's
        cols = columns[r]
        block = np.zeros((len(cols), len(columns[r + 1])))
        for dx, weight in ((-1, ROAD_DIAGONAL_WEIGHT), (0, ROAD_DIRECT_WEIGHT), (1, ROAD_DIAGONAL_WEIGHT)):
            target = cols + dx
            inside = (target >= 0) & (target < width)
            k = position[r + 1, target[inside]]
            found = k >= 0
            block[np.flatnonzero(inside)[found], k[found]] = -weight
        return block

    eliminated = []  # per row: (S_r^-1 B_r or None when x_r has no unknown below it, S_r^-1 y_r)
    previous = None  # (S_{r-1}^-1 B_{r-1}, S_{r-1}^-1 y_{r-1}, B_{r-1}) when row r-1 couples to row r
    for r in range(height):
        if len(columns[r]) == 0:
            eliminated.append(None)
            previous = None
            continue
        schur, y = within_row(r), rhs[r, columns[r]]
        if previous is not None:
            above, above_values, coupling = previous
            schur = schur - coupling.T @ above
            y = y - coupling.T @ above_values
        coupling = to_next_row(r) if r + 1 < height and len(columns[r + 1]) else None
        if coupling is None:
            eliminated.append((None, np.linalg.solve(schur, y)))
            previous = None
        else:
            solution = np.linalg.solve(schur, np.concatenate([coupling, y], axis=1))
            eliminated.append((solution[:, : coupling.shape[1]], solution[:, coupling.shape[1] :]))
            previous = eliminated[-1] + (coupling,)
    out = grid.copy()
    below = None  # x_{r+1}
    for r in range(height - 1, -1, -1):
        if eliminated[r] is None:
            below = None
            continue
        to_next, values = eliminated[r]
        below = values if to_next is None else values - to_next @ below
        out[r, columns[r]] = below
    return out
