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

`attention_batch` and `block_attention_batch` are the steps Engine.run calls for the attention
methods: they take the engine as an argument and build on its public `padded`,
`forward_objective` and `compiled`, and return explain/batch.py's BatchResult. This module does
not import the engine (the engine imports it).
"""

import contextlib

import keras
from keras import ops

from gradcam_cli.errors import argument
from gradcam_cli.explain.batch import BatchResult, numpy_rows


def attention_layers(model):
    """Every keras.layers.MultiHeadAttention in `model`, in the order Keras lists its layers
    (nested models and sublayers of subclassed layers included), each once."""
    found, seen = [], set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.MultiHeadAttention) and id(layer) not in seen:
            seen.add(id(layer))
            found.append(layer)
    return found


def check_applies(loaded, target_path, blocks=False):
    """ValueError saying why attention maps cannot be read at `target_path` of `loaded`: no
    attention layer, not a token grid, (`blocks`: each block's own score) no pre-norm layout, or a
    layer that would change nothing (check_layer_matters)."""
    if not attention_layers(loaded.model):
        raise ValueError(f"attention maps read a vision transformer's attention (its keras.layers.MultiHeadAttention "
                         f"layers), and {loaded.name} has no attention layer: choose a method for its layers' maps "
                         "(`gradcam methods`)")
    if loaded.grid_of(target_path) is None:
        raise ValueError("attention maps are read on a transformer's token grid: choose a token layer as the target "
                         "(`gradcam layers` shows each token layer's grid)")
    grid = loaded.grid_of(target_path)
    if grid.frames is not None:
        raise ValueError(f"attention maps are read on an image transformer's 2-D token grid; {loaded.name}'s tokens are "
                         f"a {grid.describe()} grid of tubelets (a video transformer): choose a method for its layers' "
                         "maps (`gradcam methods`)")
    counts = sorted({info.shape[0] for info in loaded.layers
                     if isinstance(info.layer, keras.layers.MultiHeadAttention) and info.shape})
    if grid.tokens not in counts:
        raise ValueError(f"attention maps need self-attention over the target layer's {grid.tokens} tokens "
                         f"({grid.describe()}); the model's attention layers attend over "
                         f"{', '.join(map(str, counts))} tokens: choose a layer of that grid")
    if blocks:
        BlockPlan(loaded)  # where each block's tokens are read and the head run on them
    check_layer_matters(loaded, target_path)


def _layout(grid):
    return None if grid is None else (grid.sides, grid.prefix)


def check_layer_matters(loaded, target_path):
    """ValueError when `target_path` is not the default layer but reads the same token grid: the
    attention methods roll out (or average) every attention layer over the grid's tokens, from the
    first block to the last, as their papers do, and use the target layer for its grid alone (the
    prefix to read and the patches' shape), so such a layer would give the default's map while its
    record named another layer. A layer of another grid (a Swin-style stage) chooses that grid."""
    from gradcam_cli.models.graph import path_name

    default = loaded.default_layer
    grid = loaded.grid_of(target_path)
    if tuple(target_path) == tuple(default) or grid is None or _layout(grid) != _layout(loaded.grid_of(default)):
        return
    raise ValueError(f"it reads every attention layer over the layer's {grid.tokens} tokens (a {grid.height}x"
                     f"{grid.width} grid after {grid.prefix} prefix token(s)), whichever layer of that grid is the "
                     f"target, and {path_name(target_path)!r} has the grid of the default layer "
                     f"{path_name(default)!r}: its map would be the default's. Leave {argument('layer')} out")


def attention_blocks(loaded, target_path):
    """How many attention layers attend over the target layer's tokens: the blocks rolled out."""
    grid = loaded.grid_of(target_path)
    return sum(1 for info in loaded.layers if isinstance(info.layer, keras.layers.MultiHeadAttention) and info.shape
               and info.shape[0] == grid.tokens)


def check_legrad(loaded, target_path, options=None):
    """--legrad-blocks at most the blocks there are (more would average them all while the record
    said more)."""
    blocks = (options or {}).get("legrad_blocks")
    count = attention_blocks(loaded, target_path)
    if blocks is not None and count and blocks > count:
        raise ValueError(f"{loaded.name} has {count} attention block(s) over the layer's tokens: the last "
                         f"{blocks} cannot be averaged. Received: {argument('legrad_blocks', str(blocks))} "
                         f"(give at most {count})")


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
            values, aux = engine.forward_objective(images, targets, engine.loaded.logits_rewrite, objective)
        return values, dict(aux, attentions=list(seen))

    return forward


def attention_batch(engine, images, targets, gradients, objective=None):
    """Engine.run for the attention methods (needs "attention", with "attention-gradients"): the
    probabilities of every attention layer, and with `gradients` the objective's gradients with
    respect to them, from one compiled step of `engine`. Returns a BatchResult."""
    if not attention_layers(engine.loaded.model):
        raise ValueError(f"{engine.loaded.name} has no keras.layers.MultiHeadAttention layer: attention maps need one")
    count = len(images)
    images, targets = engine.padded(images, targets)
    forward = _forward(engine, objective)
    if gradients:
        step = engine.compiled(("attention-gradients", objective), "tapped_gradients", forward)
        _, grads, aux = step(images, targets)
        grads = [numpy_rows(g, count) for g in grads]
    else:
        _, aux = engine.compiled(("attention", objective), "forward", forward)(images, targets)
        grads = None
    return _result(engine, images, count, aux, grads)


def _result(engine, images, count, aux, gradients):
    """The BatchResult of an attention step: its first `count` rows."""
    return BatchResult(
        activations=None,
        gradients=None,
        raw_outputs=numpy_rows(aux["raw"], count),
        classes=ops.convert_to_numpy(aux["classes"])[:count].astype("int64"),
        inputs=images[:count],
        engine=engine,
        attentions=[numpy_rows(a, count) for a in aux["attentions"]],
        attention_gradients=gradients,
    )



# -- each block's own score (LeGrad) -------------------------------------------------------------

class BlockPlan:
    """Where a transformer's block outputs are read and how its head is run on them: z^l for
    l < L is the input of the normalization before attention layer l + 1, z^L the input of the
    final normalization (the last one called after the last attention layer); the head is that
    normalization, then the layers above `cut` (the final norm itself, or the subclassed layer
    whose last call it is). ValueError when the model is not laid out so."""

    def __init__(self, loaded):
        from gradcam_cli.models import graph, target_layers

        layers = loaded.layers
        positions = [i for i, info in enumerate(layers) if isinstance(info.layer, keras.layers.MultiHeadAttention)]
        if not positions:
            raise ValueError(f"{loaded.name} has no keras.layers.MultiHeadAttention layer")
        self.block_inputs = []
        for position in positions[1:]:
            norm = next((info for info in reversed(layers[:position]) if target_layers.is_normalization(info.layer)), None)
            if norm is None:
                raise ValueError("no normalization before an attention layer: a block's tokens cannot be read")
            self.block_inputs.append(norm.path)
        final = [info for info in layers[positions[-1] + 1:] if target_layers.is_normalization(info.layer)]
        if not final:
            raise ValueError("no final normalization after the last attention layer: the head cannot be run on a "
                             "block's tokens")
        self.final_path, self.final_layer = final[-1].path, final[-1].layer
        holder = next(path for path in (self.final_path[:n] for n in range(len(self.final_path), 0, -1))
                      if target_layers.in_graph(loaded.model, path))
        if holder != self.final_path:
            inside = [info.path for info in layers if info.path[: len(holder)] == holder and info.path != holder]
            if not inside or inside[-1] != self.final_path:
                raise ValueError(f"the final normalization {graph.path_name(self.final_path)!r} is not the last call of "
                                 f"{graph.path_name(holder)!r}: the head cannot be run on a block's tokens")
        self.cut = graph.cut_above(loaded.model, holder, loaded.output)
        self.recorded = frozenset(self.block_inputs) | {self.final_path}


def _block_forward(engine, plan):
    """The forward pass with every attention layer's probabilities tapped, returning each image's
    score of its class from each block's tokens through the head: (B, L) values."""
    from gradcam_cli.models import graph

    loaded = engine.loaded

    def forward(images, targets, tap):
        seen, inputs = [], {}

        def tapped(probabilities):
            probabilities = tap(probabilities)
            seen.append(probabilities)
            return probabilities

        def rewrite(path, layer):
            if path in plan.recorded:
                def record(x, *args, **kwargs):
                    inputs[path] = x
                    return layer(x, *args, **kwargs)

                return record
            return loaded.logits_rewrite(path, layer)

        with tapping(loaded.model, tapped):
            _, aux = engine.forward_objective(images, targets, rewrite)
        blocks = [inputs[path] for path in plan.block_inputs] + [inputs[plan.final_path]]
        count = len(blocks)
        normed = plan.final_layer(ops.concatenate(blocks, axis=0))
        outputs = graph.run_above(loaded.model, plan.cut, normed, loaded.logits_rewrite)
        scores = loaded.head.scores(loaded.chosen(outputs))
        classes = ops.tile(aux["classes"], (count,))
        picked = ops.take_along_axis(scores, ops.expand_dims(ops.cast(classes, "int32"), -1), axis=-1)[:, 0]
        values = ops.transpose(ops.reshape(picked, (count, -1)))
        return values, dict(aux, attentions=list(seen))

    return forward


def block_attention_batch(engine, images, targets):
    """Engine.run for LeGrad (needs "block-attention-gradients"): every attention layer's
    probabilities and, for each block l, d s^l / d A^l, the gradient of the block's own score
    (the head on its tokens, BlockPlan) with respect to its attention: one backward pass per
    block, in one compiled step. Returns a BatchResult."""
    plan = BlockPlan(engine.loaded)
    count = len(images)
    images, targets = engine.padded(images, targets)
    step = engine.compiled(("block-attention-gradients",), "block_gradients", _block_forward(engine, plan))
    grads, aux = step(images, targets)
    return _result(engine, images, count, aux, [numpy_rows(g, count) for g in grads])
