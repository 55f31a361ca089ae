"""The one place that knows which Keras backend computes gradients.

Everything else (methods, engine, models) uses keras.ops and numpy. A backend module provides
five step builders, each `builder(forward, jit, variables) -> step`; `variables` are the model's
(backends that trace stateless functions, JAX, pass their values in). A step is compiled once
per input shape and returns backend tensors.

`forward(images, targets, tap)` runs the model and returns (objective per sample, aux dict);
it passes the tensors to differentiate through `tap` (the target layer's output: once; the
bias layers' outputs for `tapped_gradients`: any number, in call order, the same on every
trace). `targets` is passed through untouched.

    activation_gradients -> step(images, targets) -> (activations, gradients, aux)

the last tapped tensor A and d(sum of objectives)/dA.

    activation_hessian -> step(images, targets) -> (activations, gradients, hessian_products, aux)

the same, and the Hessian-vector product H A = d/dA (dS/dA . A) with A held fixed as the
vector: sum_m (d^2 S / dA_l dA_m) A_m (Shapley-CAM). Double tape on TensorFlow,
forward-over-reverse (jax.linearize of jax.grad) on JAX.

    input_gradients -> step(images, targets) -> (gradients, aux)

where `forward(images, targets)` takes no tap: d(sum of objectives)/d(images).

    tapped_gradients -> step(images, targets) -> (input_gradients, [gradients per tap], aux)

d(sum of objectives)/d(images) and d/d(each tapped tensor) (FullGrad's bias-gradients).

    forward -> step(images, targets) -> (activations, aux)

the same forward pass with no gradient at all (gradient-free methods, scoring extra inputs).

A backend module also says, in EAGER_FIRST_CALL, whether a step's first call may run uncompiled
(its builders then take eager=True and return the plain Python step): true on TensorFlow, where
a deep model's trace costs more than one op-by-op call; false on JAX (explain/eager.py's
EagerFirst and eager_pays say when it is used).

Custom gradients (guided ReLUs) are written with keras.ops.custom_gradient in the forward pass,
so they need nothing here. A gradient that does not depend on a tapped tensor is zeros.
"""

import keras


def load():
    name = keras.backend.backend()
    if name == "tensorflow":
        from gradcam_cli.explain.backend import tensorflow as module
    elif name == "jax":
        from gradcam_cli.explain.backend import jax as module
    else:
        raise NotImplementedError(
            f"the {name!r} Keras backend is not supported; set KERAS_BACKEND=tensorflow or jax"
        )
    return module
