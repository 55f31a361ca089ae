"""
A segmenter's target
====================

``demo-unet`` is a small U-Net: its output gives every pixel a score per class (background,
circle, square, triangle, cross). A segmenter has no single class score to explain, so the map
explains a *target*: ``segment:CLASS`` sums CLASS's scores over the pixels the model labels CLASS
(``--target segment:circle`` on the command line, ``target="segment:circle"`` here).

The figure shows the model's own segmentation beside the maps of two targets on one scene.
"""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from gradcam_cli import Explainer, load_model

# the repository: above this file, or above the folder sphinx-gallery runs the example in
start = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
root = next(p for p in (start, *start.parents) if (p / "sample_images").is_dir())
image = str(root / "sample_images" / "synthetic_two_circle_triangle.png")

model = load_model("demo-unet")
targets = ["segment:circle", "segment:triangle"]
explainers = [Explainer(model, method="gradcam", target=target) for target in targets]
maps = [explainer([image])[0] for explainer in explainers]

# %%
# The model's segmentation: each pixel's most likely class, from the model's forward pass on
# the image as the explainer prepares it (``prepare``: resized and preprocessed).

rgb = np.asarray(Image.open(image).convert("RGB"))
inputs, _ = explainers[0].prepare([rgb])
labels = np.asarray(model.model(inputs))[0].argmax(axis=-1)  # (64, 64): the Keras model's own output

figure, axes = plt.subplots(1, 4, figsize=(9, 2.6))
axes[0].imshow(rgb)
axes[0].set_title("input")
axes[1].imshow(labels, cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
axes[1].set_title("segmentation: " + ", ".join(sorted({model.labels[k] for k in np.unique(labels)})), fontsize=8)
for axis, target, explanation in zip(axes[2:], targets, maps):
    axis.imshow(explanation.overlay())
    axis.set_title(f"Grad-CAM of {target}", fontsize=9)
for axis in axes:
    axis.axis("off")
figure.tight_layout()
plt.show()
