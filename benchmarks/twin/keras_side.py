"""The Keras side of the torch twin: keras.io's Conv3D classifier ("3D image classification from
CT scans", https://keras.io/examples/vision/3D_image_classification/) built at any width, and any
Conv3D / MaxPool3D / BatchNormalization / GAP3D / Dense / Dropout stack exported as a spec and
weights in torch's layouts (an .npz) for benchmarks/twin/torch_twin.py, which rebuilds it in torch.

Run by the project's Python (TensorFlow), never by the twin's (torch): the two never share a process.
"""

import json

import numpy as np

KERAS_IO_WIDTHS = (64, 64, 128, 256)  # keras.io's four Conv3D blocks
KERAS_IO_INPUT = (128, 128, 64)  # its (width, height, depth) input, one channel
KERAS_IO_DENSE = 512


def keras_io_ct(input_size=KERAS_IO_INPUT, widths=KERAS_IO_WIDTHS, dense=KERAS_IO_DENSE, seed=0, name="keras_io_ct"):
    """keras.io's get_model: per width a Conv3D(width, 3, ReLU, valid padding) named convN, MaxPool3D(2),
    BatchNormalization; then GlobalAveragePooling3D, Dense(dense, ReLU), Dropout(0.3), Dense(1,
    sigmoid). Random weights from `seed` (Keras' initialisers), the batch normalisations' moving
    statistics and scales drawn too (not the identity they start as), so the twin must carry them."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(int(seed))
    inputs = keras.Input((*input_size, 1), name="volume")
    x = inputs
    for block, width in enumerate(widths, start=1):
        x = layers.Conv3D(width, 3, activation="relu", name=f"conv{block}")(x)
        x = layers.MaxPool3D(2, name=f"pool{block}")(x)
        x = layers.BatchNormalization(name=f"bn{block}")(x)
    x = layers.GlobalAveragePooling3D(name="gap")(x)
    x = layers.Dense(dense, activation="relu", name="dense")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="predictions")(x)
    model = keras.Model(inputs, outputs, name=name)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            k = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, k), rng.normal(0.0, 0.1, k), rng.normal(0.0, 0.1, k),
                               rng.uniform(0.5, 2.0, k)])
    return model


def export(model, path):
    """Write `model` (a chain of Conv3D, MaxPooling3D, BatchNormalization, GlobalAveragePooling3D,
    Dense, Dropout layers) as an .npz the twin reads: 'spec' (JSON, one entry per layer), 'input' (the
    model's three input sides) and each
    layer's weights in torch's layout: a Conv3D kernel (kd, kh, kw, in, out) -> (out, in, kd, kh, kw),
    a Dense kernel (in, out) -> (out, in), batch normalisation's gamma, beta, moving mean and
    variance with its epsilon (Keras' default 1e-3, torch's 1e-5: it is written down). The last
    layer's sigmoid or softmax is left out (the twin returns logits, as the engine differentiates
    them). ValueError naming a layer of any other kind."""
    from keras import layers

    spec, arrays = [], {}
    chain = [layer for layer in model.layers if not isinstance(layer, layers.InputLayer)]
    for index, layer in enumerate(chain):
        last = index == len(chain) - 1
        entry = {"name": layer.name}
        if isinstance(layer, layers.Conv3D):
            kernel, *bias = layer.get_weights()
            entry.update(kind="conv3d", filters=int(kernel.shape[-1]), kernel=list(kernel.shape[:3]),
                         strides=list(layer.strides), padding=layer.padding,
                         activation=layer.activation.__name__, channels_in=int(kernel.shape[3]))
            if layer.padding == "same" and any(k % 2 == 0 or s != 1 for k, s in zip(kernel.shape[:3], layer.strides)):
                raise ValueError(f"the twin pads 'same' only for odd kernels with stride 1. Received: layer={layer.name}")
            arrays[f"{index}.weight"] = np.transpose(kernel, (4, 3, 0, 1, 2))
            arrays[f"{index}.bias"] = bias[0] if bias else np.zeros(kernel.shape[-1], np.float32)
        elif isinstance(layer, layers.MaxPooling3D):
            entry.update(kind="maxpool3d", pool=list(layer.pool_size), strides=list(layer.strides),
                         padding=layer.padding)
            if layer.padding != "valid":
                raise ValueError(f"the twin pools with 'valid' padding only. Received: layer={layer.name}")
        elif isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            entry.update(kind="batchnorm", epsilon=float(layer.epsilon), channels=int(gamma.shape[0]))
            arrays.update({f"{index}.weight": gamma, f"{index}.bias": beta, f"{index}.running_mean": mean,
                           f"{index}.running_var": variance})
        elif isinstance(layer, layers.GlobalAveragePooling3D):
            entry.update(kind="gap3d")
        elif isinstance(layer, layers.Dense):
            kernel, bias = layer.get_weights()
            activation = layer.activation.__name__
            entry.update(kind="dense", units=int(kernel.shape[1]), channels_in=int(kernel.shape[0]),
                         activation="linear" if last and activation in ("sigmoid", "softmax") else activation)
            arrays[f"{index}.weight"] = kernel.T
            arrays[f"{index}.bias"] = bias
        elif isinstance(layer, layers.Dropout):
            entry.update(kind="dropout", rate=float(layer.rate))
        else:
            raise ValueError(f"the twin has no {type(layer).__name__}. Received: layer={layer.name}")
        spec.append(entry)
    arrays = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in arrays.items()}
    sides = np.array(model.input_shape[1:4], dtype=np.int64)
    np.savez(path, spec=np.array(json.dumps(spec)), input=sides, **arrays)
