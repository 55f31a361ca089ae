"""Reading a transformer's attention probabilities inside the compiled step.

Keras's MultiHeadAttention computes its probabilities in `_masked_softmax` (the softmax of the
scaled query-key products, before dropout), then mixes the values with them. `tapping` replaces
that method on each attention layer's instance for the duration of one forward pass (a traced
one: the compiled step keeps what it traced) with one that passes the probabilities through
`tap`, and calls the layer with `return_attention_scores=True` so that the probabilities are
computed explicitly (not in a fused kernel). What the tap returns is what the layer mixes the
values with, so a gradient with respect to the tapped tensor is the gradient with respect to
the attention probabilities: on TensorFlow the tape watches it, on JAX the tap adds a zero
delta. Attention layers are found anywhere in the model, inside nested models and inside
subclassed layers (keras-hub's encoder blocks) alike.

The probabilities are (batch, heads, queries, keys): row i of head h is how much token i reads
from each token.
"""

import contextlib

import keras


def attention_layers(model):
    """Every keras.layers.MultiHeadAttention in `model`, in the order Keras lists its layers
    (nested models and sublayers of subclassed layers included), each once."""
    found, seen = [], set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.MultiHeadAttention) and id(layer) not in seen:
            seen.add(id(layer))
            found.append(layer)
    return found


@contextlib.contextmanager
def tapping(model, tap):
    """While open, every attention layer of `model` passes its probabilities through `tap`
    (called once per layer call, in call order) and mixes its values with what `tap` returns."""
    layers = attention_layers(model)
    for layer in layers:
        layer._masked_softmax = _tapped_softmax(layer, tap)
        layer.call = _explicit_call(layer)
    try:
        yield layers
    finally:
        for layer in layers:
            for name in ("_masked_softmax", "call"):
                if name in layer.__dict__:
                    delattr(layer, name)


def _tapped_softmax(layer, tap):
    original = type(layer)._masked_softmax

    def masked_softmax(scores, attention_mask=None):
        return tap(original(layer, scores, attention_mask))

    return masked_softmax


def _explicit_call(layer):
    original = type(layer).call

    def call(*args, **kwargs):
        wanted = kwargs.pop("return_attention_scores", False)
        output, scores = original(layer, *args, return_attention_scores=True, **kwargs)
        return (output, scores) if wanted else output

    return call


def _forward(engine, objective):
    """The engine's forward pass with every attention layer's probabilities tapped: aux["attentions"]
    lists them in call order."""
    def forward(images, targets, tap):
        seen = []

        def tapped(probabilities):
            probabilities = tap(probabilities)
            seen.append(probabilities)
            return probabilities

        with tapping(engine.loaded.model, tapped):
            values, aux = engine._objective(images, targets, engine.loaded.logits_rewrite, objective)
        return values, dict(aux, attentions=list(seen))

    return forward


def run(engine, images, targets, gradients, objective=None):
    """Engine.run for the attention methods (needs "attention", with "attention-gradients"): the
    probabilities of every attention layer, and with `gradients` the objective's gradients with
    respect to them, from one compiled step of `engine`. Returns an engine.BatchResult."""
    from keras import ops

    from gradcam_cli.explain.engine import BatchResult, _numpy

    if not attention_layers(engine.loaded.model):
        raise ValueError(f"{engine.loaded.name} has no keras.layers.MultiHeadAttention layer: attention maps need one")
    count = len(images)
    images, targets = engine._padded(images, targets)
    forward = _forward(engine, objective)
    if gradients:
        step = engine._compiled(("attention-gradients", objective), "tapped_gradients", forward)
        _, grads, aux = step(images, targets)
        grads = [_numpy(g, count) for g in grads]
    else:
        _, aux = engine._compiled(("attention", objective), "forward", forward)(images, targets)
        grads = None
    return BatchResult(
        activations=None,
        gradients=None,
        raw_outputs=_numpy(aux["raw"], count),
        classes=ops.convert_to_numpy(aux["classes"])[:count].astype("int64"),
        inputs=images[:count],
        engine=engine,
        attentions=[_numpy(a, count) for a in aux["attentions"]],
        attention_gradients=grads,
    )

