"""Faithfulness: does the model's output depend on the pixels a map calls important? Deletion
and insertion (RISE), Average Drop and Increase in Confidence (Grad-CAM++) and ROAD (its imputation:
road.py), each beside a uniform- and a random-map baseline. Everything takes plain arrays and one
callable, so the command line, the API and Ray workers share it: views (B, H, W, 3) RGB 0..255 as
the model sees them before preprocessing, maps (B, h, w) at any resolution, classes (B,), and
probabilities, RGB views (N, H, W, 3) -> (N, C). Figures perturb the view, never the preprocessed input.

Volumes take the same code path, voxel for pixel: views (B, D1, D2, D3, C) float32 as the model takes
them (a volume's view is its input: nothing is preprocessed), maps (B, d1, d2, d3), resized to the view
trilinearly (maps.resize_volume); the removal order runs over all D1 D2 D3 voxels (each voxel's
channels together, as a pixel's colours), steps of floor(k N / S) voxels, the same trapezoid AUC;
'mean' is each channel's mean over the volume, 'blur' a 3-D Gaussian (blurred). Nothing flattens an
axis: a map of another dimension than its view is refused. ROAD's imputation is 2-D (refused).

Equations, references and every choice (pixel order and ties, baselines, blur, ROAD's sets and
noise, cost): docs/evaluation.md#faithfulness-faithfulnesspy.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import cv2
import numpy as np
import numpy.typing as npt

from gradcam_cli.errors import GradcamError, argument
from gradcam_cli.evaluate.road import linear_imputation
from gradcam_cli.explain.maps import normalise, resize_into_box, resize_volume

BASELINES = ("zero", "blur", "mean")
DEFAULT_STEPS = 20
# RISE's substrate blur, gkern(klen=11, nsig=5), at 224 x 224: scaled with the longer side.
BLUR_SIGMA_AT_224 = 5.0
BLUR_KERNEL_AT_224 = 11
ROAD_PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
# road_evaluation's NoisyLinearImputer(noise=0.01) on [0, 1] images, on the 0..255 scale.
ROAD_NOISE = 0.01 * 255.0
# The most bytes of perturbed views sent to one scoring call (whole curves of whole images).
SCORING_BUDGET_BYTES = 256 * 2**20

Baseline: TypeAlias = Literal["zero", "blur", "mean"]  # BASELINES
# What the figures score with: RGB views (N, H, W, 3) 0..255 -> (N, C) class probabilities.
Scorer: TypeAlias = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.floating[Any]]]
Maps: TypeAlias = Sequence[npt.ArrayLike] | npt.NDArray[np.floating[Any]]  # (h, w) each, one per view


# -- maps, orders, baselines ---------------------------------------------------------------------


def uniform_map(shape: Sequence[int], axes: int = 2) -> npt.NDArray[np.float32]:
    """A map with one value everywhere, (H, W) float32 ones (axes 3: a volume's (D1, D2, D3)):
    every pixel tied, so its order is raster order (what that means for each figure:
    docs/evaluation.md#faithfulness-choices)."""
    return np.ones(tuple(shape)[:axes], dtype=np.float32)


def random_map(shape: Sequence[int], seed: int = 0, axes: int = 2) -> npt.NDArray[np.float32]:
    """A map of independent uniform [0, 1) values, (H, W) float32 (axes 3: (D1, D2, D3)), from
    numpy's default_rng(seed): a random pixel order (no ties, almost surely)."""
    return np.random.default_rng(seed).random(tuple(shape)[:axes]).astype(np.float32)


def view_maps(maps, size):
    """(B, h, w) maps -> (B, H, W) float32 at `size` (H, W), values kept (not normalised):
    bilinear when enlarging, pixel-area averaging when shrinking (maps.resize_into_box);
    NaN and inf count as 0. A volume's: (B, d1, d2, d3) -> (B, D1, D2, D3) at `size` (D1, D2,
    D3), trilinear (maps.resize_volume). GradcamError for a map of other dimensions."""
    size = tuple(int(n) for n in size)
    out = []
    for single in maps:
        single = np.nan_to_num(np.asarray(single, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if single.ndim != len(size):
            raise GradcamError(f"a map is {'2-D (h, w)' if len(size) == 2 else '3-D (d1, d2, d3) for a volume'}. "
                               f"Received: shape {single.shape}")
        if single.shape != size:
            single = (resize_into_box(single, (0, 0, size[1], size[0]), size) if len(size) == 2
                      else resize_volume(single, size).astype(np.float32))
        out.append(single)
    return np.stack(out) if out else np.zeros((0,) + size, np.float32)


def removal_order(single_map):
    """The flat pixel indices of an (H, W) map, largest value first; ties in raster order (a
    stable sort of the negated values). (H W,) int64."""
    values = np.asarray(single_map, dtype=np.float64).ravel()
    return np.argsort(-values, kind="stable").astype(np.int64)


def _ranks(single_map):
    """(H, W) int64: each pixel's position in removal_order (0 = the most relevant)."""
    order = removal_order(single_map)
    ranks = np.empty(order.size, dtype=np.int64)
    ranks[order] = np.arange(order.size)
    return ranks.reshape(np.shape(single_map))


def blurred(view):
    """blurred_image for an (H, W, 3) view, blurred_volume for a (D1, D2, D3, C) one."""
    view = np.asarray(view, dtype=np.float32)
    return blurred_volume(view) if view.ndim == 4 else blurred_image(view)


def blurred_volume(view):
    """A volume's substrate: blurred_image's Gaussian in 3-D, separable (the same sigma and odd
    kernel, from the longest side, on each spatial axis), borders reflected without repeating
    the edge voxel (BORDER_REFLECT_101, numpy's 'reflect'). float32."""
    side = max(view.shape[:3])
    sigma = BLUR_SIGMA_AT_224 * side / 224.0
    half = int(round((BLUR_KERNEL_AT_224 // 2) * side / 224.0))
    if half == 0:
        return view.copy()
    taps = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = view.astype(np.float64)
    for axis in range(3):
        padding = [(0, 0)] * out.ndim
        padding[axis] = (half, half)
        padded = np.pad(out, padding, mode="reflect")
        index = np.arange(out.shape[axis])
        out = sum(w * np.take(padded, index + half + k, axis=axis) for k, w in zip(range(-half, half + 1), taps))
    return out.astype(np.float32)


def blurred_image(view):
    """RISE's blurred substrate of an (H, W, 3) view: cv2.GaussianBlur with sigma
    BLUR_SIGMA_AT_224 and a BLUR_KERNEL_AT_224 kernel at 224 pixels, scaled with the longer side
    (kernel odd; 1, no blur, below about 22 pixels), reflected borders. float32."""
    view = np.asarray(view, dtype=np.float32)
    side = max(view.shape[:2])
    sigma = BLUR_SIGMA_AT_224 * side / 224.0
    kernel = 2 * int(round((BLUR_KERNEL_AT_224 // 2) * side / 224.0)) + 1
    if kernel == 1:
        return view.copy()
    return cv2.GaussianBlur(view, (kernel, kernel), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)


def substrate(view, baseline):
    """What removed pixels become under `baseline` (BASELINES): 'zero' black, 'blur' the
    blurred view, 'mean' the view's mean colour. (H, W, 3) float32."""
    view = np.asarray(view, dtype=np.float32)
    if baseline == "zero":
        return np.zeros_like(view)
    if baseline == "blur":
        return blurred(view)
    if baseline == "mean":  # each channel's mean over the view's spatial axes
        spatial = tuple(range(view.ndim - 1))
        return np.broadcast_to(view.mean(axis=spatial, dtype=np.float64).astype(np.float32), view.shape).copy()
    raise GradcamError(f"unknown baseline {baseline!r}; choose from {', '.join(BASELINES)}")


def step_fractions(pixels, steps=DEFAULT_STEPS):
    """(counts n_k = floor(k N / S), fractions n_k / N) for k = 0..S: (S + 1,) each."""
    steps = _whole(steps, "steps")
    counts = (np.arange(steps + 1, dtype=np.int64) * int(pixels)) // steps
    return counts, counts / float(pixels)


def area_under_curve(curve, fractions=None):
    """The trapezoid rule: sum_k (x_{k+1} - x_k) (y_k + y_{k+1}) / 2 over the last axis of
    `curve`, with x = `fractions` (default: equal steps on [0, 1])."""
    curve = np.asarray(curve, dtype=np.float64)
    if fractions is None:
        fractions = np.linspace(0.0, 1.0, curve.shape[-1])
    fractions = np.asarray(fractions, dtype=np.float64)
    return np.sum(np.diff(fractions) * (curve[..., 1:] + curve[..., :-1]) / 2.0, axis=-1)


def _whole(value, name, low=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise GradcamError(f"{argument(name)} must be a whole number, {low} or more. Received: {value!r}")
    return int(value)


def _checked(views: npt.ArrayLike, maps: Maps, classes: npt.ArrayLike
             ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    views = np.asarray(views, dtype=np.float32)
    if not (views.ndim == 4 and views.shape[-1] == 3 or views.ndim == 5):
        raise GradcamError(f"views are (B, H, W, 3) RGB arrays or volumes (B, D1, D2, D3, C). Received: shape "
                           f"{views.shape}")
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if len(maps) != len(views) or len(classes) != len(views):
        raise GradcamError(f"one map and one class per view: {len(views)} views, {len(maps)} maps, "
                           f"{len(classes)} classes")
    return views, view_maps(maps, views.shape[1:-1]), classes


# -- scoring -------------------------------------------------------------------------------------


def _scored(probabilities, rows_of, classes, per_image, row_bytes, budget_bytes):
    """f_c of every image's `per_image` rows (rows_of(i) -> (per_image, H, W, 3)): whole images'
    rows go together to `probabilities`, as many per call as `budget_bytes` holds (at least
    one image). Returns (B, per_image) float64."""
    count = len(classes)
    out = np.zeros((count, per_image), dtype=np.float64)
    per_call = max(1, int(budget_bytes) // max(1, per_image * int(row_bytes)))
    for start in range(0, count, per_call):
        part = range(start, min(count, start + per_call))
        rows = np.concatenate([rows_of(i) for i in part])
        scored = np.asarray(probabilities(rows), dtype=np.float64)
        if scored.ndim != 2 or len(scored) != len(rows):
            raise GradcamError(f"probabilities must return (N, classes) for N views. Received: shape "
                               f"{scored.shape} for {len(rows)} views")
        scored = scored.reshape(len(part), per_image, scored.shape[1])
        wanted = classes[start : start + len(part)]
        if (wanted < 0).any() or (wanted >= scored.shape[2]).any():
            raise GradcamError(f"classes must be below {scored.shape[2]}. Received: {wanted.tolist()}")
        out[start : start + len(part)] = scored[np.arange(len(part)), :, wanted]
    return out


def _curve_rows(start, finish, ranks, counts):
    """(S + 1, H, W, 3): row k is `start` with the pixels of rank < counts[k] from `finish` (a
    volume's (S + 1, D1, D2, D3, C): its voxels)."""
    changed = ranks[None] < counts.reshape((-1,) + (1,) * ranks.ndim)
    return np.where(changed[..., None], finish[None], start[None]).astype(np.float32)


# -- deletion and insertion ----------------------------------------------------------------------


@dataclass
class Curves:
    """Class probabilities along a perturbation: y (B, S + 1) at x = fractions (S + 1,)."""

    fractions: npt.NDArray[np.float64]
    probabilities: npt.NDArray[np.float64]

    @property
    def auc(self) -> npt.NDArray[np.float64]:
        """(B,) the area under each curve (trapezoid rule on x in [0, 1])."""
        return area_under_curve(self.probabilities, self.fractions)


def deletion_curves(views: npt.ArrayLike, maps: Maps, classes: npt.ArrayLike,
                    probabilities: Scorer, steps: int = DEFAULT_STEPS, baseline: Baseline = "zero",
                    budget_bytes: int = SCORING_BUDGET_BYTES) -> Curves:
    """RISE's deletion: f_c of each view with its map's top n_k pixels set to `baseline`
    (BASELINES), k = 0..steps. All steps of the batch go to `probabilities` in one call (or one
    per SCORING_BUDGET_BYTES of views). Returns Curves."""
    return _curves(views, maps, classes, probabilities, steps, baseline, deletion=True, budget_bytes=budget_bytes)


def insertion_curves(views: npt.ArrayLike, maps: Maps, classes: npt.ArrayLike,
                     probabilities: Scorer, steps: int = DEFAULT_STEPS, start: Baseline = "blur",
                     budget_bytes: int = SCORING_BUDGET_BYTES) -> Curves:
    """RISE's insertion: f_c of the `start` substrate (default: the blurred view, RISE's) with
    each map's top n_k pixels put back from the view, k = 0..steps. Scored as deletion_curves.
    Returns Curves."""
    return _curves(views, maps, classes, probabilities, steps, start, deletion=False, budget_bytes=budget_bytes)


def _curves(views, maps, classes, probabilities, steps, baseline, deletion, budget_bytes):
    views, resized, classes = _checked(views, maps, classes)
    if baseline not in BASELINES:
        raise GradcamError(f"unknown baseline {baseline!r}; choose from {', '.join(BASELINES)}")
    steps = _whole(steps, "steps")
    counts, fractions = step_fractions(int(np.prod(views.shape[1:-1])), steps)  # pixels, or a volume's voxels

    def rows_of(i):
        other = substrate(views[i], baseline)
        start, finish = (views[i], other) if deletion else (other, views[i])
        return _curve_rows(start, finish, _ranks(resized[i]), counts)

    scored = _scored(probabilities, rows_of, classes, steps + 1, views[0].nbytes if len(views) else 0, budget_bytes)
    return Curves(fractions, scored)


# -- Average Drop and Increase in Confidence ------------------------------------------------------


def masked_views(views, maps):
    """X o E: each view times its map at the view's resolution, normalised to [0, 1] (negative
    values 0, divided by the maximum: maps.normalise). (B, H, W, 3) float32."""
    views = np.asarray(views, dtype=np.float32)
    resized = view_maps(maps, views.shape[1:-1])
    masks = np.stack([normalise(np.maximum(single, 0.0))[0] for single in resized]) if len(resized) else resized
    return views * masks[..., None]


def confidence_change(views: npt.ArrayLike, maps: Maps, classes: npt.ArrayLike, probabilities: Scorer,
                      original: npt.ArrayLike | None = None, budget_bytes: int = SCORING_BUDGET_BYTES
                      ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(Y, O), (B,) each: f_c of each view and of the view times its normalised map
    (masked_views), from one call (or one per SCORING_BUDGET_BYTES). `original`: Y already
    known (only the masked views are scored then)."""
    views, _, classes = _checked(views, maps, classes)
    masked = masked_views(views, maps)
    row_bytes = views[0].nbytes if len(views) else 0
    if original is not None:
        observed = _scored(probabilities, lambda i: masked[i : i + 1], classes, 1, row_bytes, budget_bytes)[:, 0]
        return np.asarray(original, dtype=np.float64).reshape(-1), observed
    both = _scored(probabilities, lambda i: np.stack([views[i], masked[i]]), classes, 2, row_bytes, budget_bytes)
    return both[:, 0], both[:, 1]


def drops(original, observed):
    """max(0, Y - O) / Y per image, a fraction in [0, 1]; 0 where Y <= 0."""
    original = np.asarray(original, dtype=np.float64)
    observed = np.asarray(observed, dtype=np.float64)
    safe = np.where(original > 0, original, 1.0)
    return np.where(original > 0, np.maximum(0.0, original - observed) / safe, 0.0)


def average_drop_percent(original: npt.ArrayLike, observed: npt.ArrayLike) -> float | None:
    """Grad-CAM++'s Average Drop %: 100 / B sum_i max(0, Y_i - O_i) / Y_i."""
    return float(100.0 * np.mean(drops(original, observed))) if len(np.atleast_1d(original)) else None


def increase_in_confidence_percent(original: npt.ArrayLike, observed: npt.ArrayLike) -> float | None:
    """Grad-CAM++'s Increase in Confidence %: 100 / B sum_i 1[O_i > Y_i]."""
    original, observed = np.atleast_1d(original), np.atleast_1d(observed)
    return float(100.0 * np.mean(np.asarray(observed) > np.asarray(original))) if len(original) else None


# -- ROAD (the imputation: road.py) -------------------------------------------------------------


def _road_rng(seed, view, percentage, morf):
    """The noise generator of one view, percentage and order: default_rng([seed, crc32(view's
    float32 bytes), percentage, 1 for MoRF / 0 for LeRF])."""
    digest = zlib.crc32(np.ascontiguousarray(view, dtype=np.float32).tobytes())
    return np.random.default_rng([int(seed), digest, int(percentage), int(bool(morf))])


def road_views(view, single_map, percentages=ROAD_PERCENTAGES, noise=ROAD_NOISE, seed=0):
    """The imputed views of one view and its (H, W) map: (2 P, H, W, 3) float32, MoRF at each
    percentage then LeRF at each (MoRF removes the first floor(p N / 100) pixels of
    removal_order, LeRF the last as many)."""
    view = np.asarray(view, dtype=np.float32)
    ranks = _ranks(single_map)
    pixels = ranks.size
    rows = []
    for morf in (True, False):
        for percentage in percentages:
            count = pixels * int(percentage) // 100
            removed = ranks < count if morf else ranks >= pixels - count
            rows.append(linear_imputation(view, removed, noise, _road_rng(seed, view, percentage, morf)))
    return np.stack(rows)


def road_curves(views: npt.ArrayLike, maps: Maps, classes: npt.ArrayLike, probabilities: Scorer,
                percentages: Iterable[int] = ROAD_PERCENTAGES, noise: float = ROAD_NOISE, seed: int = 0,
                budget_bytes: int = SCORING_BUDGET_BYTES) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """ROAD: f_c after noisy linear imputation of the p% most (MoRF) and least (LeRF) relevant
    pixels, p in `percentages`. All imputed views of the batch go to `probabilities` in one call
    (or one per SCORING_BUDGET_BYTES). Returns (MoRF (B, P), LeRF (B, P))."""
    views, resized, classes = _checked(views, maps, classes)
    if views.ndim == 5:
        raise GradcamError("ROAD's imputation is of images (each pixel from its 2-D neighbours): it does not apply "
                           "to volumes")
    percentages = tuple(int(p) for p in percentages)
    if not percentages or any(p < 0 or p >= 100 for p in percentages):
        raise GradcamError(f"ROAD percentages are from 0 to 99. Received: {percentages}")
    _whole(seed, "seed", low=0)
    rows_of = lambda i: road_views(views[i], resized[i], percentages, noise, seed)
    scored = _scored(probabilities, rows_of, classes, 2 * len(percentages), views[0].nbytes if len(views) else 0,
                     budget_bytes)
    return scored[:, : len(percentages)], scored[:, len(percentages) :]


# -- results -------------------------------------------------------------------------------------


@dataclass
class Faithfulness:
    """One image's figures for one map."""

    method: str
    class_index: int
    probability: float  # Y: f_c of the unperturbed view
    fractions: npt.NDArray[np.float64]  # (S + 1,) x of the deletion and insertion curves
    deletion_curve: npt.NDArray[np.float64]  # (S + 1,) f_c, pixels removed to `baseline`
    insertion_curve: npt.NDArray[np.float64]  # (S + 1,) f_c, pixels put back onto `insertion_start`
    deletion_auc: float
    insertion_auc: float
    masked_probability: float  # O: f_c of the view times the normalised map
    drop: float  # max(0, Y - O) / Y, a fraction
    increase: bool  # O > Y
    baseline: str = "zero"
    insertion_start: str = "blur"
    road_percentages: tuple[int, ...] = ROAD_PERCENTAGES
    road_morf: npt.NDArray[np.float64] | None = None  # (P,) f_c after removing the p% most relevant pixels
    road_lerf: npt.NDArray[np.float64] | None = None  # (P,) ... the p% least relevant

    def as_record(self) -> dict[str, Any]:
        """The figures as JSON-ready values."""
        record = {
            "method": self.method, "class": self.class_index, "probability": float(self.probability),
            "baseline": self.baseline, "insertion_start": self.insertion_start,
            "fractions": [float(x) for x in self.fractions],
            "deletion_curve": [float(y) for y in self.deletion_curve],
            "insertion_curve": [float(y) for y in self.insertion_curve],
            "deletion_auc": float(self.deletion_auc), "insertion_auc": float(self.insertion_auc),
            "masked_probability": float(self.masked_probability), "drop": float(self.drop),
            "increase": bool(self.increase),
        }
        if self.road_morf is not None and self.road_lerf is not None:
            record.update(road_percentages=list(self.road_percentages),
                          road_morf=[float(y) for y in self.road_morf], road_lerf=[float(y) for y in self.road_lerf])
        return record


def evaluate(views: npt.ArrayLike, maps: Maps, classes: npt.ArrayLike, probabilities: Scorer,
             method: str = "map", steps: int = DEFAULT_STEPS, baseline: Baseline = "zero",
             insertion_start: Baseline = "blur", road: bool = True, road_percentages: Iterable[int] = ROAD_PERCENTAGES,
             road_noise: float = ROAD_NOISE, seed: int = 0, budget_bytes: int = SCORING_BUDGET_BYTES
             ) -> list[Faithfulness]:
    """Every figure for a batch of views and their maps: [Faithfulness] in input order, named
    `method`. Scoring calls per batch (within SCORING_BUDGET_BYTES): deletion 1, insertion 1,
    Average Drop 1 (Y is the deletion curve's first point, the unperturbed view), ROAD 1
    (`road` False skips it)."""
    views, resized, classes = _checked(views, maps, classes)
    deleted = deletion_curves(views, resized, classes, probabilities, steps, baseline, budget_bytes)
    inserted = insertion_curves(views, resized, classes, probabilities, steps, insertion_start, budget_bytes)
    original = deleted.probabilities[:, 0]
    _, observed = confidence_change(views, resized, classes, probabilities, original, budget_bytes)
    morf: Sequence[npt.NDArray[np.float64] | None] | npt.NDArray[np.float64] = [None] * len(views)
    lerf = morf
    if road:
        morf, lerf = road_curves(views, resized, classes, probabilities, road_percentages, road_noise, seed,
                                 budget_bytes)
    deletion_auc, insertion_auc, dropped = deleted.auc, inserted.auc, drops(original, observed)
    return [
        Faithfulness(method=method, class_index=int(classes[i]), probability=float(original[i]),
                     fractions=deleted.fractions, deletion_curve=deleted.probabilities[i],
                     insertion_curve=inserted.probabilities[i], deletion_auc=float(deletion_auc[i]),
                     insertion_auc=float(insertion_auc[i]), masked_probability=float(observed[i]),
                     drop=float(dropped[i]), increase=bool(observed[i] > original[i]), baseline=baseline,
                     insertion_start=insertion_start, road_percentages=tuple(road_percentages),
                     road_morf=morf[i], road_lerf=lerf[i])
        for i in range(len(views))
    ]


def summary(results: Iterable[Faithfulness]) -> dict[str, dict[str, Any]]:
    """Figures averaged over images, per method in first-seen order: {method: {images,
    deletion_auc, insertion_auc, deletion_curve, insertion_curve, fractions,
    average_drop_percent, increase_in_confidence_percent, and with ROAD road_percentages,
    road_morf, road_lerf (mean curves), road_morf_mean, road_lerf_mean, road_combined =
    (road_lerf_mean - road_morf_mean) / 2}}. Curves are averaged only over images with the same
    x (the same steps and view size)."""
    grouped: dict[str, list[Faithfulness]] = {}
    for result in results:
        grouped.setdefault(result.method, []).append(result)
    out = {}
    for method, group in grouped.items():
        original = [r.probability for r in group]
        observed = [r.masked_probability for r in group]
        figures = {
            "images": len(group),
            "baseline": group[0].baseline,
            "insertion_start": group[0].insertion_start,
            "deletion_auc": float(np.mean([r.deletion_auc for r in group])),
            "insertion_auc": float(np.mean([r.insertion_auc for r in group])),
            "average_drop_percent": average_drop_percent(original, observed),
            "increase_in_confidence_percent": increase_in_confidence_percent(original, observed),
        }
        if all(np.array_equal(r.fractions, group[0].fractions) for r in group):
            figures.update(fractions=[float(x) for x in group[0].fractions],
                           deletion_curve=np.mean([r.deletion_curve for r in group], axis=0).tolist(),
                           insertion_curve=np.mean([r.insertion_curve for r in group], axis=0).tolist())
        with_road = [r for r in group if r.road_morf is not None]
        if with_road and all(r.road_percentages == with_road[0].road_percentages for r in with_road):
            morf = np.mean([r.road_morf for r in with_road if r.road_morf is not None], axis=0)
            lerf = np.mean([r.road_lerf for r in with_road if r.road_lerf is not None], axis=0)
            figures.update(road_percentages=list(with_road[0].road_percentages), road_morf=morf.tolist(),
                           road_lerf=lerf.tolist(), road_morf_mean=float(morf.mean()),
                           road_lerf_mean=float(lerf.mean()),
                           road_combined=float((lerf.mean() - morf.mean()) / 2.0))
        out[method] = figures
    return out
