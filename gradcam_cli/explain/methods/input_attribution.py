"""Pixel attributions from plain input gradients: SmoothGrad and Integrated Gradients. Both
differentiate the class score before the softmax with respect to the preprocessed input, through
the model's own ReLUs (the engine's 'plain' input step, no guided rewrite), and send all their
perturbed inputs through that one compiled step in chunks of the engine's batch size (image
after image, the last chunk padded), never one call per copy.

SmoothGrad (Smilkov, Thorat, Kim, Viegas and Wattenberg, "SmoothGrad: removing noise by adding
noise", 2017), Eq. 3:

    M(x) = 1/n sum_{i=1..n} grad_x S_c(x + e_i),   e_i ~ N(0, sigma^2),   sigma = noise (max x - min x)

- noise = sigma / (x_max - x_min), the paper's noise level (10-20% works best there; 0.15 by
  default), with x_max and x_min taken over the image's own preprocessed pixels and channels;
  n = 50 samples by default (the paper's).
- Noise is drawn per image from numpy's default generator seeded by (seed, a digest of the
  image's bytes): the same image gets the same noise wherever it is, in a batch or alone, so a
  batch gives the maps of its images one by one and a run is reproducible for a fixed seed.
  (Seeding by batch position would make an image's map depend on its batch mates' count.)
- The map for display is the largest magnitude over the colour channels (Simonyan et al. 2014,
  as maps.saliency).

Integrated Gradients (Sundararajan, Taly and Yan, "Axiomatic Attribution for Deep Networks",
ICML 2017), Eq. 1 and its Riemann approximation (Eq. 3):

    IG_i(x) = (x_i - x'_i) integral_0^1 dS_c(x' + a (x - x')) / dx_i da
            ~ (x_i - x'_i) sum_k w_k dS_c(x' + a_k (x - x')) / dx_i

- The rule: trapezoidal by default, a_k = k/m for k = 0..m with weights 1/m, halved at both
  ends (m + 1 gradients; error O(1/m^2) on a smooth path, where the paper's right Riemann sum,
  k = 1..m, is O(1/m)); 'right' and 'left' are there too. m = 32 steps by default.
- The baseline x': zeros in the model's input (preprocessed) space by default, as Score-CAM's
  zero input: black under 'none'/'unit' preprocessing, mid-grey under 'tf', the mean colour under
  caffe/torch. Attributions are the same in RGB space up to the channel order (each channel is
  affine: the scale of (x - x') and of the gradient cancel).
- Completeness (the paper's Prop. 1): sum_i IG_i(x) = S_c(x) - S_c(x'). The residual
  sum_i IG_i - (S_c(x) - S_c(x')) is returned per image, for the JSON record: it measures the
  integration error (it shrinks as steps grow) and is 0 for a model linear in its input.
  S_c(x) and S_c(x') come from the same compiled step (the rule's end points; a rule without
  one computes it with weight 0).
- The map for display is the sum of the attributions over the colour channels (signed: the
  final ReLU keeps the evidence for the class), so map.sum() - residual = S_c(x) - S_c(x').

Other implementations: docs/methods.md#smoothgrad, docs/methods.md#integrated-gradients.
"""

import hashlib

import numpy as np

DEFAULT_SAMPLES = 50
DEFAULT_NOISE = 0.15
DEFAULT_STEPS = 32
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
    if inputs.ndim != 4 or len(classes) != len(inputs):
        raise ValueError(f"inputs (B, H, W, C) need one class each. Received: inputs {inputs.shape}, "
                         f"classes {classes.shape}")
    if (classes < 0).any():
        raise ValueError(f"classes must be class indices (the engine's result.classes). Received: {classes}")
    return inputs, classes


def smoothgrad(engine, inputs, classes, samples=DEFAULT_SAMPLES, noise=DEFAULT_NOISE, seed=0, backprop="plain"):
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


def integrated_gradients(engine, inputs, classes, steps=DEFAULT_STEPS, baseline=None, rule="trapezoid"):
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
    residuals = attributions.sum(axis=(1, 2, 3)) - gaps
    return attributions.astype(np.float32), residuals


def smoothgrad_map(result, context=None, samples=DEFAULT_SAMPLES, noise=DEFAULT_NOISE, seed=0):
    """(B, H, W): the largest magnitude over colours of the SmoothGrad of an engine.BatchResult's
    inputs and classes, at the input's resolution."""
    gradients = smoothgrad(result.engine, result.inputs, result.classes, samples, noise, seed)
    return np.abs(gradients).max(axis=-1)


def smoothgrad_method_map(result, context):
    """The registry's smoothgrad: smoothgrad_map with the context's samples and noise."""
    return smoothgrad_map(result, samples=context.options.get("samples") or DEFAULT_SAMPLES,
                          noise=context.options.get("noise", DEFAULT_NOISE))


def integrated_gradients_method_map(result, context):
    """The registry's integrated-gradients: the map (attributions summed over colours) and, per
    image, the completeness residual sum(attributions) - (S_c(x) - S_c(x')) for its record."""
    steps = context.options.get("steps", DEFAULT_STEPS)
    attributions, residuals = integrated_gradients(result.engine, result.inputs, result.classes, steps)
    details = [{"completeness_residual": float(r), "steps": int(steps), "baseline": "zero"}
               for r in residuals]
    return attributions.sum(axis=-1), details
