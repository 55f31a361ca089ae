"""The library's errors: one family, `GradcamError` (a ValueError), whose messages say what is
wrong. The command line turns them into one line and exit status 2 (before any image is
processed) or, for an `ImageError`, a line for that image while the rest of the run goes on.
"""


class GradcamError(ValueError):
    """Something the library was asked cannot be done: the message says what and why."""


class ModelError(GradcamError):
    """A model that cannot be loaded or explained as asked: unknown name, unreadable file,
    unknown custom class, several outputs and none chosen, an input images cannot give..."""


class LayerError(GradcamError):
    """A target layer that does not exist or cannot be explained."""


class ClassError(GradcamError):
    """A class (index or name) the model does not have, or class names that do not fit it."""


class ImageError(GradcamError):
    """One input file could not be used (unreadable, corrupt, too large...)."""


def unexpected(error):
    """An unexpected exception in one line: its type and message."""
    text = " ".join(str(error).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
