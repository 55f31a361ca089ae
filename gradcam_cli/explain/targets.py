"""What a map explains: a target turns the model's outputs for one image into one score.

The kinds (`--target SPEC` on the command line; `Explainer(target=...)` in the API):

    class:N|NAME            a class's score: the model's own head (models/heads.py: the logit, the
                            sigmoid sign rule, the softmax found anywhere in the head).
    segment:CLASS[:MASK]    for outputs (h, w, classes), or a 3-D segmenter's (d1, d2, d3, classes):
                            the sum of CLASS's logits over a mask (pytorch-grad-cam's
                            SemanticSegmentationTarget), over every spatial axis. MASK is, for a
                            2-D output, an image file of any size read by files.images.read_mask's
                            rule (alpha where there is alpha, else non-zero labels); for a 3-D
                            output a label map (.nii, .nii.gz, .npy; files.references.read_label_map:
                            the voxels whose label is non-zero, the same rule). It is resized to
                            the output's grid by box overlap (target_inputs.mask_on_grid: a cell
                            is inside when at least half of it is). Without MASK, the cells the
                            model predicts as CLASS (its argmax; a sigmoid output: logit > 0).
    similar:REF             the cosine similarity of the output vector to REF's: an image run
                            through the same model and preprocessing, or a .npy vector (checked
                            from its header; finite, not zero everywhere: target_inputs.py).
    dissimilar:REF          1 - that similarity.
    output:INDEX[:decrease] one output unit's value (negated with `decrease`): a regressor's.
    box:X0,Y0,X1,Y1[:CLASS] a detector's (outputs: decoded boxes (N, 4), x0 y0 x1 y1 in the
                            model's input pixels, and class scores (N, C)): pytorch-grad-cam's
                            FasterRCNNBoxScoreTarget. The box is given in pixels of the original
                            image and carried onto each image's view. Among the predicted boxes
                            whose top class is CLASS (any, without CLASS) the one of highest IoU
                            with it is matched; its score is IoU + its CLASS score (its top score),
                            and 0 when that IoU is below 0.5. The match is found inside the
                            compiled step: the gradient flows through the matched box's IoU and
                            score, as pytorch-grad-cam's does.
    a callable              (API) outputs (B, ...) -> (B,) scores, written in keras.ops.

Every target is read as a *table*: `TargetHead.scores(raw)` gives (B, T) scores from the
model's pre-activation outputs (what the engine's forward pass returns), one column per thing
the target can explain (a segmenter's classes, a regressor's units; one column for a
similarity or a callable), and each image's column is chosen by its target code exactly as a
class is. A TargetHead stands in for the model's Head (`targeted`), so the engine, every
method (gradient or gradient-free), faithfulness and scoring read a target as they read class
scores, through one code path.

A choice left open: pytorch-grad-cam fixes a predicted mask once, from the image explained. Here
the predicted mask is taken on the input being scored, inside the compiled step (with no
gradient through the argmax): the same gradients, while gradient-free methods and faithfulness
curves score changed inputs on what the model predicts for them. A mask file fixes the region.
"""

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from keras import ops

from gradcam_cli.errors import ClassError, GradcamError, argument
from gradcam_cli.explain.target_spec import KINDS, SPELLING, Target, TargetError, parse  # noqa: F401 (public here)

# Which kinds fit which output (LoadedModel.output_kind).
FITTING = {"classes": ("class", "output", "similar", "dissimilar"),
           "embedding": ("similar", "dissimilar", "output", "class"),
           "map": ("segment",), "detections": ("box",)}
# A box is matched when its IoU with the given box reaches this (pytorch-grad-cam's iou_threshold).
BOX_IOU = 0.5


def fitting(output_kind):
    """The target kinds that fit a model's output kind, spelled as `--target` takes them."""
    return ", ".join(SPELLING[kind] for kind in FITTING[output_kind])


def check_fits(target, loaded, explicit=True):
    """TargetError in one line when `target` does not fit `loaded`'s output (LoadedModel.output_kind).
    A class target that was not asked for (`explicit` False) is refused for an embedding model."""
    kind = loaded.output_kind
    shape = tuple(loaded.output.shape)
    if target.kind == "callable":
        return
    if kind == "embedding" and target.kind == "class" and not explicit:
        raise TargetError(f"{loaded.name}: this looks like an embedding model (its last layer normalises a vector "
                          f"{shape}): use --target similar:REF (or --target class:N to read its output as classes)")
    if target.kind not in FITTING[kind]:
        what = {"classes": "(batch, units)", "embedding": "an embedding (batch, units)",
                "map": "a map (batch, " + ("d1, d2, d3" if len(shape) == 5 else "height, width") + ", classes)",
                "detections": "a detector's boxes and class scores"}[kind]
        raise TargetError(f"{loaded.name}: {target.kind} targets do not fit its output {shape}, {what}: "
                          f"use --target {fitting(kind)}")


@dataclass(frozen=True, eq=False)
class TargetHead:
    """A target read as a table (see the module's docstring): in place of a LoadedModel's Head.
    `base` is the model's own Head (how a segmenter's per-pixel class scores are read);
    `table(raw, base)` the keras.ops rule; `num_classes` the table's columns."""

    target: Target
    base: object
    num_classes: int
    table: object
    kind: str = "target"
    per_image: object = None  # (raw numpy, codes) -> [dict] what each image's record says of its target
    source: object = None  # the LoadedModel this head was put on (binding again starts from it)

    def details(self, raw, codes):
        """Per image, what its record says of the target (None: nothing); a "target_refusal"
        entry is the one line its image fails with (nothing predicted as the class, no box
        matched)."""
        return None if self.per_image is None else self.per_image(np.asarray(raw, np.float32), np.asarray(codes))

    def scores(self, raw):
        """(B, T) target scores from the pre-activation outputs, in keras.ops."""
        return self.table(raw, self.base)

    def probabilities(self, raw):
        """(B, T) numpy: a target has no probability; its value stands in for one (faithfulness
        curves and Score-CAM then score the target itself)."""
        return np.asarray(ops.convert_to_numpy(self.scores(raw)), dtype=np.float64)


def _segment_table(mask):
    def table(raw, base):
        scores = base.scores(raw)  # (B, h, w, C) per-pixel class scores (a binary output's two)
        spatial = tuple(range(1, len(scores.shape) - 1))  # (1, 2) for a 2-D map, (1, 2, 3) for a volume's
        if mask is not None:
            inside = ops.convert_to_tensor(mask[None, ..., None], dtype=scores.dtype)
        elif base.kind == "sigmoid":  # independent classes: a pixel is predicted as each whose logit is > 0
            inside = ops.stop_gradient(ops.cast(scores > 0, scores.dtype))
        else:
            predicted = ops.argmax(scores, axis=-1)
            inside = ops.stop_gradient(ops.one_hot(predicted, ops.shape(scores)[-1], dtype=scores.dtype))
        return ops.sum(scores * inside, axis=spatial)

    return table


def _segment_details(mask, base, label):
    def details(raw, codes):
        codes = np.asarray(codes, np.int64)
        if mask is not None:
            counts = np.full(len(raw), int(mask.sum()))
        else:
            scores = np.asarray(ops.convert_to_numpy(base.scores(raw)))
            at = codes.reshape((-1,) + (1,) * (scores.ndim - 1))  # each image's class, against every cell
            if base.kind == "sigmoid":
                inside = np.take_along_axis(scores, at, axis=-1)[..., 0] > 0
            else:
                inside = np.argmax(scores, axis=-1) == at[..., 0]
            counts = inside.reshape(len(inside), -1).sum(axis=1)
        return [{"target_pixels": int(n)} if n else
                {"target_pixels": 0, "target_refusal": f"nothing in this image is predicted as {label(int(c))}: no map "
                                                       "(give a mask: segment:CLASS:MASK.png)"}
                for n, c in zip(counts, codes)]

    return details


def _similarity_table(reference, dissimilar):
    reference = np.asarray(reference, dtype=np.float32).reshape(-1)
    unit = reference / max(float(np.linalg.norm(reference)), 1e-12)

    def table(raw, base):
        vectors = ops.reshape(raw, (ops.shape(raw)[0], -1))
        norms = ops.sqrt(ops.sum(vectors * vectors, axis=-1, keepdims=True))
        cosine = ops.matmul(vectors, ops.convert_to_tensor(unit[:, None], dtype=vectors.dtype)) / ops.maximum(
            norms, 1e-12)
        return 1.0 - cosine if dissimilar else cosine

    return table


def _output_table(decrease):
    def table(raw, base):
        flat = ops.reshape(raw, (ops.shape(raw)[0], -1))
        return -flat if decrease else flat

    return table


def box_iou(boxes, given):
    """IoU of (..., 4) boxes x0 y0 x1 y1 with one given box, in keras.ops or numpy alike."""
    xp = np if isinstance(boxes, np.ndarray) else ops
    x0, y0 = xp.maximum(boxes[..., 0], given[0]), xp.maximum(boxes[..., 1], given[1])
    x1, y1 = xp.minimum(boxes[..., 2], given[2]), xp.minimum(boxes[..., 3], given[3])
    inter = xp.maximum(x1 - x0, 0.0) * xp.maximum(y1 - y0, 0.0)
    area = xp.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * xp.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    union = area + (given[2] - given[0]) * (given[3] - given[1]) - inter
    return inter / xp.maximum(union, 1e-12)


def _box_match(raw, given, class_index, xp):
    """(matched index, its IoU, its score, eligible) per image of joined boxes and scores (B, N, 4 + C)."""
    boxes, scores = raw[..., :4], raw[..., 4:]
    iou = box_iou(boxes, given)
    if class_index is None:
        score, eligible = xp.max(scores, axis=-1), None
    else:
        score, eligible = scores[..., class_index], xp.argmax(scores, axis=-1) == class_index
    masked = iou if eligible is None else xp.where(eligible, iou, -1.0)
    index = xp.argmax(masked, axis=-1)
    take = lambda values: xp.take_along_axis(values, xp.expand_dims(index, -1), axis=-1)[:, 0]
    return index, take(masked), take(score)


def _box_table(given, class_index):
    given = tuple(float(v) for v in given)

    def table(raw, base):
        _, iou, score = _box_match(raw, given, class_index, ops)
        value = ops.where(iou >= BOX_IOU, iou + score, ops.zeros_like(iou))
        return ops.reshape(value, (-1, 1))

    return table


def _box_details(given, class_index, original, view, target):
    """Per image its matched box (in the original image's pixels), IoU and score, or the refusal."""
    def details(raw, codes):
        index, iou, score = _box_match(raw, given, class_index, np)
        out = []
        for i, (j, overlap, value) in enumerate(zip(index, iou, score)):
            if overlap < BOX_IOU:
                of = "" if class_index is None else f" of class {target.index}"
                out.append({"target_refusal": f"no predicted box{of} overlaps {target.spec[4:].split(':')[0]} by IoU "
                                              f"{BOX_IOU} or more (best {max(float(overlap), 0.0):.2f}): no map"})
                continue
            box = [round(float(v), 2) for v in _to_image(raw[i, j, :4], original, view)]
            out.append({"target_box": box, "target_box_index": int(j), "target_iou": round(float(overlap), 6),
                        "target_box_score": round(float(value), 6)})
        return out

    return details


def _to_input(box, view, size):
    """A box in the original image's pixels onto the model's input: the view `view` (x0, y0, x1,
    y1) of the image fills the input of `size` (height, width)."""
    x0, y0, x1, y1 = view
    sx, sy = size[1] / (x1 - x0), size[0] / (y1 - y0)
    return ((box[0] - x0) * sx, (box[1] - y0) * sy, (box[2] - x0) * sx, (box[3] - y0) * sy)


def _to_image(box, original, view):
    x0, y0, x1, y1 = view
    sx, sy = (x1 - x0) / original[1], (y1 - y0) / original[0]
    return (box[0] * sx + x0, box[1] * sy + y0, box[2] * sx + x0, box[3] * sy + y0)


def bind_view(bound, view):
    """A box target (bind's Bound, `per_view`) bound to one view: `view` (the view box x0 y0 x1 y1
    of the original image that fills the model's input). The Bound whose head reads the box on
    that view; views of one geometry share it (cached on `bound`)."""
    key = tuple(int(v) for v in view)
    if key not in bound.views:
        loaded, target = bound.loaded, bound.target
        size = loaded.input_size
        given = _to_input(target.box, key, size)
        head = TargetHead(target, loaded.head, 1, _box_table(given, bound.class_index),
                          per_image=_box_details(given, bound.class_index, size, key, target), source=loaded)
        label = f"box {target.spec[4:]}"
        bound.views[key] = Bound(target, replace(loaded, head=head, labels=(label,)), 0)
    return bound.views[key]


def _callable_table(function):
    def table(raw, base):
        values = function(raw)
        return ops.reshape(values, (ops.shape(raw)[0], 1))

    return table


@dataclass(frozen=True, eq=False)
class Bound:
    """A target bound to a model: the LoadedModel whose head reads it (`loaded`), the column it
    explains (`code`: an index, or the top-rank code -1 for a class target's default), and what a
    record says of it (`describe`)."""

    target: Target
    loaded: object
    code: int
    per_view: bool = False  # a box target: bound to each image's view by bind_view
    class_index: int = None  # a box target's class
    views: dict = None  # bind_view's Bounds, by view

    @property
    def is_class(self):
        return self.target.kind == "class"

    def describe(self, value, found=None):
        """The record's `target` entry: the spec, its parameters, the image's value, and what
        TargetHead.details `found` in it (a segment's cells, the matched box), prefix dropped."""
        out = {"kind": self.target.kind, "spec": self.target.spec}
        found = {key[len("target_"):]: item for key, item in (found or {}).items() if key != "target_refusal"}
        if "pixels" in found:
            found["cells"] = found.pop("pixels")
        if self.target.kind == "segment":
            out.update({"class": self.code, "label": self.loaded.label(self.code),
                        "mask": self.target.path or "predicted"})
        elif self.target.kind == "output":
            out.update({"unit": self.code, "direction": "decrease" if self.target.decrease else "increase"})
        elif self.target.kind in ("similar", "dissimilar"):
            out["reference"] = self.target.path
        elif self.target.kind == "box":
            out.update({"box": list(self.target.box), "class": self.target.index})
        out.update(found)
        out["value"] = None if value is None or not np.isfinite(value) else round(float(value), 6)
        return out


def bind(target, loaded, files=None, explicit=True):
    """`target` (a Target, a spec or a callable) on `loaded`: a Bound whose `loaded` is a copy of
    the LoadedModel with a TargetHead (class targets: the model itself). `files` reads the mask
    or reference a target names (files.references.TargetFiles: `mask(path)` an (H, W) bool array,
    `reference(path)` a vector, an image embedded by the model). TargetError in one line when it
    does not fit."""
    from gradcam_cli.explain.target_inputs import checked_reference, mask_on_grid, read_file
    from gradcam_cli.models.labels import class_index

    target = parse(target)
    if isinstance(loaded.head, TargetHead):  # a model bound to a target already: bind the model itself
        loaded = loaded.head.source
    check_fits(target, loaded, explicit)
    if target.kind == "class":
        code = -1 if target.index is None else class_index(target.index, loaded.labels, loaded.num_classes,
                                                           model=loaded.name)
        return Bound(target, loaded, code)
    shape = tuple(loaded.output.shape)[1:]
    if target.kind == "segment":
        try:
            code = class_index(target.index, loaded.labels, loaded.head.num_classes, model=loaded.name)
        except ClassError as error:
            raise TargetError(str(error)) from None
        mask = None if target.path is None else mask_on_grid(read_file(files, "mask", target.path), target.path,
                                                             shape[:-1])
        head = TargetHead(target, loaded.head, loaded.head.num_classes, _segment_table(mask),
                          per_image=_segment_details(mask, loaded.head, loaded.label), source=loaded)
        return Bound(target, replace(loaded, head=head), code)
    if target.kind == "output":
        units = int(np.prod(shape))
        if not 0 <= target.index < units:
            raise TargetError(f"{loaded.name} has {units} output unit(s): {argument('target', repr(target.spec))} "
                              f"asks for unit {target.index}")
        head = TargetHead(target, loaded.head, units, _output_table(target.decrease), source=loaded)
        labels = tuple(f"output {i}" for i in range(units))
        return Bound(target, replace(loaded, head=head, labels=labels), target.index)
    if target.kind == "box":
        wanted = None if target.index is None else class_index(target.index, loaded.labels, loaded.head.num_classes,
                                                               model=loaded.name)
        return Bound(target, loaded, 0, per_view=True, class_index=wanted, views={})
    if target.kind == "callable":
        head = TargetHead(target, loaded.head, 1, _callable_table(target.function), source=loaded)
        return Bound(target, replace(loaded, head=head, labels=(target.spec,)), 0)
    reference = checked_reference(read_file(files, "reference", target.path), target.path)
    units = int(np.prod(shape))
    if reference.size != units:
        raise TargetError(f"the reference {target.path!r} has {reference.size} values; {loaded.name}'s output has "
                          f"{units}")
    head = TargetHead(target, loaded.head, 1, _similarity_table(reference, target.kind == "dissimilar"),
                      source=loaded)
    label = f"{'dis' if target.kind == 'dissimilar' else ''}similarity to {Path(target.path).name}"
    return Bound(target, replace(loaded, head=head, labels=(label,)), 0)


def for_method(spec, method, network, loaded, shared, files):
    """What api.Explainer explains: `spec` (None: classes; a Bound of one view as it is) bound to
    `loaded` once per model and target in `shared`; `files` as bind's. GradcamError when a
    non-class target meets a
    method that explains classes (Finer-CAM's and Shapley-CAM's objectives, CAM's classifier, the
    dilated copies)."""
    from gradcam_cli.explain.methods import METHODS

    if isinstance(spec, Bound):  # one view's box target (api.Explainer._view)
        return spec
    target = Target("class") if spec is None else parse(spec)
    chosen = METHODS[method]
    if target.kind != "class" and (chosen.objective is not None or chosen.needs_classifier or network
                                   or chosen.network):
        raise GradcamError(f"{method}{' on a dilated copy' if network or chosen.network else ''} explains classes; "
                           f"{target.kind} targets are read by the other methods")
    key = ("target", id(loaded), target, spec is not None)
    if key not in shared:
        shared[key] = bind(target, loaded, files, explicit=spec is not None)
    return shared[key]
