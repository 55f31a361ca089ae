"""Every number on the command line is read strictly (issue 31, item 6): ASCII whole numbers and
finite decimals only. Python's int() and float(), which Click's INT, FLOAT, IntRange and FloatRange
use, also take other scripts' digits, underscores, surrounding spaces, 'nan', 'inf' and '1e400'.
Each bad value is refused in one line naming its option, exit status 2, before any model loads."""

import math
from pathlib import Path

import click
import pytest
from conftest import invoke_cli

from gradcam_cli import numbers

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"
CIRCLE = str(SAMPLES / "synthetic_circle.png")
GAP = (CIRCLE, "-m", "demo-gap")

# (the arguments, the option as the message names it, the rest of the message)
BAD_VALUES = [
    # the method commands' shared options
    ((*GAP, "-b", "\u0663"), "'--batch-size' / '-b'", "'\u0663' is not a whole number written in the digits 0-9"),
    ((*GAP, "--batch-size", "1_6"), "'--batch-size' / '-b'", "'1_6' is not a whole number written in the digits 0-9"),
    ((*GAP, "--batch-size", " 16"), "'--batch-size' / '-b'", "' 16' is not a whole number written in the digits 0-9"),
    ((*GAP, "--top-k", "\u00b2"), "'--top-k'", "'\u00b2' is not a whole number written in the digits 0-9"),
    ((*GAP, "--top-k", "0x10"), "'--top-k'", "'0x10' is not a whole number written in the digits 0-9"),
    ((*GAP, "--top-k", "0"), "'--top-k'", "0 is not in the range x>=1."),
    ((*GAP, "--alpha", "nan"), "'--alpha'",
     "'nan' is not a finite number written in the digits 0-9 (such as 0.5 or 1e-3)"),
    ((*GAP, "--alpha", "inf"), "'--alpha'",
     "'inf' is not a finite number written in the digits 0-9 (such as 0.5 or 1e-3)"),
    ((*GAP, "--alpha", "1e400"), "'--alpha'", "'1e400' is not a finite number (it is too large)"),
    ((*GAP, "--alpha", "0_5"), "'--alpha'",
     "'0_5' is not a finite number written in the digits 0-9 (such as 0.5 or 1e-3)"),
    ((*GAP, "--alpha", "2"), "'--alpha'", "2.0 is not in the range 0.0<=x<=1.0."),
    ((*GAP, "--prefix-tokens", "\u0661"), "'--prefix-tokens'", "'\u0661' is not a whole number written in the digits 0-9"),
    ((*GAP, "--ray", "local", "--workers", "+\u0662"), "'--workers'",
     "'+\u0662' is not a whole number written in the digits 0-9"),
    # hand-parsed numbers
    ((*GAP, "--input-size", "\u0663\u0662"), "'--input-size'",
     "expected N or H,W (e.g. 224 or 224,320) in the digits 0-9. Received: '\u0663\u0662'"),
    ((*GAP, "--input-size", "64_0"), "'--input-size'",
     "expected N or H,W (e.g. 224 or 224,320) in the digits 0-9. Received: '64_0'"),
    ((*GAP, "--shard", "1/\u0662"), "'--shard'", "expected K/N in the digits 0-9, such as 2/8. Received: '1/\u0662'"),
    ((*GAP, "--shard", "1/ 2"), "'--shard'", "expected K/N in the digits 0-9, such as 2/8. Received: '1/ 2'"),
    ((*GAP, "--grid", "7x\u0667"), "'--grid'", "expected a grid HxW (e.g. 14x14) or TxHxW (e.g. 8x14x14) in the digits 0-9. Received: '7x\u0667'"),
    # the methods' options, made from the registry
    ((*GAP, "--method", "smoothgrad", "--noise", "nan"), "'--noise'",
     "'nan' is not a finite number written in the digits 0-9 (such as 0.5 or 1e-3)"),
    ((*GAP, "--method", "smoothgrad", "--samples", "1_0"), "'--samples'",
     "'1_0' is not a whole number written in the digits 0-9"),
    ((*GAP, "--method", "legrad", "--legrad-blocks", "\u00b2"), "'--legrad-blocks'",
     "'\u00b2' is not a whole number written in the digits 0-9"),
    ((*GAP, "--method", "finercam", "--finer-alpha", "-inf"), "'--finer-alpha'",
     "'-inf' is not a finite number written in the digits 0-9 (such as 0.5 or 1e-3)"),
    ((*GAP, "--method", "rollout", "--discard-ratio", "infinity"), "'--discard-ratio'",
     "'infinity' is not a finite number written in the digits 0-9 (such as 0.5 or 1e-3)"),
    ((*GAP, "--method", "integrated-gradients", "--steps", "\u0665"), "'--steps'",
     "'\u0665' is not a whole number written in the digits 0-9"),
    # the other commands
    (("eval", "-m", "demo-gap", "--steps", "\u0663"), "'--steps'", "'\u0663' is not a whole number written in the digits 0-9"),
    (("eval", "-m", "demo-gap", "-n", "1_0"), "'--count' / '-n'", "'1_0' is not a whole number written in the digits 0-9"),
    (("eval", "-m", "demo-gap", "--pairs", "3 "), "'--pairs'", "'3 ' is not a whole number written in the digits 0-9"),
    (("eval", "-m", "demo-gap", "--seed", "\u00b9"), "'--seed'", "'\u00b9' is not a whole number written in the digits 0-9"),
    (("eval", "-m", "demo-gap", "--threshold", "nan"), "'--threshold'",
     "'nan' is not a finite number written in the digits 0-9 (such as 0.5 or 1e-3)"),
    (("eval", "-m", "demo-gap", "--threshold", "0"), "'--threshold'", "0.0 is not in the range 0.0<x<=1.0."),
    (("eval", "-m", "demo-gap", "--fail-under", "pointing=nan"), "'--fail-under'",
     "expected FIGURE=NUMBER, comma-separated, each NUMBER finite and in the digits 0-9 (e.g. pointing=0.8). "
     "Received: 'pointing=nan'"),
    (("eval", "-m", "demo-gap", "--fail-under", "pointing=1e400"), "'--fail-under'",
     "expected FIGURE=NUMBER, comma-separated, each NUMBER finite and in the digits 0-9 (e.g. pointing=0.8). "
     "Received: 'pointing=1e400'"),
    (("compare", *GAP, "--alpha", "inf"), "'--alpha'",
     "'inf' is not a finite number written in the digits 0-9 (such as 0.5 or 1e-3)"),
    (("compare", *GAP, "-b", "\u0668"), "'--batch-size' / '-b'", "'\u0668' is not a whole number written in the digits 0-9"),
    (("compare", *GAP, "--token-grid", "8x8.0"), "'--token-grid'",
     "expected a grid HxW (e.g. 14x14) or TxHxW (e.g. 8x14x14) in the digits 0-9. Received: '8x8.0'"),
    (("concepts", *GAP, "-k", "\u0663"), "'-k' / '--concepts'", "'\u0663' is not a whole number written in the digits 0-9"),
    (("concepts", *GAP, "--max-images", "6.4"), "'--max-images'", "'6.4' is not a whole number written in the digits 0-9"),
    (("concepts", *GAP, "--top-classes", "\u00b2"), "'--top-classes'",
     "'\u00b2' is not a whole number written in the digits 0-9"),
    (("concepts", *GAP, "--seed", "1_0"), "'--seed'", "'1_0' is not a whole number written in the digits 0-9"),
    (("concepts", *GAP, "--alpha", "nan"), "'--alpha'",
     "'nan' is not a finite number written in the digits 0-9 (such as 0.5 or 1e-3)"),
    (("report", "results.jsonl", "--thumbnail-size", "1e2"), "'--thumbnail-size'",
     "'1e2' is not a whole number written in the digits 0-9"),
    # a Click choice is one line too
    ((*GAP, "--colormap", "nope"), "'--colormap'", "'nope' is not one of 'autumn'"),
]


@pytest.mark.parametrize("args, option, message", BAD_VALUES, ids=[" ".join(a[-2:]) for a, _, _ in BAD_VALUES])
def test_a_bad_number_is_one_line_exit_2(tmp_path, args, option, message):
    result = invoke_cli(*args, "-o", tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # no usage block, no model loaded, no traceback
    assert lines[0].startswith(f"Error: Invalid value for {option}: {message}"), lines[0]
    assert not (tmp_path / "out").exists() and result.stdout == ""


@pytest.mark.parametrize("value", ["100_0", " 100", "\u0661\u0660\u0660"])
def test_max_pixels_takes_ascii_digits_only(tmp_path, value):
    result = invoke_cli(*GAP, "--max-pixels", value, "-o", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"Error: --max-pixels {value}: give a whole number of pixels of at least 1, in "
                                     "the digits 0-9")


def test_every_numeric_option_of_every_command_is_strict():
    """No command keeps a Click INT, FLOAT, IntRange or FloatRange that reads with int()/float()."""
    from gradcam_cli.cli import main
    from gradcam_cli.cli.numbers import StrictFloat, StrictFloatRange, StrictInt, StrictIntRange

    numeric = 0
    for name, command in main.commands.items():
        for param in command.params:
            if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
                assert isinstance(param.type, (StrictInt, StrictFloat, StrictIntRange, StrictFloatRange)), \
                    (name, param.name, param.type)
                numeric += 1
    assert numeric >= 40  # gradcam's own, its methods', eval's, compare's, concepts', report's...


@pytest.mark.parametrize("kind, text, expected", [
    ("int", "16", 16), ("int", "-3", -3), ("int", "+2", 2), ("int", "007", 7),
    ("float", "0.4", 0.4), ("float", "1e-3", 0.001), ("float", ".5", 0.5), ("float", "5.", 5.0),
    ("float", "-2", -2.0), ("float", "+1E2", 100.0),
])
def test_good_numbers_are_read(kind, text, expected):
    value = (numbers.whole if kind == "int" else numbers.finite)(text)
    assert value == expected and type(value) is (int if kind == "int" else float)


@pytest.mark.parametrize("text", ["\u0663", "\u00b2", "1_6", " 16", "16 ", "0x10", "", "1.0", "1e3", "--1", "+-1",
                                  "nan", "inf", "\uff11"])
def test_bad_whole_numbers_are_refused(text):
    with pytest.raises(ValueError, match="is not a whole number written in the digits 0-9"):
        numbers.whole(text)


@pytest.mark.parametrize("text", ["\u0663", "\u00b2", "1_6", " 16", "nan", "NaN", "inf", "-inf", "infinity", "0x10",
                                  "", ".", "e3", "1e", "1..2", "\u0661.5"])
def test_bad_decimals_are_refused(text):
    with pytest.raises(ValueError, match="is not a finite number written in the digits 0-9"):
        numbers.finite(text)


@pytest.mark.parametrize("text", ["1e400", "-1e309", "9" * 400])
def test_overflowing_decimals_are_refused(text):
    with pytest.raises(ValueError, match=r"is not a finite number \(it is too large\)$"):
        numbers.finite(text)


def test_numbers_given_as_numbers():
    """Defaults reach the Click types as numbers: they pass, bools and non-finite ones do not."""
    assert numbers.whole(8) == 8 and numbers.finite(1) == 1.0 and numbers.finite(0.25) == 0.25
    for bad in (True, 1.5):
        with pytest.raises(ValueError):
            numbers.whole(bad)
    for bad in (math.nan, math.inf, 10 ** 400, False):
        with pytest.raises(ValueError):
            numbers.finite(bad)


def test_lists_and_grids():
    assert numbers.wholes("224,320") == [224, 320] and numbers.wholes("2/8", "/") == [2, 8]
    assert numbers.grid("14x16") == (14, 16) and numbers.grid("7X7") == (7, 7) and numbers.grid("4,6") == (4, 6)
    for bad in ("224,", "224, 320", "2\u0662,3", "1_0,2"):
        with pytest.raises(ValueError):
            numbers.wholes(bad)
    for bad, message in (("7x\u0667", "in the digits 0-9"), ("0x7", "of positive sides"), ("7", "in the digits 0-9"),
                         ("7x7x7", "in the digits 0-9"), (" 7x7", "in the digits 0-9")):
        with pytest.raises(ValueError, match=message):
            numbers.grid(bad)


def test_the_library_parsers_read_strictly():
    from gradcam_cli.evaluate.gate import parse_thresholds
    from gradcam_cli.files.inputs import parse_shard

    assert parse_shard("2/8") == (2, 8) and parse_shard("+1/2") == (1, 2)
    for bad in ("\u0662/8", "2/\u00b2", " 2/8", "2/8 ", "2_0/30", "2.0/8"):
        with pytest.raises(ValueError, match="expected K/N in the digits 0-9"):
            parse_shard(bad)
    assert parse_thresholds("pointing=0.8, insertion=.5") == {"pointing": 0.8, "insertion_auc": 0.5}
    for bad in ("pointing=nan", "pointing=inf", "pointing=\u0660.5", "pointing=0_5", "pointing=1e400"):
        with pytest.raises(ValueError, match="each NUMBER finite and in the digits 0-9"):
            parse_thresholds(bad)


def test_the_token_grid_parser_reads_strictly(keras):
    from gradcam_cli.models.tokens import parse_grid

    assert parse_grid("14x14") == (14, 14)
    with pytest.raises(ValueError, match="in the digits 0-9"):
        parse_grid("\u0661\u0664x14")


def test_click_types_keep_clicks_ranges_and_help():
    from gradcam_cli.cli.numbers import StrictFloatRange, StrictIntRange, strict_type

    assert StrictIntRange(min=1).convert("+2", None, None) == 2
    assert StrictFloatRange(0.0, 1.0).convert(".5", None, None) == 0.5
    assert StrictFloatRange(0.0, 1.0, min_open=True)._describe_range() == "0.0<x<=1.0"
    assert type(strict_type(float)).__name__ == "StrictFloat" and strict_type(int, 1).min == 1
    with pytest.raises(click.BadParameter, match="0.0 is not in the range 0.0<x<=1.0."):
        StrictFloatRange(0.0, 1.0, min_open=True).convert("0", None, None)
    help_text = " ".join(invoke_cli("gradcam", "--help").stdout.split())
    assert "--alpha FLOAT RANGE Heatmap opacity in the overlay. [default: 0.4; 0.0<=x<=1.0]" in help_text
    assert "-b, --batch-size INTEGER RANGE Images per forward/backward pass. [default: 8; x>=1]" in help_text
    assert "[x<=None]" not in help_text  # an unbounded method option (--finer-alpha) is a plain FLOAT


def test_missing_image_keeps_clicks_usage_block():
    result = invoke_cli("gradcam", "-m", "demo-gap")
    assert result.returncode == 2 and "Usage: " in result.stderr and "Missing argument 'IMAGE...'" in result.stderr


def test_an_output_index_is_ascii(tmp_path):
    """--output ² was an index to str.isdigit() and then int() failed: now it is a name, not found."""
    result = invoke_cli(*GAP, "--output", "\u00b2", "-o", tmp_path / "out", "-q")
    assert result.returncode == 2
    assert result.stderr.strip() == ("Error: demo-gap: no output '\u00b2': the model's outputs are 0: predictions (4); "
                                     "choose the classifier output to explain (--output NAME|INDEX)")


def test_a_ray_port_in_other_digits_is_left_to_ray():
    from gradcam_cli.distributed.cluster import _check_reachable

    assert _check_reachable("127.0.0.1:\u00b2", timeout_s=1) is None  # not int('\u00b2'): a ValueError before
