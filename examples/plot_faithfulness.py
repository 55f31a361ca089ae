"""
Is the map faithful? A deletion curve
=====================================

A map is faithful when the pixels it calls important are those the model's answer rests on.
RISE's deletion measure removes the map's most important pixels first, in steps (each set to the
image's mean colour: ``baseline="mean"``), and follows the class probability: the faster it falls, the smaller the area under the
curve, the more faithful the map. ``gradcam_cli.measure_faithfulness`` computes it (with the
insertion curve, Average Drop and ROAD) for any maps, the tool's or your own; here Grad-CAM and
Eigen-CAM of ``demo-gap`` on the six sample scenes, beside a random map, a baseline that any method
should beat (``gradcam eval`` reports the same figures as a table and draws ``eval.curves.png``).

The baseline matters: on these scenes a black image is itself read as one of the shapes, so with
``baseline="zero"`` the curves end at that class's probability and a random map scores as well as
Grad-CAM; the mean colour removes the shapes without drawing a new one.
"""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from gradcam_cli import Explainer, load_model, measure_faithfulness
from gradcam_cli.evaluate.faithfulness import random_map

# the repository: above this file, or above the folder sphinx-gallery runs the example in
start = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
root = next(p for p in (start, *start.parents) if (p / "sample_images").is_dir())
names = ("synthetic_square.png", "synthetic_cross.png", "synthetic_circle.png", "synthetic_triangle.png",
         "synthetic_two_circle_triangle.png", "synthetic_two_cross_triangle.png")
images = [str(root / "sample_images" / name) for name in names]

model = load_model("demo-gap")
gradcam = Explainer(model, method="gradcam")
maps = {"Grad-CAM": gradcam(images), "Eigen-CAM": gradcam.with_method("eigencam")(images),
        "random map": [random_map((8, 8), seed=i) for i in range(len(images))]}
classes = [e.class_index for e in maps["Grad-CAM"]]  # every map explains the same class of an image

figure, axis = plt.subplots(figsize=(5.5, 3.6))
for name, these in maps.items():
    results = measure_faithfulness(gradcam, images, these, classes=classes, baseline="mean", road=False)
    curve = np.mean([r.deletion_curve for r in results], axis=0)
    auc = np.mean([r.deletion_auc for r in results])
    axis.plot(results[0].fractions, curve, marker="o", markersize=3, label=f"{name} (AUC {auc:.2f})")
axis.set_xlabel("fraction of pixels deleted (most important first)")
axis.set_ylabel(f"class probability (mean of {len(images)} scenes)")
axis.set_title("Deletion on demo-gap: lower is more faithful")
axis.set_ylim(0, 1.02)
axis.grid(alpha=0.3)
axis.legend()
figure.tight_layout()
plt.show()
