"""Layers the dilated networks need (models/dilated.py): pooling "a trous" and reading a grid.

Both are registered with Keras, so a converted model can be saved and loaded like any other.
"""

import keras
from keras import ops


def _pair(value, name):
    pair = tuple(value) if isinstance(value, (list, tuple)) else (value, value)
    if len(pair) != 2 or any(int(v) != v or v < 1 for v in pair):
        raise ValueError(f"{name} must be a positive integer or a pair of them. Received: {name}={value!r}")
    return tuple(int(v) for v in pair)


def _shift(x, axis, step):
    """x moved back by `step` along `axis` (1 or 2); the last row or column is repeated to fill."""
    if step == 0:
        return x
    size = x.shape[axis]
    if step >= size:
        edge = x[:, -1:] if axis == 1 else x[:, :, -1:]
        return ops.repeat(edge, size, axis=axis)
    if axis == 1:
        kept, edge = x[:, step:], x[:, -1:]
    else:
        kept, edge = x[:, :, step:], x[:, :, -1:]
    return ops.concatenate([kept, ops.repeat(edge, step, axis=axis)], axis=axis)


@keras.saving.register_keras_serializable(package="gradcam_cli")
class ATrousPooling2D(keras.layers.Layer):
    """Max (or average) pooling with stride 1 over a dilated window: output[i, j] reduces
    x[i + a * dy, j + b * dx] for a < py, b < px. On the pixels that are multiples of
    (dy * py, dx * px) it equals ordinary (py, px) pooling, stride (py, px), of the sub-grid of
    step (dy, dx): this is how a pooled network is computed densely ("algorithme a trous", Holschneider et al. 1989; used in
    DeepLab, Chen et al. 2015). The output keeps the input's size; windows running past the end
    use the last row or column."""

    def __init__(self, pool_size=2, dilation=1, kind="max", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _pair(pool_size, "pool_size")
        self.dilation = _pair(dilation, "dilation")
        if kind not in ("max", "average"):
            raise ValueError(f"kind must be 'max' or 'average'. Received: kind={kind!r}")
        self.kind = kind

    def call(self, x):
        (py, px), (dy, dx) = self.pool_size, self.dilation
        rows = [_shift(x, 1, a * dy) for a in range(py)]
        cells = [_shift(row, 2, b * dx) for row in rows for b in range(px)]
        if self.kind == "max":
            result = cells[0]
            for cell in cells[1:]:
                result = ops.maximum(result, cell)
            return result
        return ops.mean(ops.stack(cells, axis=0), axis=0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "dilation": self.dilation, "kind": self.kind}


@keras.saving.register_keras_serializable(package="gradcam_cli")
class GridSubsample(keras.layers.Layer):
    """Every `step`-th pixel from the top-left corner: x[:, ::sy, ::sx]. The dense network's
    classifier reads its last pooled map on the grid where the original network had its pixels."""

    def __init__(self, step=2, **kwargs):
        super().__init__(**kwargs)
        self.step = _pair(step, "step")

    def call(self, x):
        return x[:, :: self.step[0], :: self.step[1], :]

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        size = lambda n, s: None if n is None else -(-n // s)
        return (batch, size(height, self.step[0]), size(width, self.step[1]), channels)

    def get_config(self):
        return {**super().get_config(), "step": self.step}
