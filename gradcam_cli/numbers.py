"""Numbers read from text a user typed (an option's value, 'K/N', 'HxW', 'FIGURE=N'): ASCII only.

Python's int() and float() take more than a command line should: other scripts' digits
('\u0663'), underscores ('1_6'), surrounding spaces, and float() also 'nan', 'inf', 'infinity'
and overflows to inf ('1e400'). `whole` and `finite` take only the ASCII spellings, and raise a
ValueError in one line quoting the text otherwise. Nothing is imported here, so that every layer
(cli/, files/, models/, evaluate/) can use them.
"""

import math
import re

# An optional sign and the digits 0-9; int() reads at most 4300 digits.
_WHOLE = re.compile(r"[+-]?[0-9]{1,4000}")
# An optional sign, a decimal (5, 5., 0.5, .5) and an optional exponent: no 'nan', 'inf' or '_'.
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def whole(text):
    """`text` as an int when it is an optional sign and the digits 0-9 ('16', '-3', '+2');
    an int given is returned as it is. ValueError otherwise ('\u0663', '\u00b2', '1_6', ' 16', '0x10', '')."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if isinstance(text, str) and _WHOLE.fullmatch(text):
        return int(text)
    raise ValueError(f"{text!r} is not a whole number written in the digits 0-9")


def finite(text):
    """`text` as a finite float when it is written in ASCII decimal or scientific notation
    ('0.4', '.5', '1e-3', '-2'); a finite int or float given is returned as a float.
    ValueError otherwise ('nan', 'inf', '1e400', '1_0', ' 0.4', '\u0663', '')."""
    if not (isinstance(text, (int, float)) and not isinstance(text, bool)
            or isinstance(text, str) and _DECIMAL.fullmatch(text)):
        raise ValueError(f"{text!r} is not a finite number written in the digits 0-9 (such as 0.5 or 1e-3)")
    try:
        number = float(text)
    except OverflowError:  # an int beyond a float's range
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{text!r} is not a finite number (it is too large)")
    return number


def wholes(text, separators=","):
    """`text` split at each of the characters `separators`, every part `whole` ('224,320' ->
    [224, 320]; '2/8' with '/'). ValueError for any other part, an empty one included."""
    parts = [str(text)]
    for separator in separators:
        parts = [piece for part in parts for piece in part.split(separator)]
    return [whole(part) for part in parts]


def grid(text):
    """A patch grid as the command line writes it ('14x14' or '14,16', any case) -> (14, 16);
    ValueError quoting the text unless it is two positive whole numbers (models.tokens.parse_grid)."""
    try:
        height, width = wholes(str(text).lower(), "x,")
    except ValueError:
        raise ValueError(f"expected a grid HxW (e.g. 14x14) in the digits 0-9. Received: {text!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"expected a grid HxW of positive sides. Received: {text!r}")
    return height, width


def grid_sides(text):
    """A token grid of an image's (HxW) or a clip's (TxHxW) transformer, as the command line writes it ('14x14',
    '8x14x14', '4,6', any case) -> (14, 14) or (8, 14, 14); ValueError quoting the text unless it is two or three
    positive whole numbers (models.tokens.parse_grid). `grid` keeps to two sides."""
    try:
        sides = tuple(wholes(str(text).lower(), "x,"))
    except ValueError:
        sides = ()
    if len(sides) not in (2, 3):
        raise ValueError(f"expected a grid HxW (e.g. 14x14) or TxHxW (e.g. 8x14x14) in the digits 0-9. "
                         f"Received: {text!r}")
    if min(sides) < 1:
        raise ValueError(f"expected a grid of positive sides. Received: {text!r}")
    return sides
