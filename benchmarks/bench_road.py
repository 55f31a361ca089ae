"""ROAD's linear imputation: the hand-written block elimination road.py used before (kept here,
`block_elimination_imputation`) against SciPy's sparse direct solver, which road.py now calls
(road.linear_imputation: scipy.sparse.linalg.spsolve, as the ROAD authors' code and
pytorch-grad-cam call it) on the same systems. Prints the median seconds per view and the per-round ratios; the
variants are interleaved round by round (timings here drift within minutes).

    python benchmarks/bench_road.py [--size 224] [--rounds 5]
"""

import argparse
import time

import cv2
import numpy as np

from gradcam_cli.evaluate.road import ROAD_DIAGONAL_WEIGHT, ROAD_DIRECT_WEIGHT, ROAD_NEIGHBOURS, linear_imputation

REGION_MIN_PIXELS = 64


def block_elimination_imputation(view, removed):
    """The linear imputation (no noise) of an (H, W, C) view by the block elimination
    evaluate/road.py used before SciPy: each 8-connected region of `removed` pixels solved in its
    bounding box, row block by row block. Inputs are the benchmark's own, valid; (H, W, C) float32."""
    view = np.asarray(view, dtype=np.float64)
    out = view.copy()
    if removed.any():
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    view = rng.uniform(0, 255, (args.size, args.size, 3))
    # a smooth map, as class activation maps are: its top p% are a few large regions
    heat = cv2.resize(rng.uniform(size=(7, 7)), (args.size, args.size), interpolation=cv2.INTER_CUBIC)
    order = np.argsort(-heat.ravel())
    masks = {}
    for percent in (10, 30, 50, 70, 90):
        removed = np.zeros(args.size * args.size, bool)
        removed[order[: args.size * args.size * percent // 100]] = True
        masks[percent] = removed.reshape(args.size, args.size)
    for percent, removed in masks.items():  # the same answer first
        difference = np.abs(block_elimination_imputation(view, removed) - linear_imputation(view, removed)).max()
        print(f"{percent}% removed: largest difference {difference:.2e}")
    times = {"block elimination": [], "scipy spsolve": []}
    for _ in range(args.rounds):
        for name, function in (("block elimination", block_elimination_imputation),
                               ("scipy spsolve", linear_imputation)):
            start = time.perf_counter()
            for removed in masks.values():
                function(view, removed)
            times[name].append((time.perf_counter() - start) / len(masks))
    ratios = [s / b for b, s in zip(times["block elimination"], times["scipy spsolve"])]
    for name, values in times.items():
        print(f"{name}: median {np.median(values) * 1000:.1f} ms per view ({args.size}x{args.size}, 10-90% removed)")
    print(f"spsolve / block elimination: median {np.median(ratios):.2f} (per round "
          f"{', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
