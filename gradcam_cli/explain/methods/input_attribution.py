"""Pixel attributions from plain input gradients, shared by SmoothGrad (smoothgrad.py; guided.py
and deconvnet.py smooth their gradients with it) and Integrated Gradients (integrated_gradients.py).
Both differentiate the class score before the softmax with respect to the preprocessed input and
send all their perturbed inputs through one compiled engine step in chunks of its batch size
(image after image, the last chunk padded), never one call per copy.

Noise is drawn per image from numpy's default generator seeded by (seed, a digest of the image's
bytes): an image gets the same noise in a batch or alone. Integrated Gradients sums the gradients
by a Riemann rule (trapezoid by default, O(1/m^2)) from a zero input in the model's input space.
Open choices: docs/methods.md#smoothgrad, docs/methods.md#integrated-gradients.

Volumes: the inputs are (B, D1, D2, D3, C) and everything above runs on them as it is: the noise
is drawn per voxel and channel, sigma from the volume's own range, and the completeness residual
sums over every voxel and channel.
"""

import hashlib

import numpy as np

from gradcam_cli.explain.methods.options import NOISE

RULES = ("trapezoid", "right", "left")


def _whole(value, name, least=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name} must be a whole number, {least} or more. Received: {name}={value!r}")
    return int(value)


def image_rng(image, seed):
    """The noise generator of one image: numpy's default generator seeded by `seed` and a digest
    of the image's float32 bytes."""
    digest = hashlib.blake2b(np.ascontiguousarray(image, dtype=np.float32).tobytes(), digest_size=8).digest()
    return np.random.default_rng([_whole(seed, "seed", 0), int.from_bytes(digest, "little")])


def _gradient_sums(engine, inputs, classes, rows, backprop="plain"):
    """sum_rows weight * d S_c / d input per image, and the objective at each row with a key.

    rows: an iterator of (image index, key or None, weight, input (H, W, C)), image after image;
    they go to engine.input_gradients in chunks of its batch size. Returns ((B, H, W, C) float64,
    {(image index, key): S_c})."""
    sums = np.zeros(inputs.shape, dtype=np.float64)
    values = {}
    chunk = []

    def flush():
        gradients, scores = engine.input_gradients(np.stack([row[3] for row in chunk]),
                                                   np.array([classes[row[0]] for row in chunk]), backprop)
        for (i, key, weight, _), gradient, score in zip(chunk, gradients, scores):
            if weight:
                sums[i] += weight * gradient.astype(np.float64)
            if key is not None:
                values[(i, key)] = float(score)
        chunk.clear()

    for row in rows:
        chunk.append(row)
        if len(chunk) == engine.batch_size:
            flush()
    if chunk:
        flush()
    return sums, values


def _prepared(inputs, classes):
    inputs = np.asarray(inputs, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if inputs.ndim not in (4, 5) or len(classes) != len(inputs):
        raise ValueError(f"inputs (B, H, W, C) or volumes (B, D1, D2, D3, C) need one class each. Received: inputs "
                         f"{inputs.shape}, "
                         f"classes {classes.shape}")
    if (classes < 0).any():
        raise ValueError(f"classes must be class indices (the engine's result.classes). Received: {classes}")
    return inputs, classes


def smoothgrad(engine, inputs, classes, samples, noise=NOISE.default, seed=0, backprop="plain"):
    """SmoothGrad, the mean input gradient of the class score over `samples` noisy copies of each
    image: (B, H, W, C) float32 in the model's input space. inputs (B, H, W, C) preprocessed;
    classes (B,) class indices; noise: sigma / (max - min) of each image; seed: see the module;
    backprop: 'plain', or 'guided' / 'deconvnet' to smooth those gradients (`guided --smoothgrad`)."""
    inputs, classes = _prepared(inputs, classes)
    samples = _whole(samples, "samples")
    noise = float(noise)
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a non-negative fraction of the input range. Received: noise={noise!r}")

    def rows():
        for i, image in enumerate(inputs):
            rng = image_rng(image, seed)
            sigma = np.float32(noise * (float(image.max()) - float(image.min())))
            for _ in range(samples):
                copy = image + sigma * rng.standard_normal(image.shape, dtype=np.float32) if sigma > 0 else image
                yield i, None, 1.0 / samples, copy

    sums, _ = _gradient_sums(engine, inputs, classes, rows(), backprop)
    return sums.astype(np.float32)


def riemann_nodes(steps, rule="trapezoid"):
    """(alphas, weights) of the rule over [0, 1] with `steps` intervals; the weights sum to 1."""
    steps = _whole(steps, "steps")
    if rule == "trapezoid":
        alphas = np.arange(steps + 1) / steps
        weights = np.full(steps + 1, 1.0 / steps)
        weights[[0, -1]] /= 2
    elif rule == "right":
        alphas, weights = np.arange(1, steps + 1) / steps, np.full(steps, 1.0 / steps)
    elif rule == "left":
        alphas, weights = np.arange(steps) / steps, np.full(steps, 1.0 / steps)
    else:
        raise ValueError(f"rule must be one of {', '.join(RULES)}. Received: rule={rule!r}")
    return alphas, weights


def integrated_gradients(engine, inputs, classes, steps, baseline=None, rule="trapezoid"):
    """Integrated Gradients of the class score from `baseline` (None: zeros in the model's input
    space; else broadcastable to the inputs) to each image. Returns (attributions (B, H, W, C)
    float32, completeness residuals (B,) float64: sum(attributions) - (S_c(x) - S_c(x')))."""
    inputs, classes = _prepared(inputs, classes)
    baselines = np.broadcast_to(np.zeros((), np.float32) if baseline is None
                                else np.asarray(baseline, dtype=np.float32), inputs.shape)
    alphas, weights = riemann_nodes(steps, rule)
    nodes = list(zip(alphas.tolist(), weights.tolist()))
    nodes += [(end, 0.0) for end in (0.0, 1.0) if end not in alphas.tolist()]  # S_c at both ends

    def rows():
        for i, (image, start) in enumerate(zip(inputs, baselines)):
            difference = image - start
            for alpha, weight in nodes:
                key = alpha if alpha in (0.0, 1.0) else None
                point = image if alpha == 1.0 else start + np.float32(alpha) * difference
                yield i, key, weight, point

    sums, values = _gradient_sums(engine, inputs, classes, rows())
    attributions = (inputs.astype(np.float64) - baselines) * sums
    gaps = np.array([values[(i, 1.0)] - values[(i, 0.0)] for i in range(len(inputs))])
    residuals = attributions.sum(axis=tuple(range(1, inputs.ndim))) - gaps
    return attributions.astype(np.float32), residuals
