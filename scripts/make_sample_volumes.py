"""Write the sample scan of a sphere into sample_images/: `synthetic_sphere.nii.gz` and the same
array as `synthetic_sphere.npy`.

    python scripts/make_sample_volumes.py

The scan is gradcam_cli.evaluate.volume_scenes' scan 2 of the held-out set (seed 1): a sphere in
a (32, 32, 24) volume, demo-volume's input shape. To keep both files small (under 100 KB
together) its intensities are quantised to multiples of 1/256 in [0, 255/256] (the generator's
fine noise, sigma 0.05, is about 13 such steps, so nothing the model sees changes):

- the NIfTI stores them as uint8 with scl_slope 1/256 (a power of two: get_fdata() gives k / 256
  exactly), as scanners store integers with a rescale slope;
- the .npy stores the same values as float16 (k / 256 is exact in float16).

The NIfTI's affine is not the identity: 1.5 x 1.5 x 2.5 mm voxels, a rotation of 10 degrees about
the scanner's z axis then 5 about its x axis, and an offset (AFFINE below), written as both its
sform and qform (code 1, scanner). The data is not resampled to it: the array is the generator's,
as stored. Deterministic: the same bytes on every run (gzip's time stamp is fixed).
"""

import gzip
import io
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gradcam_cli.evaluate import volume_scenes  # noqa: E402

OUT = ROOT / "sample_images"
NAME = "synthetic_sphere"
SCAN = (2, 1)  # (index, seed) in volume_scenes: a sphere of radius 4.9 voxels near the middle
STEPS = 256  # intensity levels per unit
VOXEL_MM = (1.5, 1.5, 2.5)
OFFSET_MM = (-24.0, -30.5, 12.25)
ANGLES_DEG = (10.0, 5.0)  # about z, then about x


def _affine():
    z, x = np.deg2rad(ANGLES_DEG)
    about_z = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    about_x = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    affine = np.eye(4)
    affine[:3, :3] = about_x @ about_z @ np.diag(VOXEL_MM)
    affine[:3, 3] = OFFSET_MM
    return affine


AFFINE = _affine()


def quantised_scan():
    """The scan's levels k (uint8) with value k / STEPS, and its scene (volume_scenes.VolumeScene)."""
    scene = volume_scenes.generate(*SCAN)
    levels = np.clip(np.round(scene.volume.astype(np.float64) * STEPS), 0, STEPS - 1).astype(np.uint8)
    return levels, scene


def nifti_bytes(levels):
    """The .nii.gz file's bytes: uint8 data, scl_slope 1/STEPS, AFFINE as sform and qform, mm units."""
    import nibabel

    image = nibabel.Nifti1Image(levels, AFFINE)
    image.header.set_data_dtype(np.uint8)
    image.header.set_xyzt_units("mm")
    image.set_sform(AFFINE, code=1)
    image.set_qform(AFFINE, code=1)
    image.header.set_slope_inter(1.0 / STEPS, 0.0)
    raw = image.to_bytes()
    buffer = io.BytesIO()
    with gzip.GzipFile(filename=f"{NAME}.nii", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as stream:
        stream.write(raw)
    return buffer.getvalue()


def main():
    levels, scene = quantised_scan()
    assert scene.label == "sphere", scene.label
    OUT.mkdir(exist_ok=True)
    (OUT / f"{NAME}.nii.gz").write_bytes(nifti_bytes(levels))
    np.save(OUT / f"{NAME}.npy", (levels / STEPS).astype(np.float16))
    for suffix in (".nii.gz", ".npy"):
        path = OUT / f"{NAME}{suffix}"
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size:,} bytes")
    print(f"a sphere of radius {scene.size:.2f} voxels at {tuple(round(c, 2) for c in scene.center)}")


if __name__ == "__main__":
    main()
