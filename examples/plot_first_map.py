"""
A first map
===========

Grad-CAM of the shipped demo model ``demo-gap`` on a sample scene, through the Python API
(``gradcam_cli.api``): the overlay that ``gradcam sample_images/synthetic_two_circle_triangle.png
--model demo-gap`` writes, for the model's top two classes, drawn with matplotlib.

The scene holds a circle and a triangle; demo-gap tells four shapes apart (circle, square,
triangle, cross). Each class gets its own map: the circle's map lies on the circle, the
triangle's on the triangle.
"""

from pathlib import Path

import matplotlib.pyplot as plt

from gradcam_cli import Explainer, load_model

# sphinx-gallery runs this file from examples/; the sample images lie beside that folder.
# the repository: above this file, or above the folder sphinx-gallery runs the example in
start = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
root = next(p for p in (start, *start.parents) if (p / "sample_images").is_dir())
image = root / "sample_images" / "synthetic_two_circle_triangle.png"

model = load_model("demo-gap")  # shipped with the package: no download
explain = Explainer(model, method="gradcam")
first, second = explain([str(image)], top_k=2)  # one Explanation per class, most likely first

# %%
# Each explanation carries the map (``map``, 0..1 at the image's size), the class and its scores,
# and draws itself: ``overlay()`` blends the coloured map onto the image as the command does.

figure, axes = plt.subplots(1, 3, figsize=(7.5, 2.8))
axes[0].imshow(plt.imread(image))
axes[0].set_title("input")
for axis, explanation in zip(axes[1:], (first, second)):
    axis.imshow(explanation.overlay(colormap="jet", alpha=0.4))
    axis.set_title(f"Grad-CAM: {explanation.label} ({explanation.probability:.2f})")
for axis in axes:
    axis.axis("off")
figure.tight_layout()
plt.show()
