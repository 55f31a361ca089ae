"""How a map is computed: the engine (compiled steps over a model, engine.py) and its backends
(backend/: one file per Keras backend, the only place gradients are taken), the methods and
their registry (methods/), the per-batch computation (compute.py), smoothing over views and
layers (smoothing.py) and the map arithmetic (maps.py). Nothing here reads or writes files."""
