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
