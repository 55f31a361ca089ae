"""Token layers as maps: reading a transformer layer's (tokens, channels) output as a
(height, width, channels) grid.

A vision transformer cuts the image into a grid of patches and carries one token per patch,
after a few tokens of its own (class, distillation, registers: the prefix). Its layers output
(batch, prefix + h * w, channels). Such a layer can be the target of a class activation map once
the prefix is dropped and the rest reshaped to (h, w, channels), row by row (pytorch-grad-cam's
`reshape_transform`). The engine does exactly that at the tap (`TokenGrid.to_grid`), so every
method sees (batch, h, w, channels) activations and gradients, and the prefix tokens pass on to
the layers above unchanged (`TokenGrid.to_tokens`).

The grid is found from the model (`read_grid`): the (h, w) of the patch embedding's spatial output
(the last (height, width, channels) layer before the token layer), else the input size over a
patch size; the prefix is what is left. Given `grid` and `prefix` (--grid HxW, --prefix-tokens N)
override. A grid given alone leaves its remaining tokens as the prefix only when they are as many as
the model's own reading gives (none when it has no reading): a 7x7 grid on 65 tokens read 8x8 + 1
would otherwise take 16 patch tokens for class tokens. The prefix tokens come first, as in ViT, DeiT and DINOv2 (class, distillation,
registers). A model that appends such tokens after its patches would be read shifted by this
rule; no such layout is supported yet.

Clips: a video transformer whose input is (T, H, W, C) and whose patch embedding is a Conv3D of
stride (t, p, p) (ViViT's tubelets, Arnab et al. 2021) carries (batch, prefix + t' * h' * w',
channels) tokens. Its token layers read as a (t', h', w', channels) grid (`TokenGrid.frames` is t'),
rows in a Conv3D output's order reshaped: time slowest, then height, then width; the methods then
see (batch, t', h', w', channels), as a Conv3D layer's. The grid is the last (d1, d2, d3, channels)
layer's before the token layer, else the clip's size over a tubelet (t dividing T, p > 1 dividing H
and W) when one reading alone leaves the fewest prefix tokens; given, TxHxW (--grid 4x14x14).
"""

import math
from dataclasses import dataclass

from keras import ops

from gradcam_cli.errors import argument
from gradcam_cli.numbers import grid_sides

# The most prefix tokens read without --prefix-tokens: a class token, a distillation token and
# registers (DINOv2 with registers has 1 + 4).
MAX_PREFIX = 16
_GRID, _PREFIX = argument("grid", "(H, W)", "HxW"), argument("prefix_tokens", "N")
_CLIP_GRID = argument("grid", "(T, H, W)", "TxHxW")


@dataclass(frozen=True)
class TokenGrid:
    """How a (tokens, channels) output reads as a (height, width, channels) map: `prefix` tokens
    first, then height x width patch tokens row by row. `source`: where the grid came from.
    `frames`: a clip transformer's t' (its map (t', h, w, channels), time slowest), else None."""

    height: int
    width: int
    prefix: int
    source: str = "given"
    frames: int | None = None

    @property
    def sides(self):
        """(h, w), or a clip's (t', h, w)."""
        return (self.height, self.width) if self.frames is None else (self.frames, self.height, self.width)

    @property
    def patches(self):
        return math.prod(self.sides)

    @property
    def tokens(self):
        return self.prefix + self.patches

    def to_grid(self, tokens):
        """(B, N, C) tokens -> (B, h, w, C) patch tokens, a clip's (B, t', h, w, C) (keras.ops)."""
        patches = tokens[:, self.prefix : self.tokens]
        return ops.reshape(patches, (-1,) + self.sides + (tokens.shape[-1],))

    def to_tokens(self, grid, tokens):
        """The (B, N, C) sequence `tokens` with its patch tokens replaced by `grid` (B, h, w, C)."""
        patches = ops.reshape(grid, (-1, self.patches, grid.shape[-1]))
        if not self.prefix:
            return patches
        return ops.concatenate([tokens[:, : self.prefix], ops.cast(patches, tokens.dtype)], axis=1)

    def from_grid(self, grid):
        """(B, N, C) tokens from a grid alone: only when there is no prefix (the upper graph)."""
        if self.prefix:
            raise ValueError(f"the layer's {self.prefix} prefix token(s) are not part of its map: the layers above "
                             "it cannot be run from the map alone")
        return ops.reshape(grid, (-1, self.patches, grid.shape[-1]))

    def describe(self):
        return f"{_text(self.sides)}+{self.prefix}"

    def as_record(self):
        return {"grid": list(self.sides), "prefix_tokens": self.prefix}


def _text(sides):
    return "x".join(map(str, sides))


def _token_grid(sides, prefix, source):
    """The TokenGrid of (h, w) or a clip's (t', h, w) sides."""
    return TokenGrid(sides[-2], sides[-1], prefix, source, None if len(sides) == 2 else sides[0])


def parse_grid(text):
    """'14x14' or '14,16' -> (14, 16); a clip transformer's '4x14x14' -> (4, 14, 14); in the digits 0-9
    (gradcam_cli.numbers.grid_sides). A tuple or list of 2 or 3 positive ints is taken as it is. ValueError otherwise."""
    if not isinstance(text, (tuple, list)):
        return grid_sides(text)
    if len(text) not in (2, 3) or not all(isinstance(side, int) and not isinstance(side, bool) and side > 0
                                          for side in text):
        raise ValueError(f"expected a grid (H, W) or (T, H, W) of positive whole numbers. Received: {tuple(text)!r}")
    return tuple(text)


def _divisors(side, least=2):
    return [n for n in range(least, side + 1) if not side % n]


def _input_grids(input_size):
    """(H / p, W / p) for every patch size p > 1 dividing both sides, largest first; for a clip's (T, H, W),
    (T / t, H / p, W / p) for every tubelet t dividing T (1 included) and p."""
    if len(input_size) == 3:
        frames, height, width = input_size
        return [(frames // t,) + grid for t in _divisors(frames, 1) for grid in _input_grids((height, width))]
    height, width = input_size
    return [(height // p, width // p) for p in _divisors(min(height, width)) if not height % p and not width % p]


def own_prefix(count, input_size, embedding=None):
    """The prefix token count the model's own reading gives (read_grid without a grid or prefix: the patch
    embedding's grid, else the input size over a patch size), or None when its tokens have no such reading."""
    try:
        return _own_reading(count, input_size, embedding, None)[0].prefix  # two readings of a clip: the same prefix
    except ValueError:
        return None


def _check_left_over(count, grid, left, own):
    """A given grid without a given prefix: the tokens left over are the prefix only when they are as many as the
    model's own reading has (its class token, distillation token, registers), or none when it has no reading.
    Otherwise patch tokens would be taken for prefix tokens (or a class token for a patch): ValueError naming both."""
    if left == (own or 0):
        return
    has = f"the model's own reading has {own} prefix token(s)" if own is not None else \
        "the model gives no prefix count of its own"
    raise ValueError(f"its {count} tokens are a {_text(grid)} grid ({math.prod(grid)} tokens) with {left} left over, "
                     f"but {has}: give a grid of {count - (own or 0)} tokens, or the prefix tokens too ({_PREFIX})")


def _check_sides(grid, input_size):
    """A given grid has as many sides as the input: HxW for images, TxHxW for clips (ValueError otherwise)."""
    if len(grid) != len(input_size):
        wanted = f"a TxHxW grid ({_CLIP_GRID})" if len(input_size) == 3 else f"an HxW grid ({_GRID})"
        kind = "clips or volumes (T, H, W)" if len(input_size) == 3 else "images (H, W)"
        raise ValueError(f"the model takes {kind}: its tokens read on {wanted}. Received: {_text(grid)}")


def read_grid(count, input_size, embedding=None, grid=None, prefix=None):
    """The TokenGrid of a layer with `count` tokens, for inputs of `input_size` (H, W), or a clip
    transformer's (T, H, W).

    embedding: the (h, w) of the patch embedding's spatial output (a clip's (t', h, w) of its
    Conv3D's), when the model has one before this layer. grid, prefix: given by the user (either
    may be None). Without a grid, the embedding's grid is taken when it fits, else the input size
    over a patch size dividing both sides that leaves the fewest prefix tokens (at most MAX_PREFIX
    unless `prefix` is given; a clip's: when that reading is the only one with so few). ValueError,
    naming the numbers, when the tokens cannot be read as prefix + h x w (+ t' x h x w).
    """
    if count is None:
        raise ValueError("its token count is not fixed")
    if grid is not None:
        grid = tuple(grid)
        _check_sides(grid, input_size)
        left = count - math.prod(grid)
        if prefix is not None and prefix != left or left < 0:
            wanted = f"{prefix} prefix token(s) + " if prefix is not None else ""
            raise ValueError(f"its {count} tokens are not {wanted}a {_text(grid)} grid ({math.prod(grid)} tokens)")
        if prefix is None:
            _check_left_over(count, grid, left, own_prefix(count, input_size, embedding))
        return _token_grid(grid, left, "given")
    best, tied = _own_reading(count, input_size, embedding, prefix)
    if tied is not None:
        raise ValueError(f"its {count} tokens read as a {_text(best.sides)} or a {_text(tied)} grid of the input "
                         f"{_text(input_size)} (no Conv3D patch embedding says which): give the grid ({_CLIP_GRID})")
    return best


def _own_reading(count, input_size, embedding, prefix):
    """read_grid without a grid: (the TokenGrid, None), or (one of two readings with as few prefix tokens, the other's
    sides) when a clip's tokens read both ways; ValueError when none fits."""
    candidates = ([(tuple(embedding), "patch embedding")] if embedding is not None else []) + \
                 [(g, "input size") for g in _input_grids(input_size)]
    best, tied = None, None
    for sides, source in candidates:
        left = count - math.prod(sides)
        if left < 0 or (prefix is not None and left != prefix) or (prefix is None and left > MAX_PREFIX):
            continue
        if source == "patch embedding":  # the model's own grid, when it fits
            return _token_grid(sides, left, source), None
        if best is None or left < best.prefix:
            best, tied = _token_grid(sides, left, source), None
        elif left == best.prefix and tied is None:
            tied = sides  # a clip's tokens can read as two tubelets: (4, 4, 4) and (1, 8, 8) are both 64
    if best is None:
        shown = f"{_text(embedding)} (the patch embedding)" if embedding is not None else \
            f"the input {_text(input_size)} over a patch size dividing it"
        after = f"{prefix} prefix token(s) + " if prefix is not None else f"up to {MAX_PREFIX} prefix tokens + "
        wanted = _CLIP_GRID if len(input_size) == 3 else _GRID
        raise ValueError(f"its {count} tokens are not {after}a grid of {shown}: give the grid and prefix tokens "
                         f"({wanted}, {_PREFIX})")
    return best, tied
