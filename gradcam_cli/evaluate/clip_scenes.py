"""A seeded generator of short RGB clips whose moving object is known frame by frame: the clips'
counterpart of `scenes`, on which the demo-clip video classifiers are trained
(scripts/train_demo_models.py).

Each clip is CLIP_SHAPE = (8, 32, 32) frames x height x width, RGB uint8, of noise: a still
background (a 4 x 4 grid of grey levels in [50, 120], upsampled bilinearly, with a small tint per
channel) plus fresh Gaussian noise in every frame (sigma 8), so that no pixel is constant over
time. Two squares of one colour (each channel in [170, 250]) and one side (5 to 7 pixels) are drawn
on it. In a "still" clip (class 0) both stay where they are; in a "moving" clip (class 1) one of
them moves SPEED pixels a frame along one of the eight directions (a diagonal step is SPEED along
both axes), its whole path inside the frame with a pixel to spare, never touching the other square.
Both classes hold the same two squares of the same colour and size, so only the motion tells them
apart: a classifier must look across frames, and its map of "moving" has a still square of the same
look to confuse the moving one with.

The masks are exactly the pixels drawn: `moving` (T, H, W) the moving square's pixels in each frame
(all False in a still clip), `still` (T, H, W) the still squares'. Classes alternate with the index
(even: still, odd: moving), so any even count is balanced. The same (index, seed) gives the same
bytes.
"""

from dataclasses import dataclass

import numpy as np

from gradcam_cli.models.registry import CLIP_CLASSES as CLASS_NAMES

CLIP_SHAPE = (8, 32, 32)
SIDES = (5, 7)
SPEED = 2
NOISE = 8.0
_DIRECTIONS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


@dataclass(frozen=True)
class ClipScene:
    clip: np.ndarray  # (T, H, W, 3) uint8 RGB
    moving: np.ndarray  # (T, H, W) bool: the moving square's pixels (none in a still clip)
    still: np.ndarray  # (T, H, W) bool: the still squares' pixels
    class_index: int
    boxes: tuple  # the moving square's (top, left, bottom, right) per frame, bottom and right exclusive; () if none

    @property
    def label(self):
        return CLASS_NAMES[self.class_index]


def _background(rng, shape):
    frames, height, width = shape
    field = rng.uniform(50, 120, (4, 4))
    rows = np.clip((np.arange(height) + 0.5) * 4 / height - 0.5, 0, 3)
    cols = np.clip((np.arange(width) + 0.5) * 4 / width - 0.5, 0, 3)
    field = np.stack([np.interp(rows, np.arange(4), field[:, j]) for j in range(4)], axis=1)
    field = np.stack([np.interp(cols, np.arange(4), row) for row in field])
    tint = rng.uniform(-10, 10, 3)
    return field[None, :, :, None] + tint + rng.normal(0, NOISE, (frames, height, width, 3))


def _overlaps(a, b, margin=1):
    """Whether boxes (top, left, bottom, right) come within `margin` pixels of each other."""
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def _place(rng, shape, side, moving):
    """The two squares' boxes per frame: (path of the first, box of the second). The first moves
    when `moving`; its path and the second square keep a pixel from the edges and from each other."""
    frames, height, width = shape
    travel = SPEED * (frames - 1)
    while True:
        dy, dx = _DIRECTIONS[rng.integers(len(_DIRECTIONS))] if moving else (0, 0)
        span_y, span_x = abs(dy) * travel, abs(dx) * travel
        top = int(rng.integers(1, height - side - span_y)) + (span_y if dy < 0 else 0)
        left = int(rng.integers(1, width - side - span_x)) + (span_x if dx < 0 else 0)
        path = [(top + dy * SPEED * t, left + dx * SPEED * t) for t in range(frames)]
        path = [(y, x, y + side, x + side) for y, x in path]
        y, x = int(rng.integers(1, height - side)), int(rng.integers(1, width - side))
        other = (y, x, y + side, x + side)
        if not any(_overlaps(box, other) for box in path):
            return path, other


def generate(index, seed=0, shape=CLIP_SHAPE):
    """The clip number `index` of the set `seed`: still when `index` is even, moving when odd."""
    rng = np.random.default_rng([seed, index, 0xC11B])
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or shape[0] < 2 or min(shape[1:]) < 24:
        raise ValueError(f"shape must be (frames >= 2, height >= 24, width >= 24). Received: shape={shape}")
    class_index = index % len(CLASS_NAMES)
    moving = CLASS_NAMES[class_index] == "moving"
    clip = _background(rng, shape)
    side = int(rng.integers(SIDES[0], SIDES[1] + 1))
    colour = rng.uniform(170, 250, 3)
    path, other = _place(rng, shape, side, moving)
    moving_mask = np.zeros(shape, dtype=bool)
    still_mask = np.zeros(shape, dtype=bool)
    for t, (top, left, bottom, right) in enumerate(path):
        (moving_mask if moving else still_mask)[t, top:bottom, left:right] = True
        still_mask[t, other[0] : other[2], other[1] : other[3]] = True
    clip[moving_mask | still_mask] = colour
    clip = np.clip(np.rint(clip), 0, 255).astype(np.uint8)
    return ClipScene(clip, moving_mask, still_mask, class_index, tuple(path) if moving else ())


def dataset(count, seed=0, shape=CLIP_SHAPE):
    """`count` clips as arrays: clips (N, T, H, W, 3) float32 RGB 0..255, labels (N,) int64 and the
    moving squares' masks (N, T, H, W) bool."""
    scenes = [generate(i, seed, shape) for i in range(count)]
    clips = np.stack([scene.clip for scene in scenes]).astype(np.float32)
    labels = np.array([scene.class_index for scene in scenes], dtype=np.int64)
    return clips, labels, np.stack([scene.moving for scene in scenes])
