"""Gradients on the TensorFlow backend: one GradientTape per batch, compiled with tf.function.
The variables are read by the traced function itself, so `variables` is not needed here."""

import tensorflow as tf


def activation_gradients(forward, jit=False, variables=()):
    @tf.function(jit_compile=jit, reduce_retracing=True)
    def step(images, targets):
        tapped = []
        with tf.GradientTape() as tape:

            def tap(activations):
                tape.watch(activations)
                tapped.append(activations)
                return activations

            objective, aux = forward(images, targets, tap)
            total = tf.reduce_sum(objective)
        if not tapped:
            raise ValueError("the target layer was not reached by the forward pass")
        activations = tapped[-1]
        gradients = tape.gradient(total, activations)
        if gradients is None:  # the class score does not depend on this layer
            gradients = tf.zeros_like(activations)
        return activations, gradients, aux

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


def forward(forward, jit=False, variables=()):
    """The forward pass alone, compiled: (images, targets) -> (tapped activations, aux). No
    tape: a method that needs no gradient never pays for one."""

    @tf.function(jit_compile=jit, reduce_retracing=True)
    def step(images, targets):
        tapped = []

        def tap(activations):
            tapped.append(activations)
            return activations

        _, aux = forward(images, targets, tap)
        if not tapped:
            raise ValueError("the target layer was not reached by the forward pass")
        return tapped[-1], aux

    return step
