"""What a registry entry is (Method), what a method reads beyond the engine's results (Context),
and what a method may need from the engine (NEEDS, which the engine reads)."""

from dataclasses import dataclass, field
from typing import Callable

from gradcam_cli.errors import GradcamError, argument
from gradcam_cli.explain.methods.options import LIBRARIES
from gradcam_cli.files.outputs import GRADIENT_KINDS, MAP_KINDS

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
}


@dataclass(frozen=True)
class Method:
    """A registry entry: what a method is, what it needs (NEEDS: the engine reads them), how it
    makes its map, and what it declares for everything around it: its options, the fields it adds
    to a record, its warnings, the open choices other libraries make differently."""

    name: str
    summary: str  # one line: what the map is
    paper: str  # author(s), year and title
    needs: tuple  # keys of NEEDS
    channel_weights: Callable = None  # (batch result, context) -> (B, K): the Grad-CAM family
    contributions: Callable = None  # (batch result, context) -> (B, h, w, K): each channel's part of the map
    spatial_map: Callable = None  # (batch result, context) -> (B, h, w): any other method
    principal: bool = False  # the map is already a first principal component (eigen smoothing changes nothing)
    objective: Callable = None  # context -> engine objective differentiated instead of the class score
    backprop: str = None  # 'guided' or 'deconvnet': input gradients through modified ReLUs
    network: str = None  # 'exact' or 'no-pooling': computed on a dilated copy of the model (models/dilated.py)
    options: tuple = ()  # options.Option: the method's own options
    choices: tuple = ()  # options.Choice: open choices, and the option values other libraries' rules take
    record: Callable = None  # option values -> the record's fields (default: each option's, None left out)
    warnings: Callable = None  # LoadedModel -> [what the user should know about this model], or None
    suffix: Callable = None  # option values -> what output names add ('-smoothgrad'), or None
    meta: Callable = None  # (api.Explainer, inputs, codes) -> MapBatch: a meta-method composing its base method's maps
    default_layers: Callable = None  # LoadedModel -> target paths when no layer is given (None: the model's default)
    applies: Callable = None  # (LoadedModel, target path, option values) -> None, or ValueError: the layer or an
    #                           option would have no effect there (a record must not claim it)

    def check_applies(self, loaded, target_path, values=None):
        """ValueError when the layer or an option (`values`) would have no effect at `target_path` (`applies`)."""
        if self.applies is not None:
            self.applies(loaded, target_path, dict(values or {}))

    @property
    def smoothable(self):
        """Whether eigen smoothing applies: the map is a sum over channels (or already a
        principal component)."""
        return self.channel_weights is not None or self.contributions is not None or self.principal

    @property
    def reads_attention(self):
        """A transformer's method: it reads attention probabilities (no map of a convolutional network)."""
        return "attention" in self.needs

    @property
    def needs_classifier(self):
        return "classifier" in self.needs

    @property
    def kinds(self):
        """What --save may name for this method."""
        return MAP_KINDS + (GRADIENT_KINDS if self.backprop else ())

    @property
    def default_save(self):
        return ("heatmap", "overlay") + (GRADIENT_KINDS if self.backprop else ())

    def option(self, name):
        """The Option called `name`, or None."""
        return next((o for o in self.options if o.name == name), None)

    def values(self, given=None, compat=None):
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
        values = {o.name: o.default for o in self.options}
        for choice in self.choices if compat else ():
            value = choice.value_for(compat)
            if value is not None:
                values[choice.option] = value
        values.update({name: self.option(name).check(value) for name, value in given.items()})
        return values

    def record_keys(self):
        """The fields the method's options add to a record (every option given a value)."""
        return sorted(self.record_of({o.name: o.default if o.default is not None else 1 for o in self.options}))

    def record_of(self, values):
        """What a record says of the method's options (`values`, from Method.values)."""
        if self.record is not None:
            return self.record(values)
        return {o.record_key: values[o.name] for o in self.options if values.get(o.name) is not None}


@dataclass(frozen=True)
class Context:
    """What a method reads beyond the engine's results: the channel pooling, CAM's classifier
    kernel, the ReLUs a backprop method modifies, and the method's option values (Method.values;
    a method reads its own, with its module's default when a value is absent)."""

    pool: str = "mean"
    classifier_kernel: object = None  # (K, C) for CAM
    relus: object = None  # models.backprop_relus.Census for backprop methods
    options: dict = field(default_factory=dict)  # {option name: value}
