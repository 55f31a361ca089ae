"""What a new-user trial of the transformer, target and concepts features found (issue 31): a
--grid whose left-over tokens are not the model's prefix, concepts named on the wrong shape,
concepts' writes left half-done, records claiming options that had no effect, and checks that
came after the model loaded or named the wrong cure."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import invoke_cli

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"
CIRCLE = SAMPLES / "synthetic_circle.png"


# --- 1. a given grid leaves the model's own prefix, or is refused ------------------------------

@pytest.mark.parametrize("count, grid, own_embedding, expected", [
    (65, (8, 8), (8, 8), (8, 8, 1)),   # the model's own grid: its class token left over
    (65, (4, 16), (8, 8), (4, 16, 1)),  # another shape of the same 64 patches
    (64, (4, 16), None, (4, 16, 0)),    # no prefix and none read: nothing left over
])
def test_a_given_grid_keeps_the_models_own_prefix(count, grid, own_embedding, expected):
    from gradcam_cli.models import tokens

    found = tokens.read_grid(count, (64, 64), own_embedding, grid)
    assert (found.height, found.width, found.prefix) == expected and found.source == "given"


@pytest.mark.parametrize("count, grid, own_embedding, message", [
    (65, (7, 7), (8, 8), "its 65 tokens are a 7x7 grid (49 tokens) with 16 left over, but the model's own reading "
                         "has 1 prefix token(s): give a grid of 64 tokens, or the prefix tokens too (prefix_tokens=N)"),
    (65, (5, 13), (8, 8), "its 65 tokens are a 5x13 grid (65 tokens) with 0 left over, but the model's own reading "
                          "has 1 prefix token(s): give a grid of 64 tokens, or the prefix tokens too (prefix_tokens=N)"),
    (50, (7, 7), None, "its 50 tokens are a 7x7 grid (49 tokens) with 1 left over, but the model gives no prefix "
                       "count of its own: give a grid of 50 tokens, or the prefix tokens too (prefix_tokens=N)"),
])
def test_a_given_grid_that_leaves_other_tokens_is_refused(count, grid, own_embedding, message):
    from gradcam_cli.errors import GradcamError
    from gradcam_cli.models import tokens

    with pytest.raises(ValueError) as caught:
        tokens.read_grid(count, (64, 64), own_embedding, grid)
    assert str(GradcamError(caught.value.args[0])) == message  # the option spelled as the API takes it
    # said together with the prefix, the same grid is the user's reading
    assert tokens.read_grid(count, (64, 64), own_embedding, grid, count - grid[0] * grid[1]).source == "given"


def test_grid_7x7_on_demo_vit_is_refused_in_one_line(tmp_path):
    result = invoke_cli(CIRCLE, "-m", "demo-vit", "--grid", "7x7", "-o", tmp_path / "out", "--json")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("Error: demo-vit: the default layer 'block4_norm1' (the input of the last attention "
                             "layer) has output shape (65, 64): its 65 tokens are a 7x7 grid (49 tokens) with 16 left "
                             "over, but the model's own reading has 1 prefix token(s): give a grid of 64 tokens, or the "
                             "prefix tokens too (--prefix-tokens N)\n")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    # the model's own grid, given, is recorded as read
    result = invoke_cli(CIRCLE, "-m", "demo-vit", "--grid", "8x8", "-o", tmp_path / "out", "--json", "-q")
    assert result.returncode == 0
    record = json.loads(result.stdout.splitlines()[0])
    assert record["grid"] == [8, 8] and record["prefix_tokens"] == 1
