"""The spelling of a target (`--target SPEC`, explain/targets.py's docstring): Target and parse,
without Keras, so that the command line checks a spec before a model loads. Indices are ASCII
whole numbers (models.labels.whole_number), a box's corners finite ASCII numbers: Python's
int() and float() would also take other scripts' digits, "inf" and "nan"."""

import math
import re
from dataclasses import dataclass
from pathlib import Path

from gradcam_cli.errors import GradcamError, argument
from gradcam_cli.models.labels import whole_number

KINDS = ("class", "segment", "similar", "dissimilar", "output", "box")
# The spelling of each kind's spec, for messages and help.
SPELLING = {"class": "class:N|NAME", "segment": "segment:CLASS[:MASK.png]", "similar": "similar:REF",
            "dissimilar": "dissimilar:REF", "output": "output:INDEX[:decrease]", "box": "box:X0,Y0,X1,Y1[:CLASS]"}
# What each kind explains, for --help.
MEANING = {"class": "as --class",
           "segment": "a segmenter: the sum of CLASS's scores over the pixels predicted as CLASS, or over a mask",
           "similar": "an embedding's cosine similarity to an image's or a .npy vector's: finite, not zero everywhere",
           "dissimilar": "its opposite",
           "output": "a regression unit",
           "box": "a detector: IoU + score of the predicted box that matches this one, in the image's pixels"}


def spelled(kinds=KINDS, meanings=False):
    """The specs of `kinds` as --help lists them, each with what it explains when `meanings`."""
    return ", ".join(SPELLING[kind] + (f" ({MEANING[kind]})" if meanings else "") for kind in kinds)


class TargetError(GradcamError):
    """A target that cannot be read or does not fit the model."""


@dataclass(frozen=True)
class Target:
    """A parsed target: its kind, and what the spec gave. `index` is a class (index or name)
    for class and segment, a unit for output; `path` a mask (segment) or a reference
    (similar/dissimilar); `function` a callable target (the API's)."""

    kind: str
    index: object = None
    path: str = None
    decrease: bool = False
    function: object = None
    box: tuple = None  # box targets: (x0, y0, x1, y1) in the original image's pixels

    @property
    def spec(self):
        """The target as `--target` spells it."""
        if self.function is not None:
            return f"callable:{getattr(self.function, '__name__', 'target')}"
        if self.kind == "box":
            return "box:" + ",".join(f"{v:g}" for v in self.box) + ("" if self.index is None else f":{self.index}")
        parts = [self.kind] + [str(p) for p in (self.index, self.path) if p is not None]
        return ":".join(parts + (["decrease"] if self.decrease else []))

    @property
    def tag(self):
        """What output files are named after: segment-circle, similar-cat, output3-decrease."""
        if self.function is not None:
            return "target-" + _safe(getattr(self.function, "__name__", "callable"))
        if self.kind == "output":
            return f"output{self.index}" + ("-decrease" if self.decrease else "")
        if self.kind == "box":
            return "box-" + "-".join(f"{v:g}" for v in self.box) + ("" if self.index is None else f"-{_safe(str(self.index))}")
        if self.kind == "segment":
            return f"segment-{_safe(str(self.index))}" + (f"-{_safe(Path(self.path).stem)}" if self.path else "")
        return f"{self.kind}-{_safe(Path(self.path).stem)}"


def _safe(text):
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:40] or "_"


# A number in a box's corners: ASCII digits, an optional sign, point and exponent (no inf, nan).
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _class_spec(text, spec, kind):
    """A class as a spec gives it: an index (ASCII digits, as models.labels.whole_number reads
    them) or a name. TargetError for what looks like a number and is not one ('--1', a
    superscript or another script's digits): an index is written in the digits 0-9."""
    index = whole_number(text)
    if index is not None:
        return index
    if text and all(c in "+-" or c.isnumeric() for c in text):
        raise TargetError(f"{argument('target', repr(spec))}: {text!r} is not a class index: write an index in the "
                          f"digits 0-9, or a class name ({kind} targets are written {SPELLING[kind]})")
    return text


def parse(spec):
    """A Target from `--target`'s text, a Target, or a callable. TargetError in one line: indices
    are ASCII whole numbers, a box's corners finite ASCII numbers."""
    if isinstance(spec, Target):
        return spec
    if callable(spec):
        return Target("callable", function=spec)
    text = str(spec).strip()
    kind, _, rest = text.partition(":")
    if kind not in KINDS:
        raise TargetError(f"unknown target kind {kind!r} in {argument('target', repr(text))}: give one of "
                          f"{', '.join(SPELLING.values())}")
    if not rest:
        raise TargetError(f"{argument('target', repr(text))}: {kind} targets are written {SPELLING[kind]}")
    if kind == "class":
        return Target("class", _class_spec(rest, text, kind))
    if kind == "segment":
        name, _, mask = rest.partition(":")
        return Target("segment", _class_spec(name, text, kind), mask or None)
    if kind == "output":
        index, _, direction = rest.partition(":")
        unit = whole_number(index)
        if unit is None or unit < 0 or direction not in ("", "decrease", "increase"):
            raise TargetError(f"{argument('target', repr(text))}: output targets are written {SPELLING[kind]}, "
                              "INDEX a unit's index in the digits 0-9")
        return Target("output", unit, decrease=direction == "decrease")
    if kind == "box":
        corners, _, name = rest.partition(":")
        values = [v.strip() for v in corners.split(",")]
        box = tuple(float(v) for v in values) if all(_NUMBER.fullmatch(v) for v in values) else ()
        if len(box) != 4 or not all(math.isfinite(v) for v in box) or not (box[0] < box[2] and box[1] < box[3]):
            raise TargetError(f"{argument('target', repr(text))}: box targets are written {SPELLING[kind]}, the box's "
                              "corners in the image's pixels, finite numbers in the digits 0-9, with X0 < X1 and "
                              "Y0 < Y1")
        return Target("box", _class_spec(name, text, kind) if name else None, box=box)
    return Target(kind, path=rest)
