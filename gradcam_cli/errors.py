"""The two kinds of failure the tool reports.

A `UsageProblem` ends the run before any image is processed (exit status 2, one line, no
traceback). An `ImageError` concerns one input: it is reported in one line and the rest of the
batch goes on (exit status 1 at the end).
"""

import click


class UsageProblem(click.UsageError):
    """A user's mistake or an unusable set-up: unknown model, missing layer, bad weights file..."""

    exit_code = 2

    def show(self, file=None):
        # One line, like click.ClickException, without the usage block that UsageError prints:
        # the message already says what to do.
        click.echo(f"Error: {self.format_message()}", err=True)


class ImageError(Exception):
    """One input file could not be used (unreadable, corrupt, too large...)."""


def unexpected(error):
    """An unexpected exception in one line: its type and message."""
    text = " ".join(str(error).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
