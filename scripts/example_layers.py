"""A custom Keras layer for the README's examples: `custom.keras` (made by
scripts/make_example_models.py) uses it, so loading that file needs

    gradcam IMAGE --model examples/custom.keras --import scripts/example_layers.py

Registered as "examples>ScaledReLU": the saved file names the class by that key, which
this module's import puts into Keras's registry.
"""

import keras


@keras.saving.register_keras_serializable(package="examples")
class ScaledReLU(keras.layers.Layer):
    """relu(x) * scale, with a fixed scale (no weights)."""

    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs):
        return keras.ops.relu(inputs) * self.scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}
