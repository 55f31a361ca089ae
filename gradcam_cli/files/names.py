"""What a file's name says, before anything is read: an image's, a mask's and a video clip's
suffixes. One place for these rules, below both the folder walker (files/inputs.py) and the clip
reader (files/clips.py), which both need them; no import of OpenCV or NumPy here (the command
line reads these at start-up)."""

from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
MASK_SUFFIX = ".mask.png"  # an image's object mask: NAME.mask.png beside NAME.ext (eval, compare)
CLIP_SUFFIXES = (".mp4", ".avi", ".mov", ".webm")


def is_mask(path):
    """Whether `path` names an object mask (NAME.mask.png)."""
    return Path(path).name.endswith(MASK_SUFFIX)


def clip_suffix(path):
    """The video suffix `path`'s name ends with (case ignored), or None."""
    name = Path(path).name.lower()
    return next((s for s in CLIP_SUFFIXES if name.endswith(s) and len(name) > len(s)), None)
