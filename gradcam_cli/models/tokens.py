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
"""

from dataclasses import dataclass

from keras import ops

from gradcam_cli.errors import argument
from gradcam_cli.numbers import grid as grid_of_text

# The most prefix tokens read without --prefix-tokens: a class token, a distillation token and
# registers (DINOv2 with registers has 1 + 4).
MAX_PREFIX = 16
_GRID, _PREFIX = argument("grid", "(H, W)", "HxW"), argument("prefix_tokens", "N")


@dataclass(frozen=True)
class TokenGrid:
    """How a (tokens, channels) output reads as a (height, width, channels) map: `prefix` tokens
    first, then height x width patch tokens row by row. `source`: where the grid came from."""

    height: int
    width: int
    prefix: int
    source: str = "given"

    @property
    def tokens(self):
        return self.prefix + self.height * self.width

    def to_grid(self, tokens):
        """(B, N, C) tokens -> (B, h, w, C) patch tokens (keras.ops)."""
        patches = tokens[:, self.prefix : self.tokens]
        return ops.reshape(patches, (-1, self.height, self.width, tokens.shape[-1]))

    def to_tokens(self, grid, tokens):
        """The (B, N, C) sequence `tokens` with its patch tokens replaced by `grid` (B, h, w, C)."""
        patches = ops.reshape(grid, (-1, self.height * self.width, grid.shape[-1]))
        if not self.prefix:
            return patches
        return ops.concatenate([tokens[:, : self.prefix], ops.cast(patches, tokens.dtype)], axis=1)

    def from_grid(self, grid):
        """(B, N, C) tokens from a grid alone: only when there is no prefix (the upper graph)."""
        if self.prefix:
            raise ValueError(f"the layer's {self.prefix} prefix token(s) are not part of its map: the layers above "
                             "it cannot be run from the map alone")
        return ops.reshape(grid, (-1, self.height * self.width, grid.shape[-1]))

    def describe(self):
        return f"{self.height}x{self.width}+{self.prefix}"

    def as_record(self):
        return {"grid": [self.height, self.width], "prefix_tokens": self.prefix}


def parse_grid(text):
    """'14x14' or '14,16' -> (14, 16), in the digits 0-9 (gradcam_cli.numbers.grid, which the
    command line checks --grid with before Keras loads). ValueError otherwise."""
    return grid_of_text(text)


def _input_grids(input_size):
    """(H / p, W / p) for every patch size p > 1 dividing both sides, largest first."""
    height, width = input_size
    return [(height // p, width // p) for p in range(2, min(height, width) + 1) if not height % p and not width % p]


def own_prefix(count, input_size, embedding=None):
    """The prefix token count the model's own reading gives (read_grid without a grid or prefix: the patch
    embedding's grid, else the input size over a patch size), or None when its tokens have no such reading."""
    try:
        return read_grid(count, input_size, embedding).prefix
    except ValueError:
        return None


def _check_left_over(count, grid, left, own):
    """A given grid without a given prefix: the tokens left over are the prefix only when they are as many as the
    model's own reading has (its class token, distillation token, registers), or none when it has no reading.
    Otherwise patch tokens would be taken for prefix tokens (or a class token for a patch): ValueError naming both."""
    if left == (own or 0):
        return
    height, width = grid
    has = f"the model's own reading has {own} prefix token(s)" if own is not None else \
        "the model gives no prefix count of its own"
    raise ValueError(f"its {count} tokens are a {height}x{width} grid ({height * width} tokens) with {left} left over, "
                     f"but {has}: give a grid of {count - (own or 0)} tokens, or the prefix tokens too ({_PREFIX})")


def read_grid(count, input_size, embedding=None, grid=None, prefix=None):
    """The TokenGrid of a layer with `count` tokens, for inputs of `input_size` (H, W).

    embedding: the (h, w) of the patch embedding's spatial output, when the model has one before
    this layer. grid, prefix: given by the user (either may be None). Without a grid, the
    embedding's grid is taken when it fits, else the input size over a patch size dividing both
    sides that leaves the fewest prefix tokens (at most MAX_PREFIX unless `prefix` is given). ValueError,
    naming the numbers, when the tokens cannot be read as prefix + h x w.
    """
    if count is None:
        raise ValueError("its token count is not fixed")
    if grid is not None:
        height, width = grid
        left = count - height * width
        if prefix is not None and prefix != left or left < 0:
            wanted = f"{prefix} prefix token(s) + " if prefix is not None else ""
            raise ValueError(f"its {count} tokens are not {wanted}a {height}x{width} grid ({height * width} tokens)")
        if prefix is None:
            _check_left_over(count, (height, width), left, own_prefix(count, input_size, embedding))
        return TokenGrid(height, width, left, "given")
    candidates = ([(tuple(embedding), "patch embedding")] if embedding is not None else []) + \
                 [(g, "input size") for g in _input_grids(input_size)]
    best = None
    for (height, width), source in candidates:
        left = count - height * width
        if left < 0 or (prefix is not None and left != prefix) or (prefix is None and left > MAX_PREFIX):
            continue
        if source == "patch embedding":  # the model's own grid, when it fits
            return TokenGrid(height, width, left, source)
        if best is None or left < best.prefix:
            best = TokenGrid(height, width, left, source)
    if best is None:
        shown = f"{embedding[0]}x{embedding[1]} (the patch embedding)" if embedding is not None else \
            f"the input {input_size[0]}x{input_size[1]} over a patch size dividing it"
        after = f"{prefix} prefix token(s) + " if prefix is not None else f"up to {MAX_PREFIX} prefix tokens + "
        raise ValueError(f"its {count} tokens are not {after}a grid of {shown}: give the grid and prefix tokens "
                         f"({_GRID}, {_PREFIX})")
    return best
