"""The one place that knows which Keras backend computes gradients.

Everything else (methods, engine, models) uses keras.ops and numpy. A backend module provides:

    activation_gradients(forward, jit, variables) -> step(images, targets) -> (activations, gradients, aux)

where `forward(images, targets, tap)` runs the model, passes the target layer's output
through `tap` and returns (objective per sample, aux dict). The step returns the tapped
activations, d(sum of objectives)/d(activations), and aux, as backend tensors.

    input_gradients(forward, jit, variables) -> step(images, targets) -> (gradients, aux)

`variables` are the model's: backends that trace stateless functions (JAX) pass their values in.

    forward(forward, jit, variables) -> step(images, targets) -> (activations, aux)

the same forward pass with no gradient at all (gradient-free methods, scoring extra inputs).

where `forward(images, targets)` returns (objective per sample, aux dict); the step returns
d(sum of objectives)/d(images) and aux. Custom gradients (guided ReLUs) are written with
keras.ops.custom_gradient in the forward pass, so they need nothing here.
"""

import keras


def load():
    name = keras.backend.backend()
    if name == "tensorflow":
        from gradcam_cli.backend import tensorflow as module
    elif name == "jax":
        from gradcam_cli.backend import jax as module
    else:
        raise NotImplementedError(
            f"the {name!r} Keras backend is not supported; set KERAS_BACKEND=tensorflow or jax"
        )
    return module
