"""What an api.Explainer builds once (Prepared) and the engines its Explainers share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gradcam_cli.explain.methods.method import Context
    from gradcam_cli.explain.targets import Bound
    from gradcam_cli.models.loading import LoadedModel


@dataclass
class Prepared:
    """What an Explainer builds on first use: the model it computes with, engines, context."""

    loaded: LoadedModel
    engines: list  # one per target layer; their target_path is the layer (in the dilated copy, for those)
    context: Context
    reference: LoadedModel | None  # the original model, when `loaded` is its dilated copy
    target: Bound  # the explain.targets.Bound target: `loaded` reads it (its head is the target's)
    warnings: list = None  # what the method says of this model (FullGrad without biases)
    shared: dict = None  # what Explainers of this model share (Explainer.build's `shared`)

    @property
    def engine(self):
        """The first layer's engine (the only one, unless several layers are averaged)."""
        return self.engines[0]

    @property
    def layer(self):
        """The layer (or layers, joined by +) the maps are of."""
        from gradcam_cli.models.graph import path_name

        return "+".join(path_name(engine.target_path) for engine in self.engines)


def shared_engine(shared, loaded, target_path, batch_size, jit):
    """The engine of `loaded` at `target_path`, one per model, layer, batch size and compilation
    in `shared`."""
    from gradcam_cli.explain.engine import Engine

    key = ("engine", id(loaded), tuple(target_path), batch_size, jit)
    if key not in shared:
        shared[key] = Engine(loaded, target_path, batch_size=batch_size, jit=jit)
    return shared[key]


def details(explainer, ready):
    """What a record says of how an api.Explainer's maps were made (`ready`: what it built), beyond
    method and layer: the network, the smoothing, compat, the method's options (its entry's
    record), a token layer's grid, warnings, the guided ReLUs."""
    from gradcam_cli.explain.methods import METHODS

    out = {}
    if explainer.network is not None:
        out["network"] = f"dilated ({explainer.network})"
    if explainer.aug_smooth:
        out["aug_smooth"] = True
    if explainer.eigen_smooth:
        out["eigen_smooth"] = True
    if explainer.compat is not None:
        out["compat"] = explainer.compat
    out.update(METHODS[explainer.method].record_of(explainer.options))
    if METHODS[explainer.method].meta is not None:  # the base method's options, as its own record gives them
        base = METHODS[explainer.options["base_method"]]
        out.update(base.record_of(base.values(explainer.base_options, explainer.compat)))
    grid = next((engine.grid for engine in ready.engines if engine.grid is not None), None)
    if grid is not None:  # a token layer: the grid its tokens are read as
        out.update(grid.as_record())
    if ready.warnings:
        out["method_warnings"] = list(ready.warnings)
    if ready.context.relus is not None:
        out["backprop"] = ready.context.relus.as_record(METHODS[explainer.method].backprop)
    return out
