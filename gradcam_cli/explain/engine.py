"""The forward pass and gradients for a batch; owns compilation and batching.

One `Engine` per (model, target layer). Its compiled steps take a fixed-size batch (the last
batch is padded, so nothing is traced twice) and a target per image, and return the target
layer's activations, the gradients of each image's objective with respect to them, the
model's pre-activation outputs and the class each image was explained for. Each step is built
on first use and compiled once per input shape; `traces` counts how often each step's forward
pass was traced (abstract evaluations included), so a test can see that nothing is retraced.

Volumes: a model whose input is (B, d1, d2, d3, C) runs through the same steps (nothing in them
depends on the rank): its target layer's activations and gradients are (B, d1, d2, d3, K); a clip
transformer's token layer is tapped as its (B, t', h', w', K) grid (models/tokens.py), time slowest.

Targets: an index >= 0 is that class; -1 is the image's top-1 class, -2 its second, ...
so top-k maps and explicit classes share one compiled step.

The objective: by default each image's class score (before the softmax, `head.scores`).
`run(..., objective=o)` differentiates `o(scores, classes) -> (values (B,), extras)` instead, a
hashable callable written in keras.ops (one compiled step per objective): Finer-CAM's
comparison with similar classes (methods/finercam.py), Shapley-CAM's ReST
(methods/shapleycam.py). `extras` come back with the results: "compared" (B, n) classes goes
to BatchResult.compared.

`run(..., backprop="plain"|"guided"|"deconvnet")` also returns the gradient of each image's
objective with respect to the (preprocessed) input image: plain, or back-propagated through the
model's ReLUs the guided or deconvnet way (models/backprop_relus.py): a second compiled step, made on
first use, with the classes the first step chose. `input_gradients` gives the same for any
number of inputs in compiled chunks (SmoothGrad, Integrated Gradients).

`run(..., needs=(..., "hessian"))` also returns H A, the Hessian of the objective with respect to the
target activations applied to them (Shapley-CAM), from one compiled second-order step.

`layer_gradients` differentiates with respect to the input and to the outputs of any layers
(their pre-activation outputs: FullGrad's bias-gradients).

Scoring (`raw_outputs`, `scores`, `probabilities`) runs the forward pass alone in chunks sized
so that one chunk's activations fit `memory_budget` bytes (`scoring_chunk`), and the upper-graph step
(`upper_raw_outputs`) likewise (`upper_chunk`). Both use at most two compiled shapes: full chunks,
and the engine's batch size for what is left (padded), so that scoring three images does not
pay for a chunk of hundreds.

Eager first calls: an engine made with eager_first=True runs each step's first call op by op,
uncompiled, and compiles the step on its second call (EagerFirst), where the backend allows it
(backend.EAGER_FIRST_CALL: TensorFlow). A run of one batch then never pays for a trace it would use
once. explain/eager.py's `eager_pays` says when the command line asks for it. The numbers are the same either way up
to float32 rounding (tests/test_first_call.py compares the maps).

The results' types (BatchResult, LayerGradients) and `top_rank` live in explain/batch.py, which
the attention steps (explain/attention.py) share: the engine imports them both, neither imports
the engine.
"""

from collections import Counter

import numpy as np
from keras import ops

from gradcam_cli.explain import attention
from gradcam_cli.explain import backend as backends
from gradcam_cli.explain.batch import BatchResult, LayerGradients, numpy_rows
from gradcam_cli.explain.eager import EagerFirst
from gradcam_cli.models import graph, target_layers
from gradcam_cli.models.backprop_relus import relu_rewrite, without_activation

# What one scoring chunk's activations may take (Engine's memory_budget), and the most images a
# chunk holds however small they are (a chunk is padded to its size: a tiny model must not pad
# 3 images to a million).
MEMORY_BUDGET = 2**30
MAX_SCORING_CHUNK = 256
# A upper-graph-step row's layers above the target are counted at this many times the row's own
# activations (a pooling and a dense layer are far less; a few convolutions about that).
UPPER_BYTES_FACTOR = 4
INPUT_MODES = ("plain", "guided", "deconvnet")
# The global poolings after which ablated rows may be built pooled (_channel_pooling): images' and volumes'.
GLOBAL_POOLINGS = ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling3D")
# What a Grad-CAM-like method needs of a batch (methods.NEEDS keys): Engine.run's default.
GRADIENT_NEEDS = ("activations", "gradients")


class Engine:
    """The compiled steps of one model (a models.loading.LoadedModel) at one target layer (its
    path) for batches of `batch_size` images: `run` (activations, gradients, Hessian products,
    input gradients, as a method's needs ask), `scores` / `probabilities` / `raw_outputs` (the
    forward pass alone, the one scoring route), `upper_scores` and `upper_scores_ablated` (the
    upper graph: the layers above the target alone), `input_gradients` and `layer_gradients`;
    `padded` and `forward_objective` are the pieces a step outside the engine builds on (the
    attention steps of explain/attention.py).
    jit: compile with XLA. memory_budget: the bytes one scoring chunk's activations may take.
    Steps are built on first use and compiled once per input shape (`traces` counts them).
    eager_first: each step's first call runs uncompiled (see the module's docstring)."""

    def __init__(self, loaded, target_path, batch_size, jit=False, memory_budget=MEMORY_BUDGET, eager_first=False):
        self.loaded = loaded
        self.target_path = tuple(target_path)
        self.batch_size = int(batch_size)
        if int(memory_budget) < 1:
            raise ValueError(f"memory_budget must be a positive number of bytes. Received: {memory_budget!r}")
        self.memory_budget = int(memory_budget)
        self._jit = jit
        self.eager_first = bool(eager_first)
        self._steps = {}  # key -> compiled step, made on first use
        self._tap_orders = {}  # layer_gradients' step key -> the path of each tap
        self.traces = Counter()  # step kind -> times its forward pass was traced
        self._cut = None  # graph.Cut at the target, or the ValueError refusing it: first upper-graph step
        self._pooling = None  # _channel_pooling's answer, once asked
        self.grid = loaded.grid_of(self.target_path)  # a token layer's tokens.TokenGrid, else None

    # -- compiled steps ------------------------------------------------------------------------

    def compiled(self, key, builder, forward):
        """The step `key`, built once by `backend.builder(forward)`; its traces are counted
        under key[0]."""
        if key not in self._steps:
            def counted(*args):
                self.traces[key[0]] += 1
                return forward(*args)

            module = backends.load()
            build = getattr(module, builder)
            variables = self.loaded.model.variables
            if self.eager_first and not self._jit and module.EAGER_FIRST_CALL:
                eager = build(forward, jit=False, variables=variables, eager=True)  # no trace to count
                self._steps[key] = EagerFirst(eager, lambda: build(counted, jit=False, variables=variables))
            else:
                self._steps[key] = build(counted, jit=self._jit, variables=variables)
        return self._steps[key]

    def _rewrite(self, tap):
        """Taps the target layer's output: a token layer's as its (B, h, w, K) grid (a clip
        transformer's (B, t', h', w', K)), the prefix tokens passing on untouched (models/tokens.py)."""
        target, grid = self.target_path, self.grid

        def tap_tokens(tokens):
            return grid.to_tokens(tap(grid.to_grid(tokens)), tokens)

        def rewrite(path, layer):
            if path == target:
                tapped = tap if grid is None else tap_tokens
                return lambda *args, **kwargs: tapped(layer(*args, **kwargs))
            return self.loaded.logits_rewrite(path, layer)

        return rewrite

    def _entering(self, activations):
        """Target-layer maps (R, h, w, K) as the layers above take them (a token layer's tokens)."""
        return activations if self.grid is None else self.grid.from_grid(activations)

    def _tapped(self, objective):
        return lambda images, targets, tap: self.forward_objective(images, targets, self._rewrite(tap), objective)

    def _gradient_step(self, objective=None):
        return self.compiled(("gradients", objective), "activation_gradients", self._tapped(objective))

    def _hessian_step(self, objective=None):
        return self.compiled(("hessian", objective), "activation_hessian", self._tapped(objective))

    def _forward_only(self, images, targets, objective=None):
        """The forward pass alone at the batch size: (activations, aux)."""
        return self.compiled(("forward", objective), "forward", self._tapped(objective))(images, targets)

    def _input_step(self, mode, objective=None):
        if mode not in INPUT_MODES:
            raise ValueError(f"backprop must be one of {', '.join(INPUT_MODES)}. Received: backprop={mode!r}")
        relus = relu_rewrite(mode) if mode != "plain" else (lambda path, layer: None)

        def rewrite(path, layer):
            logits = self.loaded.logits_rewrite(path, layer)
            return logits if logits is not None else relus(path, layer)

        forward = lambda images, targets: self.forward_objective(images, targets, rewrite, objective)
        return self.compiled(("input", mode, objective), "input_gradients", forward)

    def forward_objective(self, images, targets, rewrite, objective=None):
        """The forward pass of a step (inside its trace): the model run with `rewrite` on
        `images`, each target code resolved to a class, and what is differentiated, each image's
        class score or `objective(scores, classes)`. Returns (values (B,), aux): aux holds "raw"
        (the pre-activation outputs), "classes", "objective" (the values) and the objective's
        extras. The attention steps (explain/attention.py) build theirs on it."""
        raw = self.loaded.forward(images, rewrite)
        scores = self.loaded.head.scores(raw)
        order = ops.argsort(-scores, axis=-1)
        rank = ops.maximum(-targets - 1, 0)
        ranked = ops.take_along_axis(order, ops.expand_dims(rank, -1), axis=-1)[:, 0]
        classes = ops.where(targets >= 0, targets, ops.cast(ranked, targets.dtype))
        if objective is None:
            values, extras = ops.take_along_axis(scores, ops.expand_dims(classes, -1), axis=-1)[:, 0], {}
        else:
            values, extras = objective(scores, classes)
        return values, {"raw": raw, "classes": classes, "objective": values, **extras}

    # -- batches -------------------------------------------------------------------------------

    def padded(self, images, targets, size=None):
        """(images, targets) as float32 / int32 arrays of `size` rows (default: the batch size),
        the last image repeated to fill them, so that every call has the traced shape.
        ValueError for an empty or too large batch, or a target code outside the classes."""
        size = self.batch_size if size is None else size
        count = len(images)
        if count == 0 or count > size:
            raise ValueError(f"a batch holds 1..{size} images. Received: {count}")
        images = np.asarray(images, dtype=np.float32)
        targets = np.asarray(targets, dtype=np.int32)
        classes = self.loaded.num_classes
        if (targets >= classes).any() or (targets < -classes).any():
            raise ValueError(f"targets must be class indices below {classes} or top ranks. Received: {targets}")
        if count < size:  # pad, so that every call has the traced shape
            pad = size - count
            images = np.concatenate([images, np.repeat(images[-1:], pad, axis=0)])
            targets = np.concatenate([targets, np.repeat(targets[-1:], pad)])
        return images, targets

    def _in_chunks(self, step, rows, chunk):
        """aux["raw"] of step(padded rows, targets) over any number of rows (N, ...): full chunks
        of `chunk` rows, then the rest in batches of the engine's batch size (the last padded):
        two compiled shapes at most. Returns (N, units) float32."""
        rows = np.asarray(rows, dtype=np.float32)
        chunks, start = [], 0
        while start < len(rows):
            size = chunk if len(rows) - start >= chunk else min(self.batch_size, chunk)
            part = rows[start : start + size]
            pad = size - len(part)
            padded = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)]) if pad else part
            _, aux = step(padded, np.full(size, -1, np.int32))
            chunks.append(numpy_rows(aux["raw"], len(part)))
            start += len(part)
        return np.concatenate(chunks) if chunks else np.zeros((0, self.loaded.head.num_classes), np.float32)

    @property
    def scoring_chunk(self):
        """Images per scoring call: as many as the memory budget holds activations for
        (models.precision.activation_bytes: one image's), at least 1, at most MAX_SCORING_CHUNK."""
        from gradcam_cli.models.precision import activation_bytes

        per_image = max(1, activation_bytes(self.loaded))
        return int(max(1, min(self.memory_budget // per_image, MAX_SCORING_CHUNK)))

    def raw_outputs(self, images):
        """The model's pre-activation outputs for any number of preprocessed images (N, H, W, C):
        the forward pass alone, in chunks of `scoring_chunk` images (the rest in batches of the
        batch size), no gradient. Returns (N, units) float32."""
        images = np.asarray(images, dtype=np.float32)
        classes = self.loaded.num_classes
        step = self.compiled(("scores",), "forward", self._tapped(None))
        return self._in_chunks(step, images, self.scoring_chunk) if len(images) else np.zeros((0, classes), np.float32)

    def scores(self, images):
        """Class scores (before the softmax) of preprocessed images, as `raw_outputs`: (N, C)."""
        return np.asarray(self.loaded.head.scores(self.raw_outputs(images)), dtype=np.float32)

    def probabilities(self, images):
        """Class probabilities (the model's softmax or sigmoid) of preprocessed images: (N, C)."""
        return self.loaded.head.probabilities(self.raw_outputs(images)).astype(np.float32)

    def input_gradients(self, images, targets, backprop="plain", objective=None):
        """d objective / d input for any number of preprocessed images (N, H, W, C) with one
        target code each, in chunks of the batch size (the last padded): `backprop` 'plain' (the
        true gradient), 'guided' or 'deconvnet'. Returns (gradients (N, H, W, C), objective
        values (N,)), float32. Pass explicit classes for perturbed copies of an image: a top-rank
        code is resolved on each copy."""
        images = np.asarray(images, dtype=np.float32)
        targets = np.broadcast_to(np.asarray(targets, dtype=np.int32), (len(images),))
        step = self._input_step(backprop, objective)
        gradients, values = [], []
        for start in range(0, len(images), self.batch_size):
            chunk, codes = images[start : start + self.batch_size], targets[start : start + self.batch_size]
            padded, codes = self.padded(chunk, codes)
            grads, aux = step(padded, codes)
            gradients.append(numpy_rows(grads, len(chunk)))
            values.append(numpy_rows(aux["objective"], len(chunk)))
        if not gradients:
            return np.zeros(images.shape, np.float32), np.zeros((0,), np.float32)
        return np.concatenate(gradients), np.concatenate(values)

    # -- the upper graph: the layers above the target ---------------------------------------------------------------

    def upper_cut(self):
        """The graph cut at the target layer, decided once; ValueError with the reason when the
        graph cannot be cut there (raised again on every later use)."""
        if self._cut is None:
            try:
                self._cut = target_layers.upper_cut(self.loaded, self.target_path)
            except ValueError as error:
                self._cut = error
        if isinstance(self._cut, ValueError):
            raise ValueError(str(self._cut))
        return self._cut

    def _upper_forward(self, activations, targets, tap):
        """A forward step whose "images" are target activations: only the layers above the cut
        run, with the logits rewrite, so `raw` is the model's pre-activation output."""
        activations = tap(activations)
        outputs = graph.run_above(self.loaded.model, self._cut, self._entering(activations), self.loaded.logits_rewrite)
        raw = self.loaded.chosen(outputs)
        return ops.zeros((ops.shape(activations)[0],)), {"raw": raw}

    def upper_raw_outputs(self, activations):
        """The model's pre-activation outputs computed from target-layer activations (N, h, w, K)
        by the layers above the target alone (the layers below are not computed), in chunks of
        `upper_chunk` rows (the rest in batches of the batch size), no gradient. Returns (N, units).
        ValueError when the graph cannot be cut at the target (graph.cut_above) or the
        activations do not have the target layer's shape."""
        self.upper_cut()
        activations = np.asarray(activations, dtype=np.float32)
        shape = next((info.map_shape for info in self.loaded.layers if info.path == self.target_path), None)
        rank = 1 + (len(shape) if shape is not None else 3)  # (N, h, w, K), or a volumetric layer's (N, d1, d2, d3, K)
        if activations.ndim != rank or (shape is not None and tuple(activations.shape[1:]) != tuple(shape)):
            raise ValueError(f"activations of layer {graph.path_name(self.target_path)!r} have shape (N, "
                             f"{', '.join(map(str, shape or ('h', 'w', 'K')))}). Received: {activations.shape}")
        step = self.compiled(("upper",), "forward", self._upper_forward)
        return self._in_chunks(step, activations, self.upper_chunk)

    @property
    def upper_chunk(self):
        """Rows per upper-graph-step call: as many as the memory budget holds, counting a row's layers
        above the target at UPPER_BYTES_FACTOR times its activations (at least 1, at most
        MAX_SCORING_CHUNK): Ablation-CAM's thousands of ablated copies in a few calls."""
        shape = next((info.map_shape for info in self.loaded.layers if info.path == self.target_path), None)
        per_row = 4 * UPPER_BYTES_FACTOR * int(np.prod(shape)) if shape else self.memory_budget
        return int(max(1, min(self.memory_budget // max(1, per_row), MAX_SCORING_CHUNK)))

    def _channel_pooling(self):
        """(layer, Cut at it) when the one layer right above the target is a global pooling (the
        GlobalAveragePooling2D + Dense heads of ResNet, MobileNet, DenseNet...), else None. Such a
        pooling (or a volume's GlobalAveragePooling3D...) works channel by channel and maps 0 to 0,
        so setting a channel of its input to 0 is setting that channel of its output to 0: ablated
        rows can be built after it, (R, K) instead of (R, h, w, K), and exactly the same scores come
        out."""
        if self._pooling is None:
            self._pooling = False
            cut = self.upper_cut()
            infos = self.loaded.layers
            index = [info.path for info in infos].index(self.target_path)
            following = [info for info in infos[index + 1 :] if not graph.is_model(info.layer)][:1]
            if following and type(following[0].layer).__name__ in GLOBAL_POOLINGS:
                pooling = following[0]
                try:
                    above = graph.cut_above(self.loaded.model, pooling.path, self.loaded.output)
                except ValueError:
                    above = None
                between = set(cut.above) - set(above.above) - {pooling.path} if above is not None else {None}
                if above is not None and not between:
                    self._pooling = (pooling.layer, above)
        return self._pooling or None

    def _upper_ablated_forward(self, activations, codes, tap, cut=None):
        """The upper-graph step of rows built inside the step: row r is the activations of image
        codes[r] // (K + 1) with channel codes[r] % (K + 1) - 1 set to 0 (-1: none). `cut`: where
        the rows enter (default: at the target; a global pooling's Cut for pooled rows)."""
        channels = int(activations.shape[-1])
        owners, ablated = codes // (channels + 1), codes % (channels + 1) - 1
        keep = 1.0 - ops.one_hot(ablated, channels, dtype=activations.dtype)  # -1: all ones
        shape = (-1,) + (1,) * (len(activations.shape) - 2) + (channels,)
        rows = tap(ops.take(activations, owners, axis=0) * ops.reshape(keep, shape))
        entering = rows if cut is not None else self._entering(rows)
        outputs = graph.run_above(self.loaded.model, cut or self._cut, entering, self.loaded.logits_rewrite)
        return ops.zeros((ops.shape(rows)[0],)), {"raw": self.loaded.chosen(outputs)}

    def upper_scores_ablated(self, activations, images, channels):
        """Class scores (before the softmax) of rows of target-layer activations with one channel
        set to 0: row r is activations[images[r]] with channel channels[r] zeroed (-1: none).
        The copies are made inside the compiled upper-graph step (no host copies), in chunks of
        `upper_chunk` rows over groups of batch-size images. activations (B, h, w, K), or a 3-D
        layer's (B, d1, d2, d3, K) (a channel's whole grid zeroed). Returns (R, C) float32."""
        self.upper_cut()
        activations = np.asarray(activations, dtype=np.float32)
        images, channels = np.asarray(images, dtype=np.int64), np.asarray(channels, dtype=np.int64)
        pooling = self._channel_pooling()
        if pooling is not None:  # ablate after the pooling: the same scores, h w times less to copy
            layer, cut = pooling
            activations = numpy_rows(layer(activations), len(activations))
            forward = lambda rows, codes, tap: self._upper_ablated_forward(rows, codes, tap, cut)
            step = self.compiled(("upper-ablated", "pooled"), "forward", forward)
        else:
            step = self.compiled(("upper-ablated",), "forward", self._upper_ablated_forward)
        size, rows, K = self.batch_size, self.upper_chunk, activations.shape[-1]
        out = np.zeros((len(images), self.loaded.head.num_classes), np.float32)
        for first in range(0, len(activations), size):
            group = activations[first : first + size]
            padded = np.concatenate([group, np.repeat(group[-1:], size - len(group), axis=0)]) if len(group) < size else group
            picked = np.flatnonzero((images >= first) & (images < first + size))
            for start in range(0, len(picked), rows):
                part = picked[start : start + rows]
                codes = (images[part] - first) * (K + 1) + channels[part] + 1
                codes = np.concatenate([codes, np.repeat(codes[-1:], rows - len(part))]).astype(np.int32)
                _, aux = step(padded, codes)
                raw = numpy_rows(aux["raw"], len(part))
                out[part] = np.asarray(self.loaded.head.scores(raw), dtype=np.float32)
        return out

    def upper_scores(self, activations):
        """Class scores (before the softmax, as `scores`) from target-layer activations
        (N, h, w, K), e.g. with channels masked (Ablation-CAM): `upper_raw_outputs`. (N, C)."""
        return np.asarray(self.loaded.head.scores(self.upper_raw_outputs(activations)), dtype=np.float32)


    # -- gradients at any layers -----------------------------------------------------------------

    def _layer_rewrite(self, paths, tap, pre_activation):
        """A rewrite passing the outputs of the layers at `paths` through `tap` (before a fused
        activation with `pre_activation`; the classifier's logits for the output layer)."""
        wanted, views = frozenset(paths), {}

        def rewrite(path, layer):
            logits = self.loaded.logits_rewrite(path, layer)
            if path not in wanted:
                return logits
            if logits is not None:  # the output layer: its logits are its pre-activation output
                return lambda *args, **kwargs: tap(path, logits(*args, **kwargs))
            activation = getattr(layer, "activation", None)
            if pre_activation and activation is not None and getattr(activation, "__name__", None) != "linear":
                if path not in views:
                    views[path] = without_activation(layer)
                view = views[path]
                return lambda *args, **kwargs: activation(tap(path, view(*args, **kwargs)))
            return lambda *args, **kwargs: tap(path, layer(*args, **kwargs))

        return rewrite

    def layer_gradients(self, images, targets, paths, pre_activation=True, objective=None):
        """d objective / d input and d objective / d the output of each layer at `paths` (a
        layer of a nested model by its full path), for a batch (n <= batch_size) of preprocessed
        images; with `pre_activation`, a layer's output before its fused activation (z = W x + b
        of a Conv2D(activation='relu')). One compiled step per set of paths. Returns
        LayerGradients; a layer called twice appears twice, in call order."""
        paths = tuple(dict.fromkeys(tuple(path) for path in paths))
        known = {info.path: info.layer for info in self.loaded.layers}
        for path in paths:
            if path not in known:
                raise ValueError(f"no layer {graph.path_name(path)!r} in {self.loaded.name}")
            if graph.is_model(known[path]):
                raise ValueError(f"{graph.path_name(path)!r} is a nested model: name one of its layers")
        key = ("layers", paths, bool(pre_activation), objective)
        order = self._tap_orders.setdefault(key, [])  # each tap's path, in call order (every trace alike)

        def forward(images, targets, tap):
            del order[:]

            def tapped(path, tensor):
                order.append(path)
                return tap(tensor)

            return self.forward_objective(images, targets, self._layer_rewrite(paths, tapped, pre_activation), objective)

        step = self.compiled(key, "tapped_gradients", forward)
        count = len(images)
        padded, codes = self.padded(images, targets)
        input_gradients, gradients, aux = step(padded, codes)
        return LayerGradients(
            input_gradients=numpy_rows(input_gradients, count),
            layers=[(path, numpy_rows(g, count)) for path, g in zip(list(order), gradients)],
            classes=ops.convert_to_numpy(aux["classes"])[:count].astype(np.int64),
            raw_outputs=numpy_rows(aux["raw"], count),
        )

    # -- a batch ---------------------------------------------------------------------------------

    def run(self, images, targets, needs=GRADIENT_NEEDS, backprop=None, objective=None):
        """Explain a batch: `images` (n <= batch_size, H, W, C) preprocessed float32, `targets`
        (n,) target codes. `needs`: what the method needs (methods.NEEDS keys), read here:
        "gradients" the target layer's gradients (without it, the forward pass alone: the
        result's gradients are None), "hessian" the Hessian-vector product H A at the target
        layer too (Shapley-CAM), "input-gradients" the input gradients through the ReLUs the
        `backprop` way ('guided' or 'deconvnet'; 'plain' for the true gradient). `objective`:
        what is differentiated (None: the class score; see the module's docstring). Returns a
        BatchResult for the n images."""
        needs = frozenset(needs)
        if "block-attention-gradients" in needs:
            return attention.block_attention_batch(self, images, targets)
        if "attention" in needs:
            return attention.attention_batch(self, images, targets, "attention-gradients" in needs, objective)
        if "input-gradients" in needs and backprop is None:
            raise ValueError("input gradients need backprop='plain', 'guided' or 'deconvnet'")
        hessian, gradients = "hessian" in needs, "gradients" in needs
        count = len(images)
        images, targets = self.padded(images, targets)
        products = None
        if hessian:
            activations, gradients, products, aux = self._hessian_step(objective)(images, targets)
        elif gradients or backprop is not None:
            activations, gradients, aux = self._gradient_step(objective)(images, targets)
        else:
            (activations, aux), gradients = self._forward_only(images, targets, objective), None
        classes = ops.convert_to_numpy(aux["classes"]).astype(np.int32)
        input_gradients = None
        if backprop is not None:
            input_gradients, _ = self._input_step(backprop, objective)(images, classes)
            input_gradients = numpy_rows(input_gradients, count)
        compared = aux.get("compared")
        return BatchResult(
            activations=numpy_rows(activations, count),
            gradients=None if gradients is None else numpy_rows(gradients, count),
            raw_outputs=numpy_rows(aux["raw"], count),
            classes=classes[:count].astype(np.int64),
            input_gradients=input_gradients,
            inputs=images[:count],
            engine=self,
            hessian_products=None if products is None else numpy_rows(products, count),
            compared=None if compared is None else ops.convert_to_numpy(compared)[:count].astype(np.int64),
        )
