"""
A first map
===========

Grad-CAM of the shipped demo model ``demo-gap`` on a sample scene, through the Python API
(``gradcam_cli.api``): the overlay the command ``gradcam sample_images/synthetic_triangle.png
--model demo-gap`` writes, drawn with matplotlib.
"""

from pathlib import Path

import matplotlib.pyplot as plt

from gradcam_cli import Explainer, load_model

# sphinx-gallery runs this file from examples/; the sample images lie beside that folder.
here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
image = here.parent / "sample_images" / "synthetic_triangle.png"

model = load_model("demo-gap")
explanation = Explainer(model, method="gradcam")([str(image)])[0]

figure, axes = plt.subplots(1, 2, figsize=(6, 3))
axes[0].imshow(plt.imread(image))
axes[0].set_title("input")
axes[1].imshow(explanation.overlay(colormap="jet", alpha=0.4))
axes[1].set_title(f"Grad-CAM: {explanation.label} ({explanation.probability:.2f})")
for axis in axes:
    axis.axis("off")
figure.tight_layout()
plt.show()
