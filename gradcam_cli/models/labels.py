"""Class names: the ImageNet index shipped in the package, and users' label files.

Keras's decode_predictions downloads imagenet_class_index.json at run time; this package carries
the same 1000 names (the first WordNet lemma of each class, spaces as underscores: 'tiger_cat',
'Saint_Bernard') so that predictions get names offline.
"""

import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from gradcam_cli.errors import ClassError, argument


@lru_cache(maxsize=1)
def imagenet_labels():
    """The 1000 ImageNet class names, by class index."""
    text = resources.files("gradcam_cli").joinpath("data/imagenet_class_index.json").read_text()
    index = json.loads(text)
    return tuple(index[str(i)][1] for i in range(len(index)))


def read_labels(path):
    """Read class names from a text file (one per line) or JSON (a list, or {index: name})."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ClassError(f"cannot read labels file {path}: {error.strerror or error}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ClassError(f"labels file {path} is not valid JSON: {error}") from None
        return _labels_from_json(data, path)
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _labels_from_json(data, path):
    if isinstance(data, list):
        return tuple(str(item) for item in data)
    if isinstance(data, dict):
        try:
            indexed = {int(key): value for key, value in data.items()}
        except ValueError:
            raise ClassError(f"labels file {path}: JSON object keys must be class indices") from None
        if sorted(indexed) != list(range(len(indexed))):
            missing = sorted(set(range(max(indexed) + 1)) - set(indexed)) if indexed and min(indexed) >= 0 else []
            listed = ", ".join(str(i) for i in missing[:10]) + (", ..." if len(missing) > 10 else "")
            detail = f"index {listed} missing" if missing else f"found {min(indexed)} among them"
            raise ClassError(f"labels file {path}: the keys must be the class indices 0, 1, 2, ... without "
                               f"gaps; {detail}")
        # Keras's own format is {"0": ["n01440764", "tench"], ...}: take the name.
        return tuple(
            str(indexed[i][-1] if isinstance(indexed[i], list) else indexed[i])
            for i in range(len(indexed))
        )
    raise ClassError(f"labels file {path}: expected a JSON list or object")


_LABELS = argument("labels", "'FILE'", "FILE")  # named in a message


def whole_number(text):
    """`text` as an int when it is ASCII digits with an optional leading minus ("-1", "007"),
    else None. Python's int() also takes other scripts' digits ("\u0663") and str.isdigit()
    superscripts ("\u00b2"), which int() then refuses: neither is an index here."""
    text = str(text).strip()
    return int(text) if re.fullmatch(r"-?[0-9]{1,4000}", text) else None  # int() takes 4300 digits at most


def class_index(spec, labels, num_classes, model=None):
    """Resolve a class (an index or a class name) to an index; ClassError if neither.
    `model`: the model's name, for the message."""
    spec = str(spec).strip()
    the_model = f"model {model}" if model else "the model"
    index = whole_number(spec)
    if index is not None:
        if not 0 <= index < num_classes:
            raise ClassError(
                f"class {index} is out of range: {the_model} has {num_classes} classes "
                f"(0..{num_classes - 1})"
            )
        return index
    if not labels:
        raise ClassError(f"class {spec!r}: {the_model} has no class names; give an index, or the class names "
                         f"({_LABELS})")
    wanted = spec.lower().replace(" ", "_")
    matches = [i for i, name in enumerate(labels) if name.lower().replace(" ", "_") == wanted]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ClassError(f"class {spec!r} names several classes of {the_model} {matches}: give the index")
    near = [name for name in labels if wanted in name.lower()][:8]
    hint = f"; similar: {', '.join(near)}" if near else ""
    raise ClassError(f"class {spec!r} is not a class name of {the_model}{hint}")


# The target code of an image's top-1 class (explain.batch.top_rank(1)).
TOP_RANK = -1


def class_codes(loaded, classes, count):
    """Per-image target codes for `count` images: the class given (an index or a name; one for
    all images or one per image), or the top-1 code for None. ClassError for a class the model
    does not have or a list of the wrong length."""
    import numpy as np

    single = classes is None or isinstance(classes, (str, int, np.integer))
    chosen = [classes] * count if single else list(classes)
    if len(chosen) != count:
        raise ClassError(f"{argument('classes')}: one class for all images or one per image ({count}). Received: "
                         f"{len(chosen)}")
    codes = [TOP_RANK if c is None else int(c) if isinstance(c, (int, np.integer)) and c < 0
             else class_index(c, loaded.labels, loaded.num_classes, model=loaded.name) for c in chosen]
    return np.asarray(codes, dtype=np.int64)
