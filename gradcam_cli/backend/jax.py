"""Gradients on the JAX backend: jax.grad over a stateless call, compiled with jax.jit.

The model's variables are passed in as arguments (keras.StatelessScope maps each variable to its
value while the forward pass is traced), so the compiled step does not bake the weights in as
constants. The target layer's activations get their gradient through the tap: it adds a zero
array `delta` to them, and the gradient with respect to `delta` is the gradient with respect to
the activations. Guided ReLUs need nothing here: they are keras.ops.custom_gradient calls.
"""

import jax
import jax.numpy as jnp
import keras


def _values(variables):
    return [variable.value for variable in variables]


def _tapped_call(forward, variables, values, images, targets, delta=None):
    """forward(images, targets, tap) under the variables' `values`, the target layer's output
    passed through the tap (plus `delta`, whose gradient is the activations' gradient).
    Returns (objective, aux, tapped activations)."""
    tapped = []

    def tap(activations):
        if delta is not None:
            activations = activations + delta
        tapped.append(activations)
        return activations

    with keras.StatelessScope(state_mapping=list(zip(variables, values))):
        scores, aux = forward(images, targets, tap)
    if not tapped:
        raise ValueError("the target layer was not reached by the forward pass")
    return scores, aux, tapped[-1]


def activation_gradients(forward, jit=False, variables=()):
    variables = list(variables)

    def objective(delta, values, images, targets):
        scores, aux, activations = _tapped_call(forward, variables, values, images, targets, delta)
        return jnp.sum(scores), (activations, aux)

    gradient = jax.jit(jax.grad(objective, has_aux=True))
    shapes = {}

    def step(images, targets):
        values = _values(variables)
        images, targets = jnp.asarray(images), jnp.asarray(targets)
        key = (images.shape, images.dtype)
        if key not in shapes:  # the tapped activations' shape, by abstract evaluation (no compute)
            zero = jax.ShapeDtypeStruct((), images.dtype)
            _, (tapped, _) = jax.eval_shape(objective, zero, values, images, targets)
            shapes[key] = tapped
        delta = jnp.zeros(shapes[key].shape, shapes[key].dtype)
        gradients, (activations, aux) = gradient(delta, values, images, targets)
        return activations, gradients, aux

    return step


def input_gradients(forward, jit=False, variables=()):
    variables = list(variables)

    def objective(images, values, targets):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            scores, aux = forward(images, targets)
        return jnp.sum(scores), aux

    gradient = jax.jit(jax.grad(objective, has_aux=True))

    def step(images, targets):
        return gradient(jnp.asarray(images), _values(variables), jnp.asarray(targets))

    return step


def forward(forward, jit=False, variables=()):
    """The forward pass alone, compiled: (images, targets) -> (tapped activations, aux)."""
    variables = list(variables)

    def run(values, images, targets):
        _, aux, activations = _tapped_call(forward, variables, values, images, targets)
        return activations, aux

    compiled = jax.jit(run)

    def step(images, targets):
        return compiled(_values(variables), jnp.asarray(images), jnp.asarray(targets))

    return step
