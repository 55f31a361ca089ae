"""The forward pass and gradients for a batch; owns compilation and batching.

One `Engine` per (model, target layer). Its compiled step takes a fixed-size batch (the last
batch is padded, so nothing is traced twice) and a target per image, and returns the target
layer's activations, the gradients of each image's class score with respect to them, the
model's pre-activation outputs and the class each image was explained for.

Targets: an index >= 0 is that class; -1 is the image's top-1 class, -2 its second, ...
so top-k maps and explicit classes share one compiled step.

`run(..., backprop="guided"|"deconvnet")` also returns the gradient of each image's class score
with respect to the (preprocessed) input image, back-propagated through the model's ReLUs the
guided or deconvnet way (models/guided.py): a second compiled step, made on first use, with
the classes the first step chose.
"""

from dataclasses import dataclass

import numpy as np
from keras import ops

from gradcam_cli import backend as backends
from gradcam_cli.models.guided import relu_rewrite


def top_rank(rank):
    """The target code for the rank-th most likely class (rank 1 = the top class)."""
    return -int(rank)


@dataclass
class BatchResult:
    """What a method reads: the engine's results for a batch, the batch itself, and the engine
    (to score further inputs: `engine.scores`)."""

    activations: np.ndarray  # (B, h, w, K) float32
    gradients: np.ndarray  # (B, h, w, K) float32, or None when not asked for
    raw_outputs: np.ndarray  # (B, units) pre-activation model outputs
    classes: np.ndarray  # (B,) the class each image was explained for
    input_gradients: np.ndarray = None  # (B, H, W, C) with `backprop`: d score / d input
    inputs: np.ndarray = None  # (B, H, W, C) the preprocessed batch
    engine: object = None


class Engine:
    def __init__(self, loaded, target_path, batch_size, jit=False):
        self.loaded = loaded
        self.target_path = tuple(target_path)
        self.batch_size = int(batch_size)
        self._jit = jit
        self._step = backends.load().activation_gradients(self._forward, jit=jit, variables=loaded.model.variables)
        self._input_steps = {}  # backprop mode -> compiled step
        self._forward_step = None  # made on first use (gradient-free methods, scoring)

    def _rewrite(self, tap):
        target = self.target_path

        def rewrite(path, layer):
            if path == target:
                return lambda *args, **kwargs: tap(layer(*args, **kwargs))
            return self.loaded.logits_rewrite(path, layer)

        return rewrite

    def _forward(self, images, targets, tap):
        return self._objective(images, targets, self._rewrite(tap))

    def _input_step(self, mode):
        if mode not in self._input_steps:
            relus = relu_rewrite(mode)

            def rewrite(path, layer):
                logits = self.loaded.logits_rewrite(path, layer)
                return logits if logits is not None else relus(path, layer)

            forward = lambda images, targets: self._objective(images, targets, rewrite)
            self._input_steps[mode] = backends.load().input_gradients(forward, jit=self._jit,
                                                                      variables=self.loaded.model.variables)
        return self._input_steps[mode]

    def _objective(self, images, targets, rewrite):
        raw = self.loaded.forward(images, rewrite)
        scores = self.loaded.head.scores(raw)
        order = ops.argsort(-scores, axis=-1)
        rank = ops.maximum(-targets - 1, 0)
        ranked = ops.take_along_axis(order, ops.expand_dims(rank, -1), axis=-1)[:, 0]
        classes = ops.where(targets >= 0, targets, ops.cast(ranked, targets.dtype))
        chosen = ops.take_along_axis(scores, ops.expand_dims(classes, -1), axis=-1)[:, 0]
        return chosen, {"raw": raw, "classes": classes}

    def _padded(self, images, targets):
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
        return images, targets

    def _forward_only(self, images, targets):
        if self._forward_step is None:
            self._forward_step = backends.load().forward(self._forward, jit=self._jit,
                                                         variables=self.loaded.model.variables)
        return self._forward_step(images, targets)

    def raw_outputs(self, images):
        """The model's pre-activation outputs for any number of preprocessed images (N, H, W, C):
        the forward pass alone, in chunks of the engine's batch size (its compiled shape), no
        gradient. Returns (N, units) float32."""
        chunks = []
        for start in range(0, len(images), self.batch_size):
            chunk = np.asarray(images[start : start + self.batch_size])
            padded, codes = self._padded(chunk, np.full(len(chunk), -1))
            _, aux = self._forward_only(padded, codes)
            chunks.append(ops.convert_to_numpy(aux["raw"])[: len(chunk)].astype(np.float32))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.loaded.head.num_classes), np.float32)

    def scores(self, images):
        """Class scores (before the softmax) of preprocessed images, as `raw_outputs`: (N, C)."""
        return np.asarray(self.loaded.head.scores(self.raw_outputs(images)), dtype=np.float32)

    def probabilities(self, images):
        """Class probabilities (the model's softmax or sigmoid) of preprocessed images: (N, C)."""
        return self.loaded.head.probabilities(self.raw_outputs(images)).astype(np.float32)

    def run(self, images, targets, backprop=None, gradients=True):
        """Explain a batch: `images` (n <= batch_size, H, W, C) preprocessed float32,
        `targets` (n,) target codes; `backprop` None, 'guided' or 'deconvnet' for input
        gradients too; `gradients` False for the forward pass alone (no gradient computed:
        the result's gradients are None). Returns a BatchResult for the n images."""
        count = len(images)
        images, targets = self._padded(images, targets)
        if gradients or backprop is not None:
            activations, gradients, aux = self._step(images, targets)
        else:
            (activations, aux), gradients = self._forward_only(images, targets), None
        classes = ops.convert_to_numpy(aux["classes"]).astype(np.int32)
        input_gradients = None
        if backprop is not None:
            input_gradients, _ = self._input_step(backprop)(images, classes)
            input_gradients = ops.convert_to_numpy(input_gradients)[:count].astype(np.float32)
        return BatchResult(
            activations=ops.convert_to_numpy(activations)[:count].astype(np.float32),
            gradients=None if gradients is None else ops.convert_to_numpy(gradients)[:count].astype(np.float32),
            raw_outputs=ops.convert_to_numpy(aux["raw"])[:count].astype(np.float32),
            classes=classes[:count].astype(np.int64),
            input_gradients=input_gradients,
            inputs=images[:count],
            engine=self,
        )
