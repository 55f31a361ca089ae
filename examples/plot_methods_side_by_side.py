"""
Methods side by side
====================

Five of the registered methods (``gradcam methods`` lists them all) on the same scene and the same
model, ``demo-gap``: the Grad-CAM family weighs the target layer's channels by gradients
(Grad-CAM, Grad-CAM++, LayerCAM), CAM by the classifier's own weights, and Eigen-CAM takes the
activations' first principal component, with no gradient and no class.

``Explainer.with_method`` builds each further method on what the first one built (the model and
its compiled steps).
"""

from pathlib import Path

import matplotlib.pyplot as plt

from gradcam_cli import Explainer, load_model

here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd() / "examples"
image = str(here.parent / "sample_images" / "synthetic_two_cross_triangle.png")

first = Explainer(load_model("demo-gap"), method="gradcam")
methods = ["gradcam", "gradcam++", "layercam", "cam", "eigencam"]
explainers = [first] + [first.with_method(name) for name in methods[1:]]

figure, axes = plt.subplots(1, len(methods), figsize=(2.1 * len(methods), 2.5))
for axis, name, explainer in zip(axes, methods, explainers):
    [explanation] = explainer([image])
    axis.imshow(explanation.overlay())
    axis.set_title(f"{name}\n{explanation.label} ({explanation.probability:.2f})", fontsize=9)
    axis.axis("off")
figure.tight_layout()
plt.show()
