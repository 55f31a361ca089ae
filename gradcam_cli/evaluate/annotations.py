"""Objects users mark in their own images, for localization figures: a mask beside each image
(NAME.mask.png: the object where it is not transparent or, without transparency, non-zero;
files.images.read_mask) or boxes in a COCO-style JSON file. A scan's object is a label map beside
it, matched by name as an image's mask is: NAME.mask.nii.gz, NAME.mask.nii, NAME.mask.npy or
NAME.mask.npz beside NAME.nii.gz (or any volume file), the first found in that order; the object is
its non-zero voxels (files.references.read_label_map, the same rule), of the scan's shape."""

from pathlib import Path

import numpy as np

from gradcam_cli.errors import GradcamError, ImageError
from gradcam_cli.files.images import load_rgb
from gradcam_cli.files.images import read_mask as read_mask_file
from gradcam_cli.files.names import MASK_SUFFIX, is_mask


def read_mask(image_path, shape):
    """The object in the mask beside `image_path`, for an image of `shape`, read by the rule of
    files.images.read_mask (alpha where there is alpha, else non-zero labels, never scaled).
    ImageError when there is none, or it does not fit the image, or it is empty."""
    mask_path = image_path.with_name(image_path.name.rsplit(".", 1)[0] + MASK_SUFFIX)
    if not mask_path.is_file():
        raise ImageError(f"no mask {mask_path.name} beside it")
    mask = read_mask_file(mask_path)
    if mask.shape != tuple(shape[:2]):
        raise ImageError(f"the mask is {mask.shape[1]}x{mask.shape[0]}, the image {shape[1]}x{shape[0]}")
    if not mask.any():
        raise ImageError("the mask is empty")
    return annotated_object(mask)


VOLUME_MASK_SUFFIXES = (".mask.nii.gz", ".mask.nii", ".mask.npy", ".mask.npz")


def is_volume_mask(path):
    """Whether `path` is named as a scan's label map (NAME.mask.nii.gz...): never an input."""
    return Path(path).name.lower().endswith(VOLUME_MASK_SUFFIXES)


def read_volume_mask(scan_path, shape, max_voxels=None):
    """The object's label map beside the scan at `scan_path` (VOLUME_MASK_SUFFIXES, in order) as a
    (D1, D2, D3) bool array of the scan's `shape`. ImageError when there is none, it is not of the
    scan's shape, or it is empty."""
    from gradcam_cli.files.references import read_label_map
    from gradcam_cli.files.volumes import volume_suffix

    scan_path = Path(scan_path)
    suffix = volume_suffix(scan_path)
    stem = scan_path.name[: len(scan_path.name) - len(suffix)] if suffix else scan_path.name
    found = [scan_path.with_name(stem + end) for end in VOLUME_MASK_SUFFIXES]
    found = [path for path in found if path.is_file()]
    if not found:
        raise ImageError(f"no label map {stem}.mask.nii.gz (or .nii, .npy, .npz) beside it")
    mask = read_label_map(found[0], max_voxels)
    if mask.shape != tuple(shape[:3]):
        raise ImageError(f"the label map {found[0].name} is {'x'.join(map(str, mask.shape))}, the scan "
                         f"{'x'.join(map(str, shape[:3]))}")
    if not mask.any():
        raise ImageError(f"the label map {found[0].name} is empty (no non-zero voxel)")
    return mask


def annotated_volumes(sources, objects=True, max_voxels=None):
    """The scans among `sources` (inputs.Source; label maps are not inputs) read by
    files.volumes.read_volume, with their label maps (read_volume_mask) when `objects`:
    (volumes (D1, D2, D3, C) float32, masks or None, paths, [(path, reason)] of those that cannot
    be used)."""
    from gradcam_cli.files.volumes import DEFAULT_MAX_VOXELS, read_volume

    volumes, masks, paths, unusable = [], [], [], []
    for source in sources:
        if is_volume_mask(source.path) or is_mask(source.path):
            continue
        try:
            volume = read_volume(source.path, DEFAULT_MAX_VOXELS if max_voxels is None else max_voxels)
            if objects:
                masks.append(read_volume_mask(source.path, volume.shape, max_voxels))
        except ImageError as error:
            unusable.append((source.path, str(error)))
            continue
        volumes.append(volume.array)
        paths.append(str(source.path))
    return volumes, masks if objects else None, paths, unusable


def read_boxes(path):
    """Object boxes from a COCO-style JSON file: {file name: [(x0, y0, x1, y1), ...]}, from its
    "images" (id, file_name) and "annotations" (image_id, bbox [x, y, width, height], in pixels).
    A file name matches an input by its name or its path's end. GradcamError for a file that
    cannot be read or is not of that shape."""
    import json

    try:
        data = json.loads(Path(path).read_text())
        names = {image["id"]: str(image["file_name"]) for image in data["images"]}
        boxes = {name: [] for name in names.values()}
        for annotation in data["annotations"]:
            x, y, width, height = (float(v) for v in annotation["bbox"])
            if width <= 0 or height <= 0:
                raise ValueError(f"annotation {annotation.get('id', '?')}: an empty bbox {annotation['bbox']}")
            boxes[names[annotation["image_id"]]].append((x, y, x + width, y + height))
    except OSError as error:
        raise GradcamError(f"cannot read the boxes file {path}: {error.strerror or error}") from None
    except (ValueError, KeyError, TypeError) as error:
        raise GradcamError(f"boxes file {path}: not COCO-style JSON (images with id and file_name, annotations "
                           f"with image_id and bbox [x, y, width, height]): {type(error).__name__}: {error}") from None
    return boxes


def _boxes_for(image_path, boxes):
    """The boxes of `image_path` in read_boxes' dict (matched by the longest file name that ends
    its path), or None."""
    text = Path(image_path).as_posix()
    matches = [name for name in boxes if text == name or text.endswith("/" + name.lstrip("./"))]
    return boxes[max(matches, key=len)] if matches else None


def boxes_object(image_path, shape, boxes):
    """The object of an image from its boxes (read_boxes): the union of the boxes as its mask,
    the smallest box around them all as its box. ImageError when the file names none, or a box
    lies outside the image."""
    found = _boxes_for(image_path, boxes)
    if not found:
        raise ImageError("no box for it in the boxes file")
    height, width = shape[:2]
    mask = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in found:
        if x0 < 0 or y0 < 0 or x1 > width + 0.5 or y1 > height + 0.5:
            raise ImageError(f"box {[round(v, 1) for v in (x0, y0, x1 - x0, y1 - y0)]} lies outside the "
                             f"{width}x{height} image")
        mask[int(round(y0)) : max(int(round(y1)), int(round(y0)) + 1),
             int(round(x0)) : max(int(round(x1)), int(round(x0)) + 1)] = True
    return annotated_object(mask)


def annotated_inputs(sources, boxes=None):
    """The images among `sources` (inputs.Source) with a mask beside them (NAME.mask.png), or,
    given `boxes` (read_boxes), with boxes in that file: (rgbs, objects, paths, [(path, reason)]
    of those that cannot be used). Masks themselves are not inputs."""
    rgbs, objects, paths, unusable = [], [], [], []
    for source in sources:
        if is_mask(source.path):
            continue
        try:
            rgb = load_rgb(source.path)
            objects.append(read_mask(source.path, rgb.shape) if boxes is None
                           else boxes_object(source.path, rgb.shape, boxes))
        except ImageError as error:
            unusable.append((source.path, str(error)))
            continue
        rgbs.append(rgb)
        paths.append(str(source.path))
    return rgbs, objects, paths, unusable


def annotated_object(mask):
    """A SceneObject from a user's mask (any non-zero pixel is the object)."""
    from gradcam_cli.evaluate.scenes import SceneObject

    mask = np.asarray(mask) > 0
    ys, xs = np.nonzero(mask)
    return SceneObject(-1, mask, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
