"""Gradients on the TensorFlow backend: one GradientTape per batch (two, nested, for the
Hessian-vector product), compiled with tf.function. The variables are read by the traced
function itself, so `variables` is not needed here.

Steps are traced without AutoGraph: the forward pass is Keras 3 layers and keras.ops, written to be
traced by jax.jit too, so it has no Python control flow on tensors for AutoGraph to convert, and
converting the engine's own functions took about 40% of ResNet50's first call (2 cores). AutoGraph
never converts a Keras 3 layer's call anyway: a layer that branches in Python on a tensor fails to
trace with it as without it (tests/test_first_call.py). eager=True returns the step uncompiled: the same Python function, run op by op (the
engine's first call of a one-batch run, explain/engine.py)."""

import tensorflow as tf

# The first call of a step run eagerly beats its trace on deep models (explain/eager.py's EagerFirst).
EAGER_FIRST_CALL = True


def _function(step, jit, eager):
    """`step` as a tf.function traced without AutoGraph; `step` itself when eager."""
    if eager:
        return step
    return tf.function(step, jit_compile=jit, reduce_retracing=True, autograph=False)


def _or_zeros(gradient, like):
    return tf.zeros_like(like) if gradient is None else gradient


def _tap_into(tapped, *tapes):
    """The `tap` forward() calls on the tensors it exposes: each is recorded in `tapped` and
    watched by `tapes`."""

    def tap(tensor):
        for tape in tapes:
            tape.watch(tensor)
        tapped.append(tensor)
        return tensor

    return tap


def _last(tapped):
    if not tapped:
        raise ValueError("the target layer was not reached by the forward pass")
    return tapped[-1]


def activation_gradients(forward, jit=False, variables=(), eager=False):
    def step(images, targets):
        tapped = []
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            objective, aux = forward(images, targets, _tap_into(tapped, tape))
            total = tf.reduce_sum(objective)
        activations = _last(tapped)
        # None when the class score does not depend on this layer
        return activations, _or_zeros(tape.gradient(total, activations), activations), aux

    return _function(step, jit, eager)


def activation_hessian(forward, jit=False, variables=(), eager=False):
    def step(images, targets):
        tapped = []
        with tf.GradientTape(watch_accessed_variables=False) as outer:
            with tf.GradientTape(watch_accessed_variables=False) as inner:
                objective, aux = forward(images, targets, _tap_into(tapped, outer, inner))
                total = tf.reduce_sum(objective)
            activations = _last(tapped)
            gradients = _or_zeros(inner.gradient(total, activations), activations)
        # d/dA (g . v) with v = A a constant upstream gradient: H A (the Hessian is symmetric)
        products = outer.gradient(gradients, activations, output_gradients=tf.stop_gradient(activations))
        return activations, gradients, _or_zeros(products, activations), aux

    return _function(step, jit, eager)


def input_gradients(forward, jit=False, variables=(), eager=False):
    def step(images, targets):
        images = tf.convert_to_tensor(images)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(images)
            objective, aux = forward(images, targets)
            total = tf.reduce_sum(objective)
        return tape.gradient(total, images), aux

    return _function(step, jit, eager)


def tapped_gradients(forward, jit=False, variables=(), eager=False):
    def step(images, targets):
        images = tf.convert_to_tensor(images)
        tapped = []
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(images)
            objective, aux = forward(images, targets, _tap_into(tapped, tape))
            total = tf.reduce_sum(objective)
        gradients = tape.gradient(total, [images] + tapped)
        gradients = [_or_zeros(g, t) for g, t in zip(gradients, [images] + tapped)]
        return gradients[0], gradients[1:], aux

    return _function(step, jit, eager)


def forward(forward, jit=False, variables=(), eager=False):
    """The forward pass alone, compiled: (images, targets) -> (tapped activations, aux). No
    tape: a method that needs no gradient never pays for one."""

    def step(images, targets):
        tapped = []
        _, aux = forward(images, targets, _tap_into(tapped))
        return _last(tapped), aux

    return _function(step, jit, eager)


def block_gradients(forward, jit=False, variables=(), eager=False):
    """forward returns (values (B, L), aux) with L taps: the gradient of the sum of column l with
    respect to tap l alone, for each l (one backward pass each, from one persistent tape)."""

    def step(images, targets):
        tapped = []
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            values, aux = forward(images, targets, _tap_into(tapped, tape))
            totals = tf.unstack(tf.reduce_sum(values, axis=0), num=len(tapped))
        gradients = [_or_zeros(tape.gradient(total, tensor), tensor) for total, tensor in zip(totals, tapped)]
        del tape
        return gradients, aux

    return _function(step, jit, eager)
