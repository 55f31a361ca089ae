"""A seeded generator of images whose objects' positions are known.

Each image is a textured, cluttered background with one object (or, for class-discrimination
tests, two objects of different classes): a filled circle, square, triangle or cross of random
size, rotation, colour and position. Every object comes with its class, its pixel mask and its
bounding box; the mask is exactly the set of pixels painted in the object's colour. The same
(seed, index) always gives the same bytes.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from gradcam_cli.models.registry import DEMO_CLASSES as CLASS_NAMES

IMAGE_SIZE = 64


@dataclass(frozen=True)
class SceneObject:
    class_index: int
    mask: np.ndarray  # (H, W) bool
    box: tuple  # (x0, y0, x1, y1), x1 and y1 exclusive

    @property
    def label(self):
        return CLASS_NAMES[self.class_index]


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    objects: tuple


def _background(rng, size):
    """Low-frequency colour texture, fine noise and thin clutter lines (never a class shape)."""
    coarse = rng.uniform(50, 200, (4, 4, 3)).astype(np.float32)
    texture = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    texture += rng.normal(0, 12, (size, size, 3)).astype(np.float32)
    image = np.clip(texture, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(3, 7)):
        start = tuple(int(v) for v in rng.integers(0, size, 2))
        end = tuple(int(v) for v in rng.integers(0, size, 2))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.line(image, start, end, color, thickness=1)
    return image


def _polygon(center, radius, angle, corners):
    angles = angle + np.arange(corners) * 2 * np.pi / corners
    return np.stack([center[0] + radius * np.cos(angles), center[1] + radius * np.sin(angles)], axis=1)


def _rotate(points, center, angle):
    c, s = np.cos(angle), np.sin(angle)
    shifted = points - center
    return np.stack([shifted[:, 0] * c - shifted[:, 1] * s, shifted[:, 0] * s + shifted[:, 1] * c], 1) + center


def _shape_mask(class_index, center, radius, angle, size):
    mask = np.zeros((size, size), dtype=np.uint8)
    center = np.asarray(center, dtype=np.float64)
    if CLASS_NAMES[class_index] == "circle":
        cv2.circle(mask, (int(round(center[0])), int(round(center[1]))), int(round(radius * 0.85)), 1, -1)
    elif CLASS_NAMES[class_index] == "square":
        cv2.fillPoly(mask, [np.round(_polygon(center, radius, angle, 4)).astype(np.int32)], 1)
    elif CLASS_NAMES[class_index] == "triangle":
        cv2.fillPoly(mask, [np.round(_polygon(center, radius, angle, 3)).astype(np.int32)], 1)
    else:  # cross: two bars
        arm = radius * 0.32
        for bar in ([[-radius, -arm], [radius, -arm], [radius, arm], [-radius, arm]],
                    [[-arm, -radius], [arm, -radius], [arm, radius], [-arm, radius]]):
            points = _rotate(np.asarray(bar) + center, center, angle)
            cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def _object_color(rng):
    """A saturated colour: one channel near an extreme, so objects stand out from the texture."""
    color = rng.integers(0, 256, 3)
    channel = rng.integers(0, 3)
    color[channel] = rng.choice([rng.integers(0, 30), rng.integers(225, 256)])
    return color.astype(np.uint8)


def _box(mask):
    ys, xs = np.nonzero(mask)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def generate(index, seed=0, size=IMAGE_SIZE, two_objects=False):
    """The scene number `index` of the set `seed`: one object, or two of different classes."""
    rng = np.random.default_rng([seed, index, int(two_objects), 0x5CE4E])
    image = _background(rng, size)
    classes = rng.choice(len(CLASS_NAMES), 2 if two_objects else 1, replace=False)
    objects = []
    occupied = np.zeros((size, size), dtype=bool)
    for class_index in classes:
        for _attempt in range(100):
            radius = rng.uniform(0.11, 0.16) * size if two_objects else rng.uniform(0.10, 0.20) * size
            margin = radius + 1
            center = rng.uniform(margin, size - margin, 2)
            mask = _shape_mask(int(class_index), center, radius, rng.uniform(0, 2 * np.pi), size)
            grown = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            if mask.sum() > 20 and not (grown & occupied).any():
                break
        else:  # pragma: no cover - the sizes above always leave room
            raise RuntimeError("could not place the objects")
        occupied |= mask
        image[mask] = _object_color(rng)
        objects.append(SceneObject(int(class_index), mask, _box(mask)))
    return Scene(image=image, objects=tuple(objects))


def dataset(count, seed=0, size=IMAGE_SIZE):
    """`count` one-object scenes as arrays: images (N, H, W, 3) uint8 and labels (N,)."""
    scenes = [generate(i, seed, size) for i in range(count)]
    images = np.stack([scene.image for scene in scenes])
    labels = np.array([scene.objects[0].class_index for scene in scenes], dtype=np.int64)
    return images, labels
