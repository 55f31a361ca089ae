"""
A scan: the montage and a slice through the map
===============================================

``demo-volume`` is a small Conv3D classifier that tells a sphere from a cube in synthetic noisy
scans. The sample scan ``synthetic_sphere.nii.gz`` holds a sphere. The explainer takes the scan's
array as it is stored; ``overlay(volume=...)`` draws the montage the command writes (the three
planes through the map's peak, named from the scan's affine, and a strip of axial slices), and
the map itself is an array of the scan's shape, as the NIfTI map ``--save nifti`` writes.
"""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from gradcam_cli import Explainer, load_model
from gradcam_cli.files.volumes import read_volume

# the repository: above this file, or above the folder sphinx-gallery runs the example in
start = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
root = next(p for p in (start, *start.parents) if (p / "sample_images").is_dir())
scan = read_volume(root / "sample_images" / "synthetic_sphere.nii.gz")  # nibabel: the [volume] extra

[explanation] = Explainer(load_model("demo-volume"))(scan.array, names=["synthetic_sphere.nii.gz"])
print(explanation.label, round(explanation.probability, 3), explanation.map.shape)

# %%
# The montage, as ``gradcam synthetic_sphere.nii.gz --model demo-volume --save overlay`` writes it.

figure, axis = plt.subplots(figsize=(8, 5.2))
axis.imshow(explanation.overlay(volume=scan))
axis.set_title(f"Grad-CAM montage: {explanation.label} ({explanation.probability:.2f})")
axis.axis("off")
figure.tight_layout()

# %%
# One slice through the map's peak along the scan's third axis, drawn by hand: the scan in grey
# and the map's contours (the map is 0..1 at the scan's own shape).

peak = np.unravel_index(np.argmax(explanation.map), explanation.map.shape)
k = int(peak[2])
figure, axes = plt.subplots(1, 2, figsize=(7, 3.4))
axes[0].imshow(scan.array[:, :, k, 0].T, cmap="gray", origin="lower")
axes[0].set_title(f"scan, slice k={k}")
axes[1].imshow(scan.array[:, :, k, 0].T, cmap="gray", origin="lower")
contours = axes[1].contour(explanation.map[:, :, k].T, levels=[0.25, 0.5, 0.75], cmap="jet")
axes[1].clabel(contours, fontsize=7)
axes[1].set_title("the map's contours")
for axis in axes:
    axis.axis("off")
figure.tight_layout()
plt.show()
