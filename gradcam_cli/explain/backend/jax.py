"""Gradients on the JAX backend: jax.grad over a stateless call, compiled with jax.jit.

The model's variables are passed in as arguments (keras.StatelessScope maps each variable to its
value while the forward pass is traced), so the compiled step does not bake the weights in as
constants. A tapped tensor gets its gradient through the tap: it adds a zero array `delta` to
it, and the gradient with respect to `delta` is the gradient with respect to the tensor (and
the Hessian with respect to `delta` its Hessian). The deltas' shapes are found once per input
shape by abstract evaluation (jax.eval_shape: no compute). Guided ReLUs need nothing here: they
are keras.ops.custom_gradient calls.
"""

import jax
import jax.numpy as jnp
import keras

# Never run a step uncompiled first: op by op (jax_disable_jit), ResNet50's first gradient step took
# 5.3-9.2 s against jax.jit's 3.0-4.0 s on 2 cores, as each primitive is compiled on its own.
EAGER_FIRST_CALL = False


def _values(variables):
    return [variable.value for variable in variables]


def _tapped_call(forward, variables, values, images, targets, deltas=None):
    """forward(images, targets, tap) under the variables' `values`, each tapped tensor plus its
    delta (`deltas`: a list, one per tap in call order; one array, added to every tap (the
    target layer's); None: nothing added). Returns (objective, aux, [tapped tensors])."""
    tapped = []

    def tap(tensor):
        if isinstance(deltas, list):
            tensor = tensor + deltas[len(tapped)]
        elif deltas is not None:
            tensor = tensor + deltas
        tapped.append(tensor)
        return tensor

    with keras.StatelessScope(state_mapping=list(zip(variables, values))):
        scores, aux = forward(images, targets, tap)
    return scores, aux, tapped


def _last(tapped):
    if not tapped:
        raise ValueError("the target layer was not reached by the forward pass")
    return tapped[-1]


class _Deltas:
    """Zero deltas for the taps of a forward pass, their shapes found once per input shape."""

    def __init__(self, forward, variables, last_only):
        self.forward, self.variables, self.last_only = forward, variables, last_only
        self.shapes = {}

    def __call__(self, values, images, targets):
        key = (images.shape, images.dtype)
        if key not in self.shapes:
            def taps(values, images, targets):
                tapped = _tapped_call(self.forward, self.variables, values, images, targets)[2]
                return _last(tapped) if self.last_only else tapped

            self.shapes[key] = jax.eval_shape(taps, values, images, targets)
        return jax.tree.map(lambda shape: jnp.zeros(shape.shape, shape.dtype), self.shapes[key])


def activation_gradients(forward, jit=False, variables=()):
    variables = list(variables)

    def objective(delta, values, images, targets):
        scores, aux, tapped = _tapped_call(forward, variables, values, images, targets, delta)
        return jnp.sum(scores), (_last(tapped), aux)

    gradient = jax.jit(jax.grad(objective, has_aux=True))
    zeros = _Deltas(forward, variables, last_only=True)

    def step(images, targets):
        values = _values(variables)
        images, targets = jnp.asarray(images), jnp.asarray(targets)
        gradients, (activations, aux) = gradient(zeros(values, images, targets), values, images, targets)
        return activations, gradients, aux

    return step


def activation_hessian(forward, jit=False, variables=()):
    """Forward-over-reverse: jax.linearize of the gradient at delta = 0, its linear map applied
    to the activations, H A, in the same compiled step."""
    variables = list(variables)

    def objective(delta, values, images, targets):
        scores, aux, tapped = _tapped_call(forward, variables, values, images, targets, delta)
        return jnp.sum(scores), (_last(tapped), aux)

    gradient = jax.grad(objective, has_aux=True)

    def both(delta, values, images, targets):
        gradients, linear, (activations, aux) = jax.linearize(
            lambda d: gradient(d, values, images, targets), delta, has_aux=True)
        return activations, gradients, linear(jax.lax.stop_gradient(activations)), aux

    compiled = jax.jit(both)
    zeros = _Deltas(forward, variables, last_only=True)

    def step(images, targets):
        values = _values(variables)
        images, targets = jnp.asarray(images), jnp.asarray(targets)
        return compiled(zeros(values, images, targets), values, images, targets)

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


def tapped_gradients(forward, jit=False, variables=()):
    variables = list(variables)

    def objective(images, deltas, values, targets):
        scores, aux, _ = _tapped_call(forward, variables, values, images, targets, deltas)
        return jnp.sum(scores), aux

    gradient = jax.jit(jax.grad(objective, argnums=(0, 1), has_aux=True))
    zeros = _Deltas(forward, variables, last_only=False)

    def step(images, targets):
        values = _values(variables)
        images, targets = jnp.asarray(images), jnp.asarray(targets)
        (input_gradients, tapped), aux = gradient(images, zeros(values, images, targets), values, targets)
        return input_gradients, list(tapped), aux

    return step


def forward(forward, jit=False, variables=()):
    """The forward pass alone, compiled: (images, targets) -> (tapped activations, aux)."""
    variables = list(variables)

    def tapped_forward(values, images, targets):
        _, aux, tapped = _tapped_call(forward, variables, values, images, targets)
        return _last(tapped), aux

    compiled = jax.jit(tapped_forward)

    def step(images, targets):
        return compiled(_values(variables), jnp.asarray(images), jnp.asarray(targets))

    return step


def block_gradients(forward, jit=False, variables=()):
    """forward returns (values (B, L), aux) with L taps: the gradient of the sum of column l with
    respect to tap l alone, for each l (one pullback each of one vjp, compiled together)."""
    variables = list(variables)

    def gradients(deltas, values, images, targets):
        def totals(deltas):
            scores, aux, _ = _tapped_call(forward, variables, values, images, targets, deltas)
            return jnp.sum(scores, axis=0), aux

        sums, pullback, aux = jax.vjp(totals, deltas, has_aux=True)
        found = []
        for block in range(sums.shape[0]):
            (cotangents,) = pullback(jnp.zeros_like(sums).at[block].set(1.0))
            found.append(cotangents[block])
        return found, aux

    compiled = jax.jit(gradients)
    zeros = _Deltas(forward, variables, last_only=False)

    def step(images, targets):
        values = _values(variables)
        images, targets = jnp.asarray(images), jnp.asarray(targets)
        found, aux = compiled(zeros(values, images, targets), values, images, targets)
        return list(found), aux

    return step
