"""Deep Feature Factorization: the concepts a model finds in a set of images.

Collins, Achanta and Süsstrunk 2018, "Deep Feature Factorization for Concept Discovery" (ECCV),
Sec. 3: a non-negative matrix factorisation of one layer's activations over many images at once,

    A ~= H C,   A (N h w, K) >= 0,   H (N h w, k) >= 0,   C (k, K) >= 0,

where the rows of A are every position of every image and its columns the layer's K channels.
The k rows of C are the concepts (directions in channel space the images share); the column of
H for a concept, read back as N (h, w) maps, is where each image shows it: its heatmaps. A
concept is named by what the layers above the target make of it: the upper graph run on a map
whose every position is the concept vector, its top classes through the model's head.

`factorize` is the one entry point. Memory stays bounded for a big folder: the NMF is fitted on
at most `max_images` images, evenly spaced through the list; every other image's heatmaps are
the non-negative least-squares fit of its activations by the fixed concepts. Images are read and
run batch by batch, so only the fitted sample's activations are held at once.

The choices a user comparing with pytorch-grad-cam (DeepFeatureFactorization, run_dff_on_image)
should know:

- layout: rows are positions, columns channels; pytorch-grad-cam factorises the transpose
  (channels x positions). The objective ||A - H C||^2 is the same, but sklearn's random start
  and its solver's order differ, so the numbers do too (and so may the concepts' order).
- the offset: a channel whose minimum over the fitted positions is negative is shifted up by it
  so the matrix is non-negative, and the shift is added back to the concept vectors, as
  pytorch-grad-cam does; pytorch-grad-cam subtracts every channel's minimum, a positive one too.
  After a ReLU nothing is shifted. Images outside the sample get the same shift, clipped at 0.
- the NMF: sklearn.decomposition.NMF(n_components=k, init="random", random_state=seed,
  max_iter=500), its default coordinate-descent solver (pytorch-grad-cam: random_state=0 and
  sklearn's default max_iter=200), on float64.
- the heatmaps of images outside the sample: NMF.transform with the concepts fixed, run to a
  tolerance of 1e-10: its coordinate descent then solves the convex non-negative least-squares
  problem min_h ||a - h C||^2, h >= 0, per position exactly (not sklearn's default 1e-4).
- the names: the probabilities of the model's own head (its softmax, sigmoid...) on the upper
  graph's output (a segmenter's: each class's mean share of the map it predicts); pytorch-grad-cam
  applies a classifier to the bare vectors and a softmax. An embedding model's concepts have no
  classes.
"""

import copy
import warnings
from dataclasses import dataclass, field

import numpy as np

from gradcam_cli.errors import GradcamError, ImageError, argument, one_line

NMF_MAX_ITER = 500
# NMF.transform's settings for the heatmaps of images outside the fitted sample: run to
# convergence, its coordinate descent is the exact non-negative least-squares solution.
NNLS_TOL = 1e-10
NNLS_MAX_ITER = 20000


class ConceptError(GradcamError):
    """Concepts that cannot be found as asked: k, the sample, the layer."""


class UnreadableSample(ConceptError):
    """None of the images sampled to fit the concepts on could be read (each was reported)."""


@dataclass
class Concepts:
    """What the factorisation found: k concept vectors and what they are named by."""

    vectors: np.ndarray  # (k, K) float64: the NMF's components plus the channels' shift
    top_classes: list  # per concept [(class index, label, probability)], most likely first; [] without classes
    names: list  # per concept "circle 0.97, square 0.02", or "concept 1" without classes
    layer: str  # the target layer's name
    shift: np.ndarray  # (K,) <= 0: what was subtracted from each channel before the NMF
    fitted: list  # the indices (in the input list) of the images the NMF was fitted on
    classes_note: str = None  # why the concepts have no classes (the graph cannot be cut at the layer)
    warnings: list = field(default_factory=list)  # the NMF's (it stopped before converging)
    solver: object = None  # the fitted sklearn NMF (transform gives other images' heatmaps)

    def __len__(self):
        return len(self.vectors)

    @property
    def part_norms(self):
        """(k,) the norm of each concept's NMF component (its vector less the shift): a heatmap
        value h at a position stands for h * part_norms[c] of the activations' length there, so
        these weigh the concepts' heatmaps into one unit (the NMF's own scale between H and C
        is arbitrary per concept)."""
        return np.linalg.norm(np.asarray(self.vectors, np.float64) - self.shift, axis=1)


@dataclass
class ImageConcepts:
    """One image's share of the concepts."""

    index: int  # its place in the input list
    heatmaps: np.ndarray  # (h, w, k) float32 >= 0 at the layer's resolution, as the NMF weighs them
    box: tuple  # (x0, y0, x1, y1): the part of the image the model's view covers (files.images.prepare)
    image_shape: tuple  # (H, W) of the image
    fitted: bool  # whether the NMF was fitted on it (else: the non-negative least-squares fit)


@dataclass
class Factorization:
    concepts: Concepts
    images: list  # ImageConcepts of every image read, in input order
    failed: list  # (index, reason) of every image that could not be read


_COUNTS = {"k": "the number of concepts", "max_images": "the number of images to fit on",
           "top_classes": "the number of classes to name a concept by"}


def check_arguments(k, max_images, top_classes):
    """ConceptError for a number of concepts, sample size or number of classes below 1."""
    for name, value in (("k", k), ("max_images", max_images), ("top_classes", top_classes)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConceptError(f"{_COUNTS[name]} must be a whole number of at least 1. Received: "
                               + argument(name, repr(value)))


def sample_indices(count, max_images):
    """At most `max_images` of `count` indices, evenly spaced from the first: (i count) // m."""
    size = min(int(count), int(max_images))
    return [int(i) for i in (np.arange(size) * int(count)) // max(size, 1)]


def factorize(explainer, images, k=5, max_images=64, top_classes=2, seed=0, max_iter=NMF_MAX_ITER, on_image=None,
              on_failure=None, progress=None, on_concepts=None):
    """Deep Feature Factorization of `images` at `explainer`'s layer (an api.Explainer; its
    engine's forward pass gives the activations, batch by batch: any method will do, eigencam
    needs no more). images: paths, or (H, W, 3) uint8 RGB arrays. k: the number of concepts.
    max_images: the most images the NMF is fitted on (evenly spaced through the list); the others'
    heatmaps are their non-negative least-squares fit by the concepts. top_classes: the classes
    each concept is named by. seed: the NMF's random start.

    Callbacks, in input order: on_concepts(concepts) once they are fitted, before any image's
    on_image; on_image(concepts, ImageConcepts, rgb) per image done,
    on_failure(index, reason) per image that cannot be read (it is skipped), progress(n) after
    each batch of n images read (the sample's, then every image's). Returns a Factorization.
    ConceptError when k does not fit the layer, no sampled image can be read or the activations
    are zero; LayerError for a layer that cannot be targeted."""
    check_arguments(k, max_images, top_classes)
    ready = explainer.build()
    if len(ready.engines) != 1:
        raise ConceptError("concepts are found at one layer: give one layer. Received: "
                           + argument("layer", repr(explainer.layer)))
    shape = next((info.map_shape for info in ready.loaded.layers if info.path == ready.engine.target_path), None)
    if shape is not None:
        _check_k(k, shape[-1], None, ready.layer)
    items = list(images)
    if not items:
        raise ConceptError("no images to find concepts in")
    failed = {}

    def failure(index, reason):
        failed[index] = reason
        if on_failure is not None:
            on_failure(index, reason)

    concepts, fitted_maps, boxes = _fit(explainer, items, k, max_images, top_classes, seed, max_iter, failure,
                                        progress)
    if on_concepts is not None:
        on_concepts(concepts)
    found = []
    for indices, rgbs in _read(items, range(len(items)), ready.engine.batch_size, failed, failure, progress,
                               explainer.read_image):
        others = [j for j, index in enumerate(indices) if index not in fitted_maps]
        activations, other_boxes = _activations(explainer, [rgbs[j] for j in others]) if others else (None, [])
        solved = dict(zip(others, _solve(concepts, activations))) if others else {}
        batch_boxes = dict(zip(others, other_boxes))
        for j, (index, rgb) in enumerate(zip(indices, rgbs)):
            fitted = index in fitted_maps
            heatmaps = fitted_maps.pop(index) if fitted else solved[j]
            box = boxes.pop(index) if fitted else batch_boxes[j]
            image = ImageConcepts(index, heatmaps.astype(np.float32), tuple(box), tuple(rgb.shape[:2]), fitted)
            found.append(image)
            if on_image is not None:
                on_image(concepts, image, rgb)
    return Factorization(concepts, found, sorted(failed.items()))


def _check_k(k, channels, positions, layer):
    if k > channels:
        raise ConceptError(f"layer {layer} has {channels} channel(s): it cannot hold more concepts than that. "
                           "Received: " + argument("k", str(k)))
    if positions is not None and positions < k:
        raise ConceptError(f"the fitted images give {positions} position(s) at layer {layer}, fewer than the concepts "
                           "asked for: give fewer concepts or more images. Received: " + argument("k", str(k)))


def _fit(explainer, items, k, max_images, top_classes, seed, max_iter, failure, progress):
    """The NMF fitted on the sample: (Concepts, {index: its heatmaps (h, w, k)}, {index: box})."""
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    ready = explainer.build()
    chosen = sample_indices(len(items), max_images)
    parts, kept, boxes = [], [], {}
    for indices, rgbs in _read(items, chosen, ready.engine.batch_size, {}, failure, progress, explainer.read_image):
        activations, batch_boxes = _activations(explainer, rgbs)
        parts.append(activations)
        kept += indices
        boxes.update(zip(indices, batch_boxes))
    if not parts:
        raise UnreadableSample(f"no image to fit the concepts on: the {len(chosen)} image(s) sampled could not be "
                               "read")
    activations = np.concatenate(parts)
    del parts
    _, height, width, channels = activations.shape
    _check_k(k, channels, activations.shape[0] * height * width, ready.layer)
    matrix = activations.reshape(-1, channels).astype(np.float64)
    del activations
    shift = np.minimum(matrix.min(axis=0), 0.0)  # a negative channel moved up to 0; after a ReLU none
    matrix -= shift
    if not matrix.max(initial=0.0) > 0.0:
        raise ConceptError(f"the activations of layer {ready.layer} are zero on every fitted image: there is "
                           "nothing to factorise")
    solver = NMF(n_components=k, init="random", random_state=seed, max_iter=max_iter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        weights = solver.fit_transform(matrix)
    notes = [f"the NMF stopped after {solver.n_iter_} iterations before converging (tolerance {solver.tol:g})"
             for warning in caught if issubclass(warning.category, ConvergenceWarning)][:1]
    vectors = solver.components_ + shift
    heatmaps = weights.reshape(len(kept), height, width, k)
    top, names, note = _named(ready, vectors, (height, width), top_classes)
    concepts = Concepts(vectors, top, names, ready.layer, shift, list(kept), note, notes, solver)
    return concepts, dict(zip(kept, heatmaps)), boxes


def _solve(concepts, activations):
    """The heatmaps (N, h, w, k) of activations (N, h, w, K) with the concepts fixed: per
    position, argmin_h ||a - shift - h C|| over h >= 0 (a - shift clipped at 0, as NMF takes it)."""
    count, height, width, channels = activations.shape
    rows = np.maximum(activations.reshape(-1, channels).astype(np.float64) - concepts.shift, 0.0)
    solver = copy.copy(concepts.solver)
    solver.set_params(tol=NNLS_TOL, max_iter=NNLS_MAX_ITER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # converged far enough to the exact solution, or said by the test
        weights = solver.transform(rows)
    return weights.reshape(count, height, width, -1)


def _named(ready, vectors, map_size, top_classes):
    """Each concept's top classes and name: the upper graph on a map of the vector at every
    position, through the model's head. Without an upper graph (ValueError: the graph cannot be
    cut at the layer), no classes, names "concept 1".. and the reason."""
    count, channels = vectors.shape
    maps = np.broadcast_to(vectors[:, None, None, :], (count,) + tuple(map_size) + (channels,)).astype(np.float32)
    if ready.loaded.output_kind not in ("classes", "map"):
        return [[] for _ in range(count)], [f"concept {i + 1}" for i in range(count)], \
            f"no classes: {ready.loaded.name}'s output ({ready.loaded.output_kind}) is not classes"
    try:
        raw = ready.engine.upper_raw_outputs(maps)
    except ValueError as error:
        names = [f"concept {i + 1}" for i in range(count)]
        return [[] for _ in range(count)], names, f"no classes: the layers above {ready.layer} cannot be run alone " \
                                                  f"({one_line(error, 200)})"
    head = getattr(ready.loaded.head, "base", ready.loaded.head)  # under a target: the model's own head
    probabilities = head.probabilities(raw)
    if probabilities.ndim > 2:  # a segmenter's map: each class's share of it
        probabilities = probabilities.reshape(len(probabilities), -1, probabilities.shape[-1]).mean(axis=1)
    top = []
    for row in probabilities:
        order = np.argsort(-row, kind="stable")[: min(top_classes, len(row))]
        top.append([(int(c), ready.loaded.label(int(c)), float(row[c])) for c in order])
    names = [", ".join(f"{label} {probability:.2f}" for _, label, probability in classes) for classes in top]
    return top, names, None


def _activations(explainer, rgbs):
    """The target layer's activations (n, h, w, K) of decoded images, in batches of the engine's
    batch size, NaN and infinities as 0; and each image's view box."""
    ready = explainer.build()
    size = ready.engine.batch_size
    parts, boxes = [], []
    for start in range(0, len(rgbs), size):
        inputs, batch_boxes = explainer.prepare(rgbs[start : start + size])
        result = ready.engine.run(inputs, np.full(len(inputs), -1), needs=("activations",))
        parts.append(np.nan_to_num(result.activations, nan=0.0, posinf=0.0, neginf=0.0))
        boxes += batch_boxes
    return np.concatenate(parts), boxes


def _read(items, indices, size, failed, failure, progress, read):
    """(indices, RGB images) of `items[indices]`, `size` readable ones at a time; an item that
    cannot be read is reported by failure(index, reason) and skipped (those in `failed` already
    are skipped without a word). progress(n) after each batch: the items it went through."""
    batch, rgbs, consumed = [], [], 0
    for index in indices:
        consumed += 1
        if index in failed:
            continue
        try:
            rgb = read(items[index], index)
        except ImageError as error:
            failure(index, str(error))
            continue
        batch.append(index)
        rgbs.append(rgb)
        if len(rgbs) == size:
            yield batch, rgbs
            if progress is not None:
                progress(consumed)
            batch, rgbs, consumed = [], [], 0
    if rgbs:
        yield batch, rgbs
    if progress is not None and consumed:
        progress(consumed)
