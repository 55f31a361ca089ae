"""
A clip: one map per frame
=========================

``demo-clip`` is a small Conv3D video classifier: it tells a moving square from a still one. The
explainer reads the sample clip ``moving_square.avi`` (OpenCV), takes the model's eight frames
evenly over it, and gives back a map with one slice per frame, on one colour scale over the whole
clip: a frame where the model looks less is drawn cooler.
"""

from pathlib import Path

import matplotlib.pyplot as plt

from gradcam_cli import Explainer, load_model
from gradcam_cli.files.clips import read_clip

# the repository: above this file, or above the folder sphinx-gallery runs the example in
start = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
root = next(p for p in (start, *start.parents) if (p / "sample_images").is_dir())
path = root / "sample_images" / "moving_square.avi"

[explanation] = Explainer(load_model("demo-clip"))([str(path)])
clip = read_clip(path, frames=explanation.map.shape[0])  # the frames the model took, with their indices
print(explanation.label, round(explanation.probability, 3), explanation.map.shape)

figure, axes = plt.subplots(2, len(clip.array), figsize=(1.3 * len(clip.array), 2.4))
for t, (frame, frame_map) in enumerate(zip(clip.array, explanation.map)):
    axes[0, t].imshow(frame)
    axes[0, t].set_title(f"frame {clip.indices[t]}", fontsize=8)
    axes[1, t].imshow(frame_map, cmap="jet", vmin=0, vmax=1)
for axis in axes.flat:
    axis.axis("off")
figure.suptitle(f"demo-clip: Grad-CAM of '{explanation.label}', the map's peak per frame: "
                + " ".join(f"{m:.2f}" for m in explanation.map.max(axis=(1, 2))), fontsize=8)
figure.tight_layout()
plt.show()
