"""Layers inside subclassed layers: keras-hub's encoders and blocks, a user's custom blocks.

A functional model's layers are nodes of its graph, and `graph.run_graph` replaces any node's
call. A subclassed layer (keras-hub's `vit_encoder`, which loops over its transformer blocks in
Python) calls its sublayers from its own code: they are no nodes. Such a layer is a
*container*: its sublayers are named by paths under it ('vit_encoder/transformer_block_12/ln_1'),
listed in the order they are called, and their calls replaced the same way, by setting the
sublayer instance's `call` for the duration of the container's call (Keras's `Layer.__call__`
looks `call` up on the instance): `hooked`. The sublayers of Keras's own layers (a
MultiHeadAttention's projections) are not listed.

The replacement is set on shared layer instances while a forward pass is traced: two threads
tracing steps of one model at the same time would see each other's replacements. The pipeline
traces on one thread (its worker threads only decode and resize images).
"""

import contextlib

import keras


def is_container(layer):
    """A layer whose own code calls sublayers: not a Keras model, not one of Keras's own
    layers, holding sublayers."""
    if isinstance(layer, keras.Model):
        return False
    module = type(layer).__module__
    if module == "keras" or module.startswith("keras."):
        return False
    return bool(children(layer))


def children(layer):
    """The sublayers `layer` holds directly, in the order Keras tracks them."""
    return list(layer._flatten_layers(include_self=False, recursive=False))


def descendants(layer, prefix):
    """(path, sublayer) for every sublayer below the container `layer` (at `prefix`), a
    container's own sublayers after it."""
    for sub in children(layer):
        path = prefix + (sub.name,)
        yield path, sub
        if is_container(sub):
            yield from descendants(sub, path)


def child(layer, name):
    """The sublayer of `layer` called `name`; KeyError otherwise."""
    for sub in children(layer):
        if sub.name == name:
            return sub
    raise KeyError(f"no layer {name!r} in {layer.name!r}")


def _install(layer, replacement):
    def hook(*args, **kwargs):
        del layer.call  # the replacement calls the layer itself: the class's call, not this hook
        try:
            return replacement(*args, **kwargs)
        finally:
            layer.call = hook

    layer.call = hook


@contextlib.contextmanager
def hooked(container, prefix, rewrite):
    """While open, each sublayer below `container` (at path `prefix`) for which
    rewrite(path, sublayer) gives a callable is called through that callable instead (as
    graph.run_graph does for a node)."""
    installed = []
    try:
        for path, sub in descendants(container, prefix):
            if "call" in vars(sub):  # already replaced (explain/attention.py's taps): left as it is
                continue
            replacement = rewrite(path, sub)
            if replacement is not None:
                _install(sub, replacement)
                installed.append(sub)
        yield
    finally:
        for sub in installed:
            if "call" in vars(sub):
                del sub.call


def describe_call(container, prefix, args, kwargs, begin, record):
    """Call `container` once on zeros shaped like its symbolic `args` (KerasTensors), with every
    sublayer's call announced by begin(path, sublayer) as it starts (so a sublayer comes before
    those it calls) and its output given to record(path, output); returns the container's output
    as KerasTensors."""
    def concrete(value):
        if isinstance(value, keras.KerasTensor):
            return keras.ops.zeros(value.shape, value.dtype)
        return value

    def recorder(path, sub):
        def call(*a, **k):
            begin(path, sub)
            return record(path, sub(*a, **k))

        return call

    args, kwargs = keras.tree.map_structure(concrete, (args, kwargs))
    with hooked(container, prefix, recorder):
        output = container(*args, **kwargs)
    return keras.tree.map_structure(
        lambda t: keras.KerasTensor(tuple(t.shape), t.dtype) if hasattr(t, "shape") else t, output)
