"""Gradients on the TensorFlow backend: one GradientTape per batch (two, nested, for the
Hessian-vector product), compiled with tf.function. The variables are read by the traced
function itself, so `variables` is not needed here."""

import tensorflow as tf


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


def activation_gradients(forward, jit=False, variables=()):
    @tf.function(jit_compile=jit, reduce_retracing=True)
    def step(images, targets):
        tapped = []
        with tf.GradientTape() as tape:
            objective, aux = forward(images, targets, _tap_into(tapped, tape))
            total = tf.reduce_sum(objective)
        activations = _last(tapped)
        # None when the class score does not depend on this layer
        return activations, _or_zeros(tape.gradient(total, activations), activations), aux

    return step


def activation_hessian(forward, jit=False, variables=()):
    @tf.function(jit_compile=jit, reduce_retracing=True)
    def step(images, targets):
        tapped = []
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                objective, aux = forward(images, targets, _tap_into(tapped, outer, inner))
                total = tf.reduce_sum(objective)
            activations = _last(tapped)
            gradients = _or_zeros(inner.gradient(total, activations), activations)
        # d/dA (g . v) with v = A a constant upstream gradient: H A (the Hessian is symmetric)
        products = outer.gradient(gradients, activations, output_gradients=tf.stop_gradient(activations))
        return activations, gradients, _or_zeros(products, activations), aux

    return step


def input_gradients(forward, jit=False, variables=()):
    @tf.function(jit_compile=jit, reduce_retracing=True)
    def step(images, targets):
        images = tf.convert_to_tensor(images)
        with tf.GradientTape() as tape:
            tape.watch(images)
            objective, aux = forward(images, targets)
            total = tf.reduce_sum(objective)
        return tape.gradient(total, images), aux

    return step


def tapped_gradients(forward, jit=False, variables=()):
    @tf.function(jit_compile=jit, reduce_retracing=True)
    def step(images, targets):
        images = tf.convert_to_tensor(images)
        tapped = []
        with tf.GradientTape() as tape:
            tape.watch(images)
            objective, aux = forward(images, targets, _tap_into(tapped, tape))
            total = tf.reduce_sum(objective)
        gradients = tape.gradient(total, [images] + tapped)
        gradients = [_or_zeros(g, t) for g, t in zip(gradients, [images] + tapped)]
        return gradients[0], gradients[1:], aux

    return step


def forward(forward, jit=False, variables=()):
    """The forward pass alone, compiled: (images, targets) -> (tapped activations, aux). No
    tape: a method that needs no gradient never pays for one."""

    @tf.function(jit_compile=jit, reduce_retracing=True)
    def step(images, targets):
        tapped = []
        _, aux = forward(images, targets, _tap_into(tapped))
        return _last(tapped), aux

    return step


def block_gradients(forward, jit=False, variables=()):
    """forward returns (values (B, L), aux) with L taps: the gradient of the sum of column l with
    respect to tap l alone, for each l (one backward pass each, from one persistent tape)."""

    @tf.function(jit_compile=jit, reduce_retracing=True)
    def step(images, targets):
        tapped = []
        with tf.GradientTape(persistent=True) as tape:
            values, aux = forward(images, targets, _tap_into(tapped, tape))
            totals = tf.unstack(tf.reduce_sum(values, axis=0), num=len(tapped))
        gradients = [_or_zeros(tape.gradient(total, tensor), tensor) for total, tensor in zip(totals, tapped)]
        del tape
        return gradients, aux

    return step
