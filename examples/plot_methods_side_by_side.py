"""
Methods side by side
====================

Five of the registered methods (``gradcam methods`` lists them all) on the same scene and the same
model, ``demo-gap``, each explaining the model's top class (the circle): Grad-CAM weighs the target
layer's channels by the class score's gradients, CAM by the classifier's own weights, Score-CAM by
the class probability of the image masked by each channel (forward passes, no gradient),
Eigen-CAM takes the activations' first principal component (no gradient and no class), and
FullGrad sums the input's and every bias's gradients at the input's resolution.

``Explainer.with_method`` builds each further method on what the first one built (the model and
its compiled steps).
"""

from pathlib import Path

import matplotlib.pyplot as plt

from gradcam_cli import Explainer, load_model

# the repository: above this file, or above the folder sphinx-gallery runs the example in
start = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
root = next(p for p in (start, *start.parents) if (p / "sample_images").is_dir())
image = str(root / "sample_images" / "synthetic_two_circle_triangle.png")

first = Explainer(load_model("demo-gap"), method="gradcam")
methods = ["gradcam", "cam", "scorecam", "eigencam", "fullgrad"]
explainers = [first] + [first.with_method(name) for name in methods[1:]]

figure, axes = plt.subplots(1, len(methods), figsize=(2.1 * len(methods), 2.5))
for axis, name, explainer in zip(axes, methods, explainers):
    [explanation] = explainer([image])
    axis.imshow(explanation.overlay())
    axis.set_title(f"{name}\n{explanation.label} ({explanation.probability:.2f})", fontsize=9)
    axis.axis("off")
figure.tight_layout()
plt.show()
