"""The library's errors: one family, `GradcamError` (a ValueError), whose messages say what is
wrong. The command line turns them into one line and exit status 2 (before any image is
processed) or, for an `ImageError`, a line for that image while the rest of the run goes on.

A message that tells the caller what to pass names the argument with `argument(name, value)`:
`str(error)` spells it as the Python API takes it (`input_size=(H, W)`), and
`error.worded(spell)` lets the command line spell it as its option (`--input-size H,W`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

# A token in a message: \x1f name \x1e python value \x1e command-line value \x1f.
_TOKEN = re.compile("\x1f([^\x1e\x1f]*)\x1e([^\x1e\x1f]*)\x1e([^\x1e\x1f]*)\x1f")
# How a message spells an argument: spell(name, python value, command-line value) -> text ('' for no value).
Spelling = Callable[[str, str, str], str]


def argument(name: str, python: str | None = None, command: str | None = None) -> str:
    """An argument named in a message: `name` as the API's keyword ('input_size'), the value
    as Python writes it ('(H, W)', "'none'", 'True'; None: the name alone) and as the command
    line does ('H,W'; default: the Python value unquoted)."""
    if command is None and python is not None:
        command = python.strip("'\"")
    return f"\x1f{name}\x1e{python or ''}\x1e{command or ''}\x1f"


def python_spelling(name: str, python: str, command: str) -> str:
    """An argument as the Python API takes it: `name=value`, or the name alone."""
    return f"{name}={python}" if python else name


class GradcamError(ValueError):
    """Something the library was asked cannot be done: the message says what and why."""

    def __str__(self) -> str:
        return self.worded(python_spelling)

    def worded(self, spell: Spelling) -> str:
        """The message with each argument() token spelled by spell(name, python, command)."""
        text = super().__str__()
        return _TOKEN.sub(lambda m: spell(m.group(1), m.group(2), m.group(3)), text)


class ModelError(GradcamError):
    """A model that cannot be loaded or explained as asked: unknown name, unreadable file,
    unknown custom class, several outputs and none chosen, an input images cannot give..."""


class LayerError(GradcamError):
    """A target layer that does not exist or cannot be explained."""


class ClassError(GradcamError):
    """A class (index or name) the model does not have, or class names that do not fit it."""


class ImageError(GradcamError):
    """One input file could not be used (unreadable, corrupt, too large...)."""


def one_line(error: BaseException | str, limit: int = 300) -> str:
    """An exception's message in one line (whitespace collapsed), cut at `limit` characters."""
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unexpected(error: BaseException) -> str:
    """An unexpected exception in one line: its type and message."""
    text = one_line(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
