"""The forward pass and gradients for a batch; owns compilation and batching.

One `Engine` per (model, target layer). Its compiled step takes a fixed-size batch (the last
batch is padded, so nothing is traced twice) and a target per image, and returns the target
layer's activations, the gradients of each image's class score with respect to them, the
model's pre-activation outputs and the class each image was explained for.

Targets: an index >= 0 is that class; -1 is the image's top-1 class, -2 its second, ...
so top-k maps and explicit classes share one compiled step.
"""

from dataclasses import dataclass

import numpy as np
from keras import ops

from gradcam_cli import backend as backends
from gradcam_cli.models.graph import run_graph


def top_rank(rank):
    """The target code for the rank-th most likely class (rank 1 = the top class)."""
    return -int(rank)


@dataclass
class BatchResult:
    activations: np.ndarray  # (B, h, w, K) float32
    gradients: np.ndarray  # (B, h, w, K) float32
    raw_outputs: np.ndarray  # (B, units) pre-activation model outputs
    classes: np.ndarray  # (B,) the class each image was explained for


class Engine:
    def __init__(self, loaded, target_path, batch_size, jit=False):
        self.loaded = loaded
        self.target_path = tuple(target_path)
        self.batch_size = int(batch_size)
        self._step = backends.load().activation_gradients(self._forward, jit=jit)

    def _rewrite(self, tap):
        target = self.target_path
        final = self.loaded.final_path
        logits = self.loaded.logits_call

        def rewrite(path, layer):
            if path == target:
                return lambda *args, **kwargs: tap(layer(*args, **kwargs))
            if path == final and logits is not None:
                return logits
            return None

        return rewrite

    def _forward(self, images, targets, tap):
        raw = run_graph(self.loaded.model, images, self._rewrite(tap))
        scores = self.loaded.head.scores(raw)
        order = ops.argsort(-scores, axis=-1)
        rank = ops.maximum(-targets - 1, 0)
        ranked = ops.take_along_axis(order, ops.expand_dims(rank, -1), axis=-1)[:, 0]
        classes = ops.where(targets >= 0, targets, ops.cast(ranked, targets.dtype))
        chosen = ops.take_along_axis(scores, ops.expand_dims(classes, -1), axis=-1)[:, 0]
        return chosen, {"raw": raw, "classes": classes}

    def run(self, images, targets):
        """Explain a batch: `images` (n <= batch_size, H, W, 3) preprocessed float32,
        `targets` (n,) target codes. Returns a BatchResult for the n images."""
        count = len(images)
        if count == 0 or count > self.batch_size:
            raise ValueError(f"a batch holds 1..{self.batch_size} images. Received: {count}")
        images = np.asarray(images, dtype=np.float32)
        targets = np.asarray(targets, dtype=np.int32)
        classes = self.loaded.num_classes
        if (targets >= classes).any() or (targets < -classes).any():
            raise ValueError(f"targets must be class indices below {classes} or top ranks. Received: {targets}")
        if count < self.batch_size:  # pad, so that every call has the traced shape
            pad = self.batch_size - count
            images = np.concatenate([images, np.repeat(images[-1:], pad, axis=0)])
            targets = np.concatenate([targets, np.repeat(targets[-1:], pad)])
        activations, gradients, aux = self._step(images, targets)
        return BatchResult(
            activations=ops.convert_to_numpy(activations)[:count].astype(np.float32),
            gradients=ops.convert_to_numpy(gradients)[:count].astype(np.float32),
            raw_outputs=ops.convert_to_numpy(aux["raw"])[:count].astype(np.float32),
            classes=ops.convert_to_numpy(aux["classes"])[:count].astype(np.int64),
        )
