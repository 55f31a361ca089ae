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
from gradcam_cli.models import graph
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
        self._cut = None  # graph.Cut at the target, or the ValueError refusing it: first head step
        self._head_step = None  # made on first use (head_scores)

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

    def _head_cut(self):
        """The graph cut at the target layer, decided once; ValueError with the reason when the
        graph cannot be cut there (raised again on every later use)."""
        if self._cut is None:
            try:
                self._cut = graph.cut_above(self.loaded.model, self.target_path, self.loaded.output)
            except ValueError as error:
                self._cut = error
        if isinstance(self._cut, ValueError):
            raise ValueError(str(self._cut))
        return self._cut

    def _head_forward(self, activations, targets, tap):
        """A forward step whose "images" are target activations: only the layers above the cut
        run, with the logits rewrite, so `raw` is the model's pre-activation output."""
        activations = tap(activations)
        outputs = graph.run_above(self.loaded.model, self._cut, activations, self.loaded.logits_rewrite)
        raw = graph.flat_output(outputs, self.loaded.output.index)
        return ops.zeros((ops.shape(activations)[0],)), {"raw": raw}

    def head_raw_outputs(self, activations):
        """The model's pre-activation outputs computed from target-layer activations (N, h, w, K)
        by the layers above the target alone (the layers below are not computed), in chunks of
        the engine's batch size padded to its compiled shape, no gradient. Returns (N, units).
        ValueError when the graph cannot be cut at the target (graph.cut_above) or the
        activations do not have the target layer's shape."""
        self._head_cut()
        activations = np.asarray(activations, dtype=np.float32)
        shape = next((info.shape for info in self.loaded.layers if info.path == self.target_path), None)
        if activations.ndim != 4 or (shape is not None and tuple(activations.shape[1:]) != tuple(shape)):
            raise ValueError(f"activations of layer {graph.path_name(self.target_path)!r} have shape (N, "
                             f"{', '.join(map(str, shape or ('h', 'w', 'K')))}). Received: {activations.shape}")
        if self._head_step is None:
            self._head_step = backends.load().forward(self._head_forward, jit=self._jit,
                                                      variables=self.loaded.model.variables)
        chunks = []
        for start in range(0, len(activations), self.batch_size):
            chunk = activations[start : start + self.batch_size]
            pad = self.batch_size - len(chunk)
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)]) if pad else chunk
            _, aux = self._head_step(padded, np.zeros(self.batch_size, np.int32))
            chunks.append(ops.convert_to_numpy(aux["raw"])[: len(chunk)].astype(np.float32))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.loaded.head.num_classes), np.float32)

    def head_scores(self, activations):
        """Class scores (before the softmax, as `scores`) from target-layer activations
        (N, h, w, K), e.g. with channels masked (Ablation-CAM): `head_raw_outputs`. (N, C)."""
        return np.asarray(self.loaded.head.scores(self.head_raw_outputs(activations)), dtype=np.float32)

    def head_probabilities(self, activations):
        """Class probabilities (the model's softmax or sigmoid) from target-layer activations."""
        return self.loaded.head.probabilities(self.head_raw_outputs(activations)).astype(np.float32)

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
