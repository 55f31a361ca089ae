"""The Click types of every numeric option: ASCII whole numbers and finite decimals only.

Click's INT, FLOAT, IntRange and FloatRange convert with int() and float(), which also take
other scripts' digits, underscores, surrounding spaces, 'nan', 'inf' and '1e400'. These types
read the text with gradcam_cli.numbers first (the rule every hand-parsed number follows too),
then leave the rest to Click's own classes, so that ranges (open or closed), their text in
--help, metavars and show_default stay Click's. A bad value is refused in one line,
"Error: Invalid value for '--alpha': 'nan' is not a finite number", exit status 2, without
the usage block (BadValue).
"""

import click

from gradcam_cli.numbers import finite, whole


class BadValue(click.BadParameter):
    """A bad option value, shown in one line (exit status 2) like the group's other errors
    (base.UsageProblem): the message says what would fit."""

    def show(self, file=None):
        click.echo(f"Error: {self.format_message()}", err=True)


class _Strict:
    """Parses the text with `_parse` (whole or finite) before Click's own conversion and range check."""

    _parse = None

    def convert(self, value, param, ctx):
        try:
            number = self._parse(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)
        return super().convert(number, param, ctx)

    def fail(self, message, param=None, ctx=None):
        raise BadValue(message, ctx=ctx, param=param)


class StrictInt(_Strict, click.types.IntParamType):
    """click.INT for ASCII whole numbers ('16', '-3', '+2')."""

    _parse = staticmethod(whole)


class StrictFloat(_Strict, click.types.FloatParamType):
    """click.FLOAT for finite ASCII numbers ('0.4', '.5', '1e-3')."""

    _parse = staticmethod(finite)


class StrictIntRange(_Strict, click.IntRange):
    """click.IntRange (same arguments) for ASCII whole numbers."""

    _parse = staticmethod(whole)


class StrictFloatRange(_Strict, click.FloatRange):
    """click.FloatRange (same arguments) for finite ASCII numbers."""

    _parse = staticmethod(finite)


STRICT_INT = StrictInt()
STRICT_FLOAT = StrictFloat()


def strict_type(kind, minimum=None, maximum=None):
    """The strict Click type of a number of `kind` (int or float) bounded inclusively by
    `minimum`/`maximum` (None: unbounded), as a method's registry entry declares it."""
    if minimum is None and maximum is None:
        return STRICT_INT if kind is int else STRICT_FLOAT
    return (StrictIntRange if kind is int else StrictFloatRange)(min=minimum, max=maximum)
