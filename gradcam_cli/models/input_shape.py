"""A model's input: its shape, its sides (an image's (H, W), a volume's (D1, D2, D3)) and its
channels, each checked, with one-line refusals that say what would fit."""

from gradcam_cli.errors import ModelError, argument

# The largest input side accepted for a model whose input size is free: 8192 x 8192 x 3 float32
# is already 800 MB an image.
MAX_INPUT_SIDE = 8192


def input_shape(model, ranks=(4, 5)):
    """The model's one input shape, (batch, H, W, C) or (batch, D1, D2, D3, C); ModelError otherwise."""
    shape = model.input_shape
    if isinstance(shape, list):
        if len(shape) != 1:
            raise ModelError(f"the model has {len(shape)} inputs; an image classifier with one is needed")
        shape = shape[0]
    if len(shape) not in ranks:
        raise ModelError(f"the model's input shape {shape} is not (height, width, channels) images nor (D1, D2, D3, "
                         "channels) volumes")
    return shape


def input_channels(model):
    """The model's input channels: 3 for RGB (and a free channel count), 1 for single-channel
    images or volumes ((batch, D1, D2, D3, channels) inputs: demo-volume's); other counts are kept
    here (tests drive the engine with them) and refused for images by `check_image_channels`."""
    return input_shape(model)[-1] or 3


def check_image_channels(loaded):
    """ModelError unless an image can give `loaded` its input: 3 channels (RGB) or 1 (luminance).
    A volume model takes its volumes' channels as they are stored."""
    if len(loaded.input_size) == 2 and loaded.channels not in (1, 3):
        raise ModelError(f"{loaded.name} takes {loaded.channels}-channel inputs; an image gives 1 (luminance) "
                           "or 3 (RGB)")
    return loaded


def input_size(model, requested):
    """The model's input sides, (H, W) or (D1, D2, D3): its own, or `requested` where they are free."""
    shape = input_shape(model)
    if len(shape) == 5:
        return volume_size(shape[1:4], requested)
    height, width = shape[1], shape[2]
    if requested is not None and len(requested) != 2:
        raise ModelError(f"input size {'x'.join(map(str, requested))}: the model takes images: give N or H,W")
    if requested is not None:
        if height is not None and (height, width) != tuple(requested):
            raise ModelError(
                f"input size {requested[0]}x{requested[1]}: the model takes {height}x{width} inputs"
            )
        if max(requested) > MAX_INPUT_SIDE:
            raise ModelError(f"input size {requested[0]}x{requested[1]}: each side must be at most "
                               f"{MAX_INPUT_SIDE}")
        return tuple(requested)
    if height is None or width is None:
        raise ModelError(f"the model's input size is not fixed: give it ({argument('input_size', '(H, W)', 'H,W')})")
    return (height, width)


def volume_size(sides, requested):
    """A volume model's (D1, D2, D3): its input's, or `requested` when the model leaves them free."""
    spelled = "x".join(str(side) for side in sides)
    if requested is not None:
        requested = tuple(requested)
        if len(requested) != 3:
            raise ModelError(f"input size {'x'.join(map(str, requested))}: the model takes volumes "
                             f"({spelled}): give three sides")
        if all(side is not None for side in sides) and requested != tuple(sides):
            raise ModelError(f"input size {'x'.join(map(str, requested))}: the model takes {spelled} inputs")
        if max(requested) > MAX_INPUT_SIDE:
            raise ModelError(f"input size {'x'.join(map(str, requested))}: each side must be at most {MAX_INPUT_SIDE}")
        return requested
    if any(side is None for side in sides):
        raise ModelError(f"the model's input size is not fixed ({spelled}): give it "
                         f"({argument('input_size', '(D1, D2, D3)', 'D1,D2,D3')})")
    return tuple(sides)
