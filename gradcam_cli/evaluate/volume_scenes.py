"""A seeded generator of scans whose one object's voxels are known: the volumes' counterpart of
`scenes`, on which the demo-volume classifier is trained (scripts/train_demo_models.py).

Each scan is a (32, 32, 24) float32 volume, one channel, of smooth noise: a low-frequency field
(a 4 x 4 x 3 grid of uniform values in [0.15, 0.55], upsampled trilinearly) plus fine Gaussian
noise (sigma 0.05). One object is added to it, brighter by a moderate contrast (0.2 to 0.35, about
the field's own range, so no single voxel's value tells the object from the background): a ball
("sphere", class 0) or an axis-aligned cube ("cube", class 1). Both are drawn with the same
distribution of volumes: a sphere of radius r in [3.5, 6.5] voxels, or a cube of integer side
round(r * (4 pi / 3) ** (1/3)), so that the object's size and total brightness say nothing of its
class and a classifier must look at its shape. Sizes are in voxels; the generator knows nothing of
physical voxel spacing.

The mask is exactly the set of voxels brightened: for a sphere those whose centre (integer index)
lies within r of the sphere's (real-valued) centre, for a cube an integer block of side^3 voxels.
Classes alternate with the index (even: sphere, odd: cube), so any even count is balanced. The
same (index, seed) always gives the same bytes.
"""

from dataclasses import dataclass

import numpy as np

from gradcam_cli.models.registry import VOLUME_CLASSES as CLASS_NAMES

VOLUME_SHAPE = (32, 32, 24)
RADII = (3.5, 6.5)  # the sphere's radius, and the cube's volume-equivalent one, in voxels
CONTRAST = (0.2, 0.35)
_CUBE_SIDE_PER_RADIUS = (4 * np.pi / 3) ** (1 / 3)  # a cube of this side times r holds a ball of radius r's volume


@dataclass(frozen=True)
class VolumeScene:
    volume: np.ndarray  # VOLUME_SHAPE float32
    mask: np.ndarray  # VOLUME_SHAPE bool, the object's voxels
    class_index: int
    center: tuple  # the object's centre, in voxel indices
    size: float  # a sphere's radius or a cube's side, in voxels

    @property
    def label(self):
        return CLASS_NAMES[self.class_index]


def _upsample_axis(values, axis, length):
    """Linear interpolation of `values` along `axis` to `length` samples, half-pixel centres
    (the edges clamp), as a trilinear resize does one axis at a time."""
    old = values.shape[axis]
    position = np.clip((np.arange(length) + 0.5) * old / length - 0.5, 0, old - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, old - 1)
    weight_shape = [1] * values.ndim
    weight_shape[axis] = length
    weight = (position - low).reshape(weight_shape)
    return np.take(values, low, axis=axis) * (1 - weight) + np.take(values, high, axis=axis) * weight


def _background(rng, shape):
    field = rng.uniform(0.15, 0.55, (4, 4, 3))
    for axis, length in enumerate(shape):
        field = _upsample_axis(field, axis, length)
    return field + rng.normal(0, 0.05, shape)


def _object_mask(class_index, rng, shape):
    """The object's mask, centre and size (radius or side), inside the volume with a voxel to spare."""
    radius = rng.uniform(*RADII)
    if CLASS_NAMES[class_index] == "sphere":
        center = np.array([rng.uniform(radius + 1, length - radius - 2) for length in shape])
        grid = np.indices(shape, dtype=np.float64)
        distance2 = sum((grid[axis] - center[axis]) ** 2 for axis in range(3))
        return distance2 <= radius**2, tuple(float(c) for c in center), float(radius)
    side = int(round(radius * _CUBE_SIDE_PER_RADIUS))
    corner = [int(rng.integers(1, length - side)) for length in shape]
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(c, c + side) for c in corner)] = True
    return mask, tuple(c + (side - 1) / 2 for c in corner), float(side)


def generate(index, seed=0, shape=VOLUME_SHAPE):
    """The scan number `index` of the set `seed`: a sphere when `index` is even, a cube when odd."""
    rng = np.random.default_rng([seed, index, 0x701_0BE])
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 16:
        raise ValueError(f"shape must be three sides of at least 16 voxels. Received: shape={shape}")
    class_index = index % len(CLASS_NAMES)
    volume = _background(rng, shape)
    mask, center, size = _object_mask(class_index, rng, shape)
    volume[mask] += rng.uniform(*CONTRAST)
    return VolumeScene(volume.astype(np.float32), mask, class_index, center, size)


def dataset(count, seed=0, shape=VOLUME_SHAPE):
    """`count` scans as arrays: volumes (N, D1, D2, D3, 1) float32, labels (N,) int64 and the
    objects' masks (N, D1, D2, D3) bool."""
    scans = [generate(i, seed, shape) for i in range(count)]
    volumes = np.stack([scan.volume for scan in scans])[..., None]
    labels = np.array([scan.class_index for scan in scans], dtype=np.int64)
    return volumes, labels, np.stack([scan.mask for scan in scans])


# -- a tiny 3-D segmenter and scans written to files ------------------------------------------------

UNET_SHAPE = (16, 16, 16)  # the tiny U-Net's scans: spheres only (even indices), smaller for speed
UNET_LABELS = ("background", "sphere")


def sphere_scans(count, seed=0, shape=UNET_SHAPE):
    """`count` sphere scans (generate's even indices) of `shape`: volumes (N, D1, D2, D3, 1)
    float32 and label maps (N, D1, D2, D3) int64 (1 on the sphere's voxels, 0 elsewhere)."""
    scans = [generate(2 * i, seed, shape) for i in range(count)]
    return (np.stack([scan.volume for scan in scans])[..., None],
            np.stack([scan.mask for scan in scans]).astype(np.int64))


def tiny_unet(shape=UNET_SHAPE, width=8):
    """A 3-D U-Net of one level (Cicek et al. 2016's shape, cut down): enc_conv (width, 3x3x3,
    ReLU), 2x max pooling, bottleneck_conv (2 width), 2x upsampling, concatenation with enc_conv,
    dec_conv (width), and a 1x1x1 Conv3D `segmentation` with a softmax over UNET_LABELS per voxel:
    output (d1, d2, d3, 2). Each side of `shape` even."""
    from keras import layers, models

    if len(shape) != 3 or any(side % 2 for side in shape):
        raise ValueError(f"shape must be three even sides. Received: shape={shape}")
    inputs = layers.Input(tuple(shape) + (1,), name="scan")
    encoded = layers.Conv3D(width, 3, padding="same", activation="relu", name="enc_conv")(inputs)
    x = layers.MaxPooling3D(2, name="pool")(encoded)
    x = layers.Conv3D(2 * width, 3, padding="same", activation="relu", name="bottleneck_conv")(x)
    x = layers.UpSampling3D(2, name="up")(x)
    x = layers.Concatenate(name="skip")([x, encoded])
    x = layers.Conv3D(width, 3, padding="same", activation="relu", name="dec_conv")(x)
    outputs = layers.Conv3D(len(UNET_LABELS), 1, activation="softmax", name="segmentation")(x)
    return models.Model(inputs, outputs, name="tiny_unet3d")


def train_tiny_unet(count=48, epochs=16, seed=0, shape=UNET_SHAPE):
    """tiny_unet trained on `count` sphere_scans of set `seed` to tell the sphere's voxels from the
    background (sparse categorical cross-entropy, Adam 0.01, batches of 8, the sphere's voxels
    weighted by the background's share so that the rare class counts), weights seeded by `seed`.
    About 20 s on two CPU cores. Returns the Keras model."""
    import keras

    keras.utils.set_random_seed(seed)
    volumes, labels = sphere_scans(count, seed, shape)
    share = float(labels.mean())
    weights = np.where(labels == 1, (1 - share) / max(share, 1e-6), 1.0).astype(np.float32)
    model = tiny_unet(shape)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(volumes, labels[..., None], sample_weight=weights, batch_size=8, epochs=epochs, verbose=0,
              shuffle=True)
    return model


def write_scans(folder, count, seed=1, shape=VOLUME_SHAPE, kind="nifti", spheres=False):
    """Write `count` scans of set `seed` into `folder` with their label maps beside them, as
    `gradcam eval` reads them: scanI.nii.gz and scanI.mask.nii.gz (kind 'nifti', the identity
    affine) or scanI.npy and scanI.mask.npy (kind 'npy'); the label map is 1 on the object's
    voxels, 0 elsewhere (uint8). spheres: only spheres (generate's even indices). Returns
    [(scan path, VolumeScene)]."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(count):
        scan = generate(2 * i if spheres else i, seed, shape)
        label = scan.mask.astype(np.uint8)
        if kind == "npy":
            path = folder / f"scan{i}.npy"
            np.save(path, scan.volume)
            np.save(folder / f"scan{i}.mask.npy", label)
        elif kind == "nifti":
            import nibabel

            path = folder / f"scan{i}.nii.gz"
            nibabel.save(nibabel.Nifti1Image(scan.volume, np.eye(4)), path)
            nibabel.save(nibabel.Nifti1Image(label, np.eye(4)), folder / f"scan{i}.mask.nii.gz")
        else:
            raise ValueError(f"kind is 'nifti' or 'npy'. Received: kind={kind!r}")
        written.append((str(path), scan))
    return written
