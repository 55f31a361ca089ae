"""Digests of every method's maps on the shipped demo models, one line each.

    python scripts/map_digests.py > before.txt      # then change the code
    python scripts/map_digests.py | diff before.txt -

A refactoring that should change no number shows no difference: each line is a method (with an
option variant where it has one), a model, and the SHA-256 of the float32 maps (and input
gradients, for the backprop methods) of two sample images.
"""

import hashlib
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"
IMAGES = [str(SAMPLES / "synthetic_two_circle_triangle.png"), str(SAMPLES / "synthetic_square.png")]

# (method, model, extra Explainer arguments): every method once, some options twice.
CASES = [(m, "demo-gap", {}) for m in (
    "gradcam", "cam", "gradcam++", "layercam", "scorecam", "ablationcam", "xgradcam", "hirescam",
    "gradcam-elementwise", "eigengradcam", "segeigencam", "eigencam", "kpcacam", "fem", "randomcam", "finercam",
    "shapleycam", "fullgrad", "smoothgrad", "integrated-gradients", "guided", "deconvnet", "refinecam", "sess")]
CASES += [
    ("gradcam", "demo-vgg", {}), ("scorecam", "demo-vgg", {"max_masks": 8}), ("ablationcam", "demo-vgg", {}),
    ("gradcam", "demo-gap", {"pool": "max"}), ("gradcam++", "demo-gap", {"compat": "pytorch-grad-cam"}),
    ("scorecam", "demo-gap", {"compat": "pytorch-grad-cam"}), ("kpcacam", "demo-gap", {"kpca_kernel": "sigmoid"}),
    ("guided", "demo-gap", {"smoothgrad_samples": 3}), ("gradcam", "demo-gap", {"eigen_smooth": True}),
    ("gradcam", "demo-gap", {"aug_smooth": True}), ("dilated", "demo-vgg", {}), ("dilated-no-pooling", "demo-vgg", {}),
    ("gradcam", "demo-vit", {}), ("rollout", "demo-vit", {}), ("generic-attention", "demo-vit", {}),
    ("legrad", "demo-vit", {}), ("ablationcam", "demo-vit", {}), ("gradcam", "demo-unet", {"target": "segment:circle"}),
    ("sess", "demo-gap", {"base_method": "layercam"}),
]


def main():
    from gradcam_cli import Explainer, load_model

    models = {}
    for method, model, arguments in CASES:
        if model not in models:
            models[model] = load_model(model)
        explain = Explainer(models[model], method=method, batch_size=2, **arguments)
        digest = hashlib.sha256()
        for e in explain(IMAGES, top_k=1 if "target" in arguments else 2):
            digest.update(e.small_map.astype("float32").tobytes())
            if e.input_gradient is not None:
                digest.update(e.input_gradient.astype("float32").tobytes())
        options = ",".join(f"{k}={v}" for k, v in sorted(arguments.items()))
        print(f"{method:22s} {model:9s} {options:34s} {digest.hexdigest()[:20]}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
