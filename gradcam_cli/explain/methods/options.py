"""What a method declares besides its rule: its options (name, type, default, range, help), and
the choices its paper leaves open that other libraries make differently (as option values per
library, for `compat=`). The command line's options, the API's keyword arguments, their
checks, the JSON record's fields and `gradcam methods NAME` are all made from these.

Pure Python: the command line builds its options from here without loading numpy or Keras.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gradcam_cli.errors import GradcamError, argument

LIBRARIES = ("pytorch-grad-cam", "tf-keras-vis")

# An option's value: a number, a word, or None ("not given").
Value = int | float | str | None


@dataclass(frozen=True)
class MethodOption:
    """One option of a method. `name` is the API's keyword; the command line spells it `flag`
    (default --NAME-WITH-DASHES). `kind` is int, float or str; a None `default` means "not
    given" (the method then does without, e.g. every channel scored). `minimum`/`maximum` bound
    a number (inclusive), `choices` a string. `record`: its key in the JSON record (default
    `name`); a None value is left out of the record."""

    name: str
    kind: type
    default: Value
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    record: str | None = None
    flag: str | None = None
    metavar: str | None = None

    @property
    def spelled(self) -> str:
        """The command line's spelling."""
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def record_key(self) -> str:
        return self.record or self.name

    def check(self, value: object) -> Value:
        """`value` as this option takes it; GradcamError quoting what was received."""
        if value is None:
            return None
        received = f"Received: {self.name}={value!r}"
        if self.kind is str:
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise GradcamError(f"{argument(self.name)}: choose from "
                                   f"{', '.join(self.choices or ())}. {received}")
            return value
        if isinstance(value, bool) or isinstance(value, str):
            raise GradcamError(f"{argument(self.name)} must be a number. {received}")
        try:
            number: int | float = self.kind(value)
        except (TypeError, ValueError):
            raise GradcamError(f"{argument(self.name)} must be a number. {received}") from None
        if self.kind is int and number != value:
            raise GradcamError(f"{argument(self.name)} must be a whole number. {received}")
        if number != number or number in (float("inf"), float("-inf")):
            raise GradcamError(f"{argument(self.name)} must be finite. {received}")
        if self.minimum is not None and number < self.minimum:
            raise GradcamError(f"{argument(self.name)} must be at least {self.minimum:g}. "
                               f"{received}")
        if self.maximum is not None and number > self.maximum:
            raise GradcamError(f"{argument(self.name)} must be at most {self.maximum:g}. "
                               f"{received}")
        return number

    def describe(self) -> str:
        """One line for `gradcam methods NAME`: flag, type, default, range and help."""
        if self.choices:
            kind = "|".join(self.choices)
        else:
            kind = {int: "whole number", float: "number"}.get(self.kind, "text")
            bounds = [f">= {self.minimum:g}" if self.minimum is not None else "",
                      f"<= {self.maximum:g}" if self.maximum is not None else ""]
            kind += "".join(f", {b}" for b in bounds if b)
        default = "not given" if self.default is None else f"{self.default!r}"
        return f"{self.spelled} ({self.name}=): {kind}; default {default}. {self.help}"


@dataclass(frozen=True)
class LibraryChoice:
    """A choice the paper leaves open, made by an option's value: ours (the option's default)
    and each library's (value, what it does)."""

    option: str
    question: str
    ours: str
    libraries: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # {library: (value, description)}

    def value_for(self, library: str) -> str | None:
        """The option's value that does what `library` does, or None when it offers nothing else
        (or does what we do)."""
        entry = self.libraries.get(library)
        return None if entry is None else entry[0]


# Options several methods share: one definition each, so one flag on the command line.
MAX_MASKS = MethodOption("max_masks", int, None, "score only N channels per image (Score-CAM: those of highest "
                         "variance; Ablation-CAM: of largest L1 norm); not given: all", minimum=1, metavar="N")
NOISE = MethodOption("noise", float, 0.15, "the noise's standard deviation, as a fraction of the input's range",
                     minimum=0.0, record="smoothgrad_noise")
