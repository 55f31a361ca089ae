"""--precision: computing a model's convolutional trunk in mixed bfloat16, and what one image's
activations take in memory (batches of dilated copies and scoring chunks are sized by it)."""

import math

import keras

from gradcam_cli.errors import ModelError
from gradcam_cli.models import graph

# --precision: name -> (Keras dtype policy of the convolutional trunk, bytes per activation).
# cli/options.py spells the names out (it must not import Keras to build --help); a test ties them.
PRECISIONS = {"float32": ("float32", 4), "mixed-bfloat16": ("mixed_bfloat16", 2)}


def activation_bytes(loaded):
    """Bytes of one image's spatial and token activations: what a forward pass holds per image (a
    nested model's output is its last layer's, counted once)."""
    total = 0
    for info in loaded.layers:
        if info.mappable and not graph.is_model(info.layer):
            total += math.prod(info.shape) * PRECISIONS[loaded.precision][1]
    return total



# What one batch of volumes (scans, clips) may hold in activations: batches are cut to fit, and
# the engine pads a short batch to the batch size, so a scan given alone would otherwise cost 16
# forward passes of its size (keras.io's CT network holds about 0.6 GB per 128x128x64 scan).
VOLUME_MEMORY_BUDGET = 2 * 2**30


def fitting_batch(loaded, requested, budget):
    """The largest batch size up to `requested` whose activations (activation_bytes) fit `budget` bytes."""
    return max(1, min(int(requested), int(budget // max(1, activation_bytes(loaded)))))


def set_precision(loaded, precision):
    """Compute `loaded`'s convolutional trunk in `precision` and return `loaded`.

    'mixed-bfloat16': every layer with a spatial output (convolutions, poolings, activations,
    also inside nested models) computes in bfloat16 on its float32 weights, cast on use (Keras's
    mixed_bfloat16 policy). The head (from the first non-spatial layer on: global pooling,
    Flatten, Dense) stays float32, so class scores and their ranking keep full precision; the
    engine returns activations and gradients as float32 either way.
    """
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}: choose from {', '.join(PRECISIONS)}")
    if precision != loaded.precision:
        policy = keras.DTypePolicy(PRECISIONS[precision][0])
        for info in loaded.layers:
            if info.mappable and not graph.is_model(info.layer):
                info.layer.dtype_policy = policy
        loaded.precision = precision
    return loaded
