"""What a registry entry is (Method), what a method reads beyond the engine's results (Context),
what a method may need from the engine (NEEDS, which the engine reads), the output kinds a
method's entry implies (MAP_KINDS, GRADIENT_KINDS: files/outputs.py names its files by them),
and how the entries become the registry (`collected`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from gradcam_cli.errors import GradcamError, argument
from gradcam_cli.explain.methods.options import (
    LIBRARIES,
    LibraryChoice,
    MethodOption,
    Value,
)

# What a run can write (--save): every method's map kinds, and a backprop method's input-gradient images.
MAP_KINDS = ("heatmap", "overlay", "raw")
GRADIENT_KINDS = ("gradient", "gradient-gray", "gradcam", "gradcam-gray")

# The needs of the gradient methods (Grad-CAM's family).
GRADIENT_NEEDS = ("activations", "gradients")
# The reference of the methods pytorch-grad-cam introduced without a paper of their own.
PYTORCH_GRAD_CAM = "Gildenblat and contributors 2021, PyTorch library for CAM methods (pytorch-grad-cam)"

# What the engine hands a method (batch.BatchResult), a loaded model (models.loading.LoadedModel),
# an api.Explainer: typed loosely here, so that this module imports neither Keras nor the layers above.
Result = Any
Loaded = Any
Values = dict[str, Value]

# What a method may need from the engine.
NEEDS = {
    "activations": "the target layer's activations",
    "gradients": "the class score's gradients at the target layer",
    "input-gradients": "input gradients through modified ReLUs",
    "forward-scores": "class scores of further inputs (forward passes, no gradient)",
    "upper-graph-scores": "class scores of modified target-layer activations (the upper graph: the layers above the "
                          "target only)",
    "classifier": "the linear classifier after global average pooling",
    "dilated-copy": "a dilated copy of the model",
    "hessian": "the Hessian-vector product H A of the class score at the target layer",
    "plain-input-gradients": "input gradients of the class score (of further inputs too)",
    "bias-gradients": "gradients at the output of every layer with a bias",
    "attention": "the attention probabilities of every attention layer (a transformer's)",
    "attention-gradients": "the class score's gradients with respect to the attention probabilities",
    "block-attention-gradients": "each block's own score's gradients with respect to that block's attention",
    "base-method": "the maps of a base method (--base-method) at other layers or on other inputs",
}


@dataclass(frozen=True)
class Context:
    """What a method reads beyond the engine's results: the channel pooling, CAM's classifier
    kernel, the ReLUs a backprop method modifies, and the method's option values (Method.values:
    every option of the method, its default when not given)."""

    pool: str = "mean"
    classifier_kernel: Any = None  # (K, C) for CAM
    relus: Any = None  # models.backprop_relus.Census for backprop methods
    options: Values = field(default_factory=dict)  # {option name: value}


@dataclass(frozen=True)
class Method:
    """A registry entry: what a method is, what it needs (NEEDS: the engine reads them), how it
    makes its map, and what it declares for everything around it: its options, the fields it adds
    to a record, its warnings, the open choices other libraries make differently."""

    name: str
    summary: str  # one line: what the map is
    paper: str  # author(s), year and title
    needs: tuple[str, ...]  # keys of NEEDS
    # How the map is made, one of three (each before the final ReLU):
    channel_weights: Callable[[Result, Context], Any] | None = None  # -> (B, K): the Grad-CAM family
    contributions: Callable[[Result, Context], Any] | None = None  # -> (B, h, w, K): each channel's part of the map
    spatial_map: Callable[[Result, Context], Any] | None = None  # -> (B, h, w), or (it, per-image details)
    principal: bool = False  # the map is already a first principal component (eigen smoothing changes nothing)
    objective: Callable[[Context], Any] | None = None  # -> engine objective differentiated instead of the score
    backprop: str | None = None  # 'guided' or 'deconvnet': input gradients through modified ReLUs
    # (batch result, context) -> (B, H, W, C): the input gradients a backprop method draws (None: the engine's)
    input_gradients: Callable[[Result, Context], Any] | None = None
    network: str | None = None  # 'exact' or 'no-pooling': computed on a dilated copy of the model (models/dilated.py)
    options: tuple[MethodOption, ...] = ()  # the method's own options
    choices: tuple[LibraryChoice, ...] = ()  # open choices, and the option values other libraries' rules take
    record: Callable[[Values], dict[str, Any]] | None = None  # option values -> the record's fields (default:
    #                                                           each option's, None left out)
    warnings: Callable[[Loaded], list[str]] | None = None  # -> [what the user should know about this model]
    suffix: Callable[[Values], str] | None = None  # option values -> what output names add ('-smoothgrad')
    meta: Callable[[Any, Any, Any], Any] | None = None  # (api.Explainer, inputs, codes) -> MapBatch: a
    #                                                     meta-method composing its base method's maps
    default_layers: Callable[[Loaded], list[str]] | None = None  # -> target paths when no layer is given
    applies: Callable[[Loaded, str, Values], None] | None = None  # -> None, or ValueError: the layer or an
    #                                                                option would have no effect there
    # Whether it takes a volume's model (input (B, d1, d2, d3, C), maps (B, d1, d2, d3)): every reduction
    # "over space" of its rule runs over all the spatial axes (`spatial_axes`). False: refused there in one
    # line (context_for), never computed with an axis silently flattened.
    volumes: bool = False
    # Why it cannot take volumes (volumes False): the end of its one-line refusal, what its rule is made of
    # that a volume's model has no counterpart for ("it reads an image transformer's attention").
    no_volumes: str | None = None

    def check_applies(self, loaded: Loaded, target_path: str, values: Values | None = None) -> None:
        """ValueError when the layer or an option (`values`) would have no effect at `target_path` (`applies`)."""
        if self.applies is not None:
            self.applies(loaded, target_path, dict(values or {}))

    @property
    def smoothable(self) -> bool:
        """Whether eigen smoothing applies: the map is a sum over channels (or already a
        principal component)."""
        return self.channel_weights is not None or self.contributions is not None or self.principal

    @property
    def reads_attention(self) -> bool:
        """A transformer's method: it reads attention probabilities (no map of a convolutional network)."""
        return "attention" in self.needs

    @property
    def is_base(self) -> bool:
        """Whether a meta-method may take it as its base: a map method of the model itself (no
        backprop images, no dilated copy, no meta-method)."""
        return self.backprop is None and self.network is None and self.meta is None

    def based_on(self, bases: tuple[str, ...]) -> Method:
        """A meta-method's entry with `bases` as its base_method option's choices."""
        return replace(self, options=tuple(replace(o, choices=bases) if o.name == "base_method" else o
                                           for o in self.options))

    @property
    def needs_classifier(self) -> bool:
        return "classifier" in self.needs

    @property
    def kinds(self) -> tuple[str, ...]:
        """What --save may name for this method."""
        return MAP_KINDS + (GRADIENT_KINDS if self.backprop else ())

    @property
    def default_save(self) -> tuple[str, ...]:
        return ("heatmap", "overlay") + (GRADIENT_KINDS if self.backprop else ())

    def option(self, name: str) -> MethodOption | None:
        """The MethodOption called `name`, or None."""
        return next((o for o in self.options if o.name == name), None)

    def values(self, given: dict[str, Any] | None = None, compat: str | None = None) -> Values:
        """Every option's value: the default, else `compat`'s (a LIBRARIES name: the value of
        that library's rule), else what is `given` ({name: value}), each checked. GradcamError
        for a name that is not one of this method's options."""
        given = dict(given or {})
        unknown = [name for name in given if self.option(name) is None]
        if unknown:
            own = ", ".join(argument(o.name) for o in self.options) or "none"
            raise GradcamError(f"{self.name} has no option {', '.join(map(argument, unknown))} (its options: {own})")
        if compat is not None and compat not in LIBRARIES:
            raise GradcamError(f"{argument('compat')}: choose from {', '.join(LIBRARIES)}. Received: {compat!r}")
        values: Values = {o.name: o.default for o in self.options}
        for choice in self.choices if compat else ():
            value = choice.value_for(compat) if compat is not None else None
            if value is not None:
                values[choice.option] = value
        declared = {o.name: o for o in self.options}
        values.update({name: declared[name].check(value) for name, value in given.items()})
        return values

    def record_keys(self) -> list[str]:
        """The fields the method's options add to a record (every option given a value)."""
        return sorted(self.record_of({o.name: o.default if o.default is not None else 1 for o in self.options}))

    def record_of(self, values: Values) -> dict[str, Any]:
        """What a record says of the method's options (`values`, from Method.values)."""
        if self.record is not None:
            return self.record(values)
        return {o.record_key: values[o.name] for o in self.options if values.get(o.name) is not None}


def spatial_axes(array: Any) -> tuple[int, ...]:
    """The spatial axes of a (B, ..., K) array of activations or gradients, those between the batch
    and the channels: (1, 2) for images' (B, h, w, K), (1, 2, 3) for volumes' (B, d1, d2, d3, K)."""
    return tuple(range(1, len(array.shape) - 1))


def collected(*methods: Method) -> dict[str, Method]:
    """The registry: each entry by its name, in the order given. A meta-method's --base-method
    choices are the names of the map methods among them (Method.is_base), set here, when the
    collection is built: no entry changes afterwards."""
    bases = tuple(m.name for m in methods if m.is_base)
    return {m.name: m if m.meta is None else m.based_on(bases) for m in methods}


def base_method_option(default: str) -> MethodOption:
    """A meta-method's --base-method, `default` when not given; its choices come from `collected`."""
    return MethodOption("base_method", str, default, "the method whose maps are composed (see `gradcam methods`; "
                        "its own options apply)", choices=())


def base_suffix(values: Values, default: str) -> str:
    """A meta-method's file names carry its base method when it is not the default one
    (NAME.refinecam-layercam.overlay.png), so runs with two bases do not overwrite each other."""
    return "" if values["base_method"] == default else f"-{values['base_method']}"
