"""When a step runs uncompiled first: a run of one batch through a deep model pays for no trace it
would use once (explain/engine.py's eager_first, backend.EAGER_FIRST_CALL)."""

from gradcam_cli.models import graph

# eager_pays: the fewest layers (nested models' counted) of a model whose one-batch run goes eagerly.
# Measured on 2 cores (docs/benchmarks.md, "The first map"): a trace costs about 6 ms a layer (ResNet50,
# 177 layers: 1.1-1.3 s for its first traced call against 0.42-0.48 s eagerly), while op-by-op calls
# cost most on few wide layers (VGG16, 23 layers: about 0.3 s either way, later eager calls 8x slower).
EAGER_MIN_LAYERS = 60


def eager_pays(loaded, batches, jit=False):
    """Whether a run of `batches` batches (None: not known) through `loaded` should run its steps'
    first calls eagerly (Engine's eager_first): one batch, no XLA asked for, and a model of at
    least EAGER_MIN_LAYERS layers, whose trace costs more than an uncompiled call."""
    if batches != 1 or jit:
        return False
    return sum(1 for _ in graph.iter_layers(loaded.model)) >= EAGER_MIN_LAYERS


class EagerFirst:
    """A step whose first call runs `eager` (the uncompiled step) and whose later calls run the
    compiled step, built by `build()` on the second call."""

    def __init__(self, eager, build):
        self.eager, self.build, self.step = eager, build, None

    def __call__(self, *args):
        if self.eager is not None:
            eager, self.eager = self.eager, None
            return eager(*args)
        if self.step is None:
            self.step = self.build()
        return self.step(*args)
