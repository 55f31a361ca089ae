"""Write small example model files for the README's "Your own models" section into FOLDER.

    python scripts/make_example_models.py examples/

Each is untrained, its weights drawn from a seeded generator (every run writes the same files),
and built for one option of `gradcam`:

    gray.keras         64x64x1 input: a 1-channel model, given the image's luminance
    custom.keras       64x64x3 with a custom layer (ScaledReLU, scripts/example_layers.py):
                       loads only with --import scripts/example_layers.py
    two_outputs.keras  64x64x3, one convolutional trunk, two outputs: "classes" (4 softmax
                       probabilities) and "aux" (one number); needs --output classes
    augmented.keras    RandomFlip and RandomRotation layers at its start: they run in inference
                       mode (do nothing), so every run gives the same map
    binary.keras       64x64x3, one sigmoid unit: --class 0 or --class 1
    free_size.keras    input (None, None, 3): takes any size, so --input-size says which
    labels.txt         names for the 3-class models' classes: --labels

A few seconds on a CPU; prints each path written.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np

from gradcam_cli.explain.runtime import import_keras

keras = import_keras(device="cpu")
layers = keras.layers

SIZE = 64


def import_file(path):
    """Import a .py file by its path, as `gradcam --import FILE.py` does."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example_layers = import_file(Path(__file__).resolve().parent / "example_layers.py")


def seed_weights(model, seed):
    """He-normal kernels from numpy's generator `seed` (about half the ReLUs fire, so the maps
    are not flat), zero biases. The files take raw 0..255 pixels (--preprocess none, the default
    for model files), so the first convolution's kernel is divided by 255: scores near 1, not
    near 100, and the softmax does not saturate."""
    rng = np.random.default_rng(seed)
    pixel_scale = 1 / 255
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.Dense)):
            kernel, bias = layer.get_weights()
            fan_in = int(np.prod(kernel.shape[:-1]))
            kernel = rng.normal(0, np.sqrt(2 / fan_in), kernel.shape) * pixel_scale
            layer.set_weights([kernel.astype("float32"), np.zeros_like(bias)])
            pixel_scale = 1
    return model


def conv_trunk(x):
    """conv1 -> pool1 -> conv2: conv2 (32x32) is the default target layer."""
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    return layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)


def gap_classifier(inputs, features, units, activation, name):
    x = layers.GlobalAveragePooling2D(name="gap")(features)
    outputs = layers.Dense(units, activation=activation, name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def gray():
    inputs = keras.Input((SIZE, SIZE, 1), name="luminance")
    return gap_classifier(inputs, conv_trunk(inputs), 3, "softmax", "gray")


def custom():
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = example_layers.ScaledReLU(scale=0.5, name="conv1_scaled_relu")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(16, 3, padding="same", name="conv2")(x)
    x = example_layers.ScaledReLU(scale=0.5, name="conv2_scaled_relu")(x)
    return gap_classifier(inputs, x, 3, "softmax", "custom")


def two_outputs():
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = layers.GlobalAveragePooling2D(name="gap")(conv_trunk(inputs))
    # A list, not a dict: Keras orders a dict's outputs by key, which would make "aux" output 0
    outputs = [layers.Dense(4, activation="softmax", name="classes")(x), layers.Dense(1, name="aux")(x)]
    return keras.Model(inputs, outputs, name="two_outputs")


def augmented():
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = layers.RandomFlip("horizontal", name="flip")(inputs)
    x = layers.RandomRotation(0.2, name="rotate")(x)
    return gap_classifier(inputs, conv_trunk(x), 3, "softmax", "augmented")


def binary():
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    return gap_classifier(inputs, conv_trunk(inputs), 1, "sigmoid", "binary")


def free_size():
    inputs = keras.Input((None, None, 3), name="image")
    return gap_classifier(inputs, conv_trunk(inputs), 3, "softmax", "free_size")


BUILDERS = {"gray": gray, "custom": custom, "two_outputs": two_outputs, "augmented": augmented,
            "binary": binary, "free_size": free_size}
LABELS = ("apple", "banana", "cherry")  # any three names: the models are untrained


def main(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (name, build) in enumerate(BUILDERS.items()):
        path = folder / f"{name}.keras"
        seed_weights(build(), seed).save(path)
        print(path, flush=True)
    labels_path = folder / "labels.txt"
    labels_path.write_text("\n".join(LABELS) + "\n")
    print(labels_path)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
