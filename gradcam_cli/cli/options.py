"""The options the commands share, and their parsers. Pure data and Click: no Keras here, so
`--help` stays instant."""

import click

from gradcam_cli.cli.base import UsageProblem
from gradcam_cli.cli.helptext import EXPLAIN, INPUT, LOADING, OUTPUT, RUN, SETTINGS, VOLUMES, grouped
from gradcam_cli.cli.numbers import BadValue, StrictFloatRange, StrictIntRange, strict_type
from gradcam_cli.explain.methods import POOLING
from gradcam_cli.explain.target_spec import spelled
from gradcam_cli.files.outputs import KINDS, MAP_KINDS, VOLUME_KINDS
from gradcam_cli.models.preprocess import MODES as PREPROCESS_MODES
from gradcam_cli.numbers import grid_sides, wholes

# The OpenCV colormap names, listed without importing cv2 at start-up.
COLORMAP_NAMES = (
    "autumn", "bone", "cividis", "cool", "deepgreen", "hot", "hsv", "inferno", "jet", "magma",
    "ocean", "parula", "pink", "plasma", "rainbow", "spring", "summer", "turbo", "twilight",
    "twilight_shifted", "viridis", "winter",
)


def _parse_size(ctx, param, value):
    if value is None:
        return None
    try:
        parts = wholes(value.lower(), "x,")
    except ValueError:
        raise BadValue(f"expected N or H,W (e.g. 224 or 224,320) in the digits 0-9. Received: {value!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) == 3 and min(parts) >= 1 and max(parts) <= MAX_INPUT_SIDE:
        return tuple(parts)  # a volume's three sides (a Conv3D model whose input is not fixed)
    if len(parts) != 2 or min(parts) < 8 or max(parts) > MAX_INPUT_SIDE:
        raise BadValue(f"expected N or H,W, each from 8 to {MAX_INPUT_SIDE}. Received: {value!r}")
    return tuple(parts)


# The largest --input-size side (models/loading.py's MAX_INPUT_SIDE; a test ties the two): 8192 x
# 8192 x 3 float32 is already 800 MB an image.
MAX_INPUT_SIDE = 8192


# Pillow's Image.MAX_IMAGE_PIXELS (files.images.DEFAULT_MAX_PIXELS; a test ties the three).
DEFAULT_MAX_PIXELS = 89_478_485


def _set_max_pixels(ctx, param, value):
    """--max-pixels: the one limit of files/'s decoding gate, set there (no command takes it)."""
    import re

    text = str(value)
    if not re.fullmatch(r"[0-9]{1,18}", text) or int(text) < 1:
        raise UsageProblem(f"--max-pixels {value}: give a whole number of pixels of at least 1, in the digits 0-9")
    from gradcam_cli.files.images import set_max_pixels

    set_max_pixels(int(text))


max_pixels_option = click.option(
    "--max-pixels", default=str(DEFAULT_MAX_PIXELS), show_default=True, metavar="N", expose_value=False,
    callback=_set_max_pixels,
    help="Refuse any image file (input, mask, reference, thumbnail source) whose header gives more than N "
         "pixels (width x height of the frame read), in one line, before it is decoded; the other "
         "images go on. Pillow's decompression-bomb limit by default.")


def _parse_window(ctx, param, value):
    """--window LOW,HIGH: two finite numbers in ASCII (gradcam_cli.numbers.finite, the strict rule of
    every number the command reads), LOW below HIGH; refused in one line otherwise."""
    if value is None:
        return None
    from gradcam_cli.numbers import finite

    parts = value.split(",")
    try:
        low, high = (finite(part) for part in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        low = high = None
    if low is None:
        raise BadValue(f"expected LOW,HIGH, two finite numbers such as -1000,400. Received: {value!r}")
    if not low < high:
        raise BadValue(f"LOW must be below HIGH. Received: {value!r}")
    return (low, high)


window_option = click.option(
    "--window", callback=_parse_window, metavar="LOW,HIGH",
    help="For a model of volumes: clip each volume's values to [LOW, HIGH] and scale them to [0, 1] (a CT "
         "window such as -1000,400 in Hounsfield units). Default: the values as stored.")

max_voxels_option = click.option(
    "--max-voxels", type=StrictIntRange(min=1), default=DEFAULT_MAX_PIXELS, show_default=True, metavar="N",
    help="Refuse any volume (NIfTI, NumPy, DICOM series) whose header gives more than N voxels (every axis "
         "multiplied), in one line, before its data is read; the others go on.")


frames_option = click.option(
    "--frames", type=StrictIntRange(min=1), metavar="N",
    help="For a video model (input T x H x W x 3: a Conv3D or TimeDistributed network, demo-clip): take N "
         "frames of each clip (a .mp4, .avi, .mov or .webm file, or a folder of numbered frames), evenly: "
         "indices floor(linspace(0, count - 1, N)), torchvision's UniformTemporalSubsample rule. Default: the "
         "model's T frames (a clip of fewer frames gives them all). N other than T: the N frames are resized "
         "over time to T on the way in, and the maps come back with N frames. Ignored for scans.")


def check_target(ctx, param, value):
    """--target: its spelling checked at once, before the model loads (explain.target_spec.parse,
    without Keras); the text itself is what the command receives."""
    if value is None:
        return None
    from gradcam_cli.cli.base import worded
    from gradcam_cli.explain.target_spec import TargetError, parse

    try:
        parse(value)
    except TargetError as error:
        raise UsageProblem(worded(error)) from None
    return value


def check_classes(ctx, param, value):
    """--class: an index in the digits 0-9 or a name; a number written otherwise ('²', '--1',
    another script's digits) is refused in one line."""
    values = value if isinstance(value, tuple) else (value,)
    for text in values:
        if text is None:
            continue
        from gradcam_cli.models.labels import whole_number

        stripped = str(text).strip()
        if whole_number(stripped) is None and stripped and all(c in "+-" or c.isnumeric() for c in stripped):
            raise UsageProblem(f"--class {text}: not a class index: write an index in the digits 0-9, or a "
                               "class name")
    return value


# What --target's help says of masks: the rule of files.images.read_mask.
MASK_RULE = ("A mask is an image of any size: where it has transparency, its pixels that are not fully transparent "
             "(alpha > 0) are inside; otherwise its values are labels, never scaled: a grey mask (8- or 16-bit) is "
             "inside where it is non-zero, a colour mask where any channel is. A cell of the output's grid is "
             "inside when at least half of it is.")


# What --target's help says of similar:IMAGE references: how api.Explainer embeds one (files.images.load_rgb,
# then prepare: model_view and model_inputs, as every input image).
REFERENCE_RULE = ("A similar:IMAGE reference is read and resized exactly as each input image is (EXIF "
                  "orientation applied; the whole image resized to the model's input by OpenCV, area averaging "
                  "when shrinking and bilinear when enlarging; with --crop the same centre crop; a keras-hub "
                  "preset's own image converter), then the model's preprocessing: another resize, such as "
                  "PIL's, gives a slightly different vector. A .npy reference is used as stored.")


def _save_parser(kinds):
    """A --save callback accepting the command's own kinds."""

    def parse(ctx, param, value):
        if value is None:
            return None  # the command's default (METHODS[...].default_save)
        chosen = tuple(dict.fromkeys(k.strip().lower() for k in value.split(",") if k.strip()))
        if not chosen or any(k not in kinds for k in chosen):
            listed = [kind for kind in kinds if kind not in VOLUME_KINDS]
            volume = [kind for kind in kinds if kind in VOLUME_KINDS]
            also = f"; for a volume also {', '.join(volume)}" if volume else ""
            raise UsageProblem(f"--save {value}: choose from {', '.join(listed)}, comma-separated{also}")
        return chosen

    return parse


_MAP_SAVE_HELP = ("What to write, comma-separated: heatmap, overlay, raw (the float map before "
                  "normalisation, as .npy (height, width) at the image's resolution), nifti (a volume's map as "
                  "NAME.METHOD.nii.gz with the input's affine; NIfTI and DICOM inputs). Default: heatmap,overlay "
                  "(for a volume: PNG montages of slices; raw is (D1, D2, D3) in the volume's axis order).")
_GUIDED_SAVE_HELP = ("What to write, comma-separated: heatmap, overlay, raw (the Grad-CAM map, as for "
                     "`gradcam gradcam`), gradient and gradcam (the input gradient and Guided Grad-CAM "
                     "images) and their -gray versions; raw also saves both as .npy (height, width, "
                     "channels) at the model's input size. Default: every PNG kind.")


def _parse_shard(ctx, param, value):
    if value is None:
        return None
    from gradcam_cli.files.inputs import parse_shard

    try:
        return parse_shard(value)
    except ValueError as error:
        raise BadValue(str(error)) from None


def _check_grid(ctx, param, value):
    """--grid HxW or TxHxW (--token-grid): its spelling checked at once, before Keras loads (the rule of
    models.tokens.parse_grid); the text itself is what the command receives."""
    if value is not None:
        try:
            grid_sides(value)
        except ValueError as error:
            raise BadValue(str(error)) from None
    return value


def _parse_weights(ctx, param, value):
    if value is None:
        return None
    return value.lower() if value.lower() in ("imagenet", "none") else value


def model_options(function=None, grid_flag="--grid", *sections):
    """Options that choose and load a model (shared by the method commands and `layers`), under
    their --help headings, with the command's own `sections` ((heading, [options]) pairs:
    helptext.grouped). `compare`, whose --grid lays out its figure, spells the token grid
    --token-grid (`model_options(grid_flag="--token-grid")`; its parameter is then token_grid)."""
    if function is None:
        return lambda decorated: model_options(decorated, grid_flag, *sections)
    return grouped(*model_sections(grid_flag), *sections)(function)


def model_sections(grid_flag="--grid"):
    """model_options' options as (heading, [options]) sections: --model and --weights under INPUT,
    the rest of loading under LOADING, --device and --verbose under RUN."""
    options = [
        click.option("--model", "-m", default="vgg16", show_default=True,
                     help="A keras.applications model name (case-insensitive; see `gradcam models`), "
                          "a path to a .keras / .h5 model file, or a keras-hub preset (hub:NAME, "
                          "kaggle://..., hf://..., hub:FOLDER; the [hub] extra)."),
        click.option("--weights", "-w", callback=_parse_weights, metavar="imagenet|none|PATH",
                     help="ImageNet weights (the default for named models; downloaded once into "
                          "~/.keras/models or $KERAS_HOME/models), none (random, for trying things "
                          "offline), or a weights file (.weights.h5 / .h5) to load into the model."),
    ]
    loading = [
        click.option("--preprocess", metavar="MODE",
                     help=f"Input preprocessing: {', '.join(PREPROCESS_MODES)} (0..1 scaling), or a "
                          "keras.applications name whose preprocess_input to use. Default: a named "
                          "model's own; none (raw 0..255) for model files. Given for a named model, it "
                          "replaces the model's own, with a warning. A 1-channel model is given the "
                          "image's luminance (0..255), then this preprocessing (none, unit or tf)."),
        click.option("--input-size", callback=_parse_size, metavar="N|H,W",
                     help="Input size for a model file whose input shape is not fixed (D1,D2,D3 for a volume "
                          "model)."),
        click.option("--labels", type=click.Path(dir_okay=False), metavar="FILE",
                     help="Class names for a model file: a text file (one per line) or JSON "
                          "(a list, or {index: name}). 1000-class files default to ImageNet's."),
        click.option("--trust-model", is_flag=True,
                     help="Allow Lambda layers (arbitrary Python code) when loading a .keras file "
                          "you trust; Keras's safe mode refuses them otherwise."),
        click.option("--import", "imports", multiple=True, metavar="MODULE|FILE.py",
                     help="Import a Python module or file before the model loads, so that the custom "
                          "layers it registers (keras.saving.register_keras_serializable) deserialize "
                          "(repeatable). Importing runs that file's code: only import code you trust. "
                          "Keras's safe mode stays on unless --trust-model."),
        click.option("--output", "output", metavar="NAME|INDEX",
                     help="For a model with several outputs: the output to explain, by name (a layer "
                          "name, or the key of a dict of outputs) or index; for a detector, BOXES,SCORES: "
                          "its decoded boxes (N, 4) and class scores (N, C) (a model with just those two is "
                          "found without it). Any other model with several outputs is refused without it, "
                          "listing them."),
        click.option(grid_flag, metavar="HxW", callback=_check_grid,
                     help="For a vision transformer: the patch grid its token layers are read as, HxW "
                          "(TxHxW for a video transformer's tubelets) (default: the patch embedding's, or "
                          "the input size over the patch size)."),
        click.option("--prefix-tokens", type=StrictIntRange(min=0), metavar="N",
                     help="For a vision transformer: the tokens before the patch grid (class, "
                          "distillation, register tokens), dropped from the map (default: what the "
                          "token count leaves beside the grid)."),
    ]
    run = [click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default="auto",
                        show_default=True, help="Where to compute."),
           click.option("--cache-dir", metavar="DIR|none",
                        help="On the JAX backend, where compiled programs are kept, so that a later run "
                             "of the same model and input size skips compiling (default: jax-cache in "
                             "$KERAS_HOME or ~/.keras; at most 1 GiB; none: no cache). The TensorFlow "
                             "backend keeps nothing between runs."),
           click.option("--verbose", "-v", is_flag=True, help="Log details, and TensorFlow's own messages.")]
    return [(INPUT, options), (LOADING, loading), (RUN, run)]


precision_option = click.option(
    "--precision", type=click.Choice(["float32", "mixed-bfloat16"]), default="float32", show_default=True,
    help="mixed-bfloat16: the convolutional layers compute in bfloat16 on float32 weights (faster on "
         "GPUs with bfloat16 units, half the activation memory; usually slower on CPUs); "
         "the classifier head and the maps stay float32. Grad-CAM maps then differ from float32 ones "
         "by about 1% of their maximum, guided gradients by up to about 10%.")


def method_options(guided=False, explain=(), settings=(), output=()):
    """Options every method command shares (`guided`: the --save kinds of guided backpropagation),
    under their --help headings, with the command's own: `explain` first under "What to explain"
    (its --method or --mode), `settings` first under "Method settings" (--pool, method_parameters'
    options), `output` last under "Output"."""
    return lambda function: _method_options(function, KINDS if guided else MAP_KINDS + VOLUME_KINDS,
                                            _GUIDED_SAVE_HELP if guided else _MAP_SAVE_HELP, explain, settings, output)


def _method_options(function, save_kinds, save_help, explain, settings, output):
    function = click.argument("images", nargs=-1, required=True, metavar="IMAGE...")(function)
    crop = click.option("--crop", is_flag=True,
                        help="Resize the shorter side then centre-crop to the model's input (the "
                             "ImageNet evaluation transform) instead of resizing the whole image.")
    what = [
        *explain,
        click.option("--layer", "-l", "layers", multiple=True, metavar="NAME",
                     help="Target layer (see `gradcam layers --model M`). Default: the model's last "
                          "convolutional feature layer, found automatically, also inside nested "
                          "models ('resnet50/conv5_block3_out'). Repeat it to average several layers' "
                          "maps (each normalised and upsampled to the input size)."),
        click.option("--class", "-c", "classes", multiple=True, metavar="INDEX|NAME", callback=check_classes,
                     help="Class to explain: an index or a class name such as boxer (repeatable). "
                          "Default: each image's top-1 prediction."),
        click.option("--target", "-t", metavar="SPEC", callback=check_target,
                     help=f"What the map explains: {spelled(meanings=True)}. Default: classes. " + MASK_RULE + " "
                          + REFERENCE_RULE),
        click.option("--top-k", type=StrictIntRange(min=1), default=1, show_default=True,
                     help="One map for each of the image's k most likely classes."),
    ]
    written = [
        click.option("--output-dir", "-o", type=click.Path(file_okay=False), default="gradcam_out",
                     show_default=True,
                     help="Where outputs go, named <input name>.<method>[.classN|.topK].<kind>.png, "
                          "folder trees mirrored (an explicit --class is always in the name). Files "
                          "in this folder are not taken as inputs; neither are masks (NAME.mask.png)."),
        click.option("--save", callback=_save_parser(save_kinds), metavar="KIND,...", help=save_help),
        click.option("--colormap", type=click.Choice(COLORMAP_NAMES, case_sensitive=False),
                     default="jet", show_default=True, help="OpenCV colormap for heatmaps."),
        click.option("--alpha", type=StrictFloatRange(0.0, 1.0), default=0.4, show_default=True,
                     help="Heatmap opacity in the overlay."),
        click.option("--json", "as_json", is_flag=True,
                     help="Write one JSON object per image to stdout: predictions, target class and "
                          "score, layer, output, channels, output paths, map statistics; a failed "
                          "image gets a record with an error field. Sizes and points are [width, "
                          "height] and [x, y]; raw .npy arrays are (height, width). Numbers that are "
                          "not finite are null."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar, warnings or summary."),
        click.option("--report", "report_dir", type=click.Path(file_okay=False), metavar="DIR",
                     help="Also write an HTML report of the run into DIR (DIR/index.html, thumbnails in "
                          "DIR/thumbs): the maps sortable and filterable, failures with their reasons; "
                          "as `gradcam report` writes from --json lines."),
        *output,
    ]
    run = [
        click.option("--batch-size", "-b", type=StrictIntRange(min=1), default=8, show_default=True,
                     help="Images per forward/backward pass."),
        click.option("--shard", callback=_parse_shard, metavar="K/N",
                     help="Process only shard K of N (1-based): a fixed share of the images chosen by "
                          "their names, so N jobs (a SLURM or Kubernetes job array) split a folder with "
                          "no coordination."),
        click.option("--skip-existing", is_flag=True,
                     help="Resume an interrupted run: skip each image whose record file "
                          "(NAME.METHOD.record.json, written after its outputs) was made from the same "
                          "file for the same request and whose outputs exist; its stored record is "
                          "printed (and reported) again in its place."),
        click.option("--ray", "ray_address", metavar="auto|local|ADDRESS",
                     help="Run on a Ray cluster (pip install 'gradcam-cli[ray]'): auto, the one this machine "
                          "belongs to (RAY_ADDRESS, or `ray start`); local, one started here; or the head's "
                          "ADDRESS (HOST:PORT). The same files and output lines, in input order. The images "
                          "and the output folder must be on storage every node shares (checked first)."),
        click.option("--workers", type=StrictIntRange(min=1), metavar="N",
                     help="With --ray: how many workers, one core each, each holding the model (about 1 GB "
                          "for a small one). Default: one per core of the cluster."),
        click.option("--jit", is_flag=True, help="Compile the gradient step with XLA (faster on GPUs; "
                                                 "a slower first batch)."),
        precision_option,
        max_pixels_option,
    ]
    smoothing = [
        click.option("--aug-smooth", is_flag=True,
                     help="Average each map over six views of the image (flipped or not, zoomed 0.9, 1.0, "
                          "1.1 about the centre), each mapped back: smoother maps, six times the work."),
        click.option("--eigen-smooth", is_flag=True,
                     help="The first principal component of the map's channel terms instead of their sum "
                          "(less noise; for methods whose map is a sum over channels)."),
    ]
    return model_options(function, "--grid", (INPUT, [crop]), (EXPLAIN, what), (SETTINGS, [*settings, *smoothing]),
                         (OUTPUT, written), (VOLUMES, [window_option, frames_option, max_voxels_option]), (RUN, run))



def pool_option(help_text="Grad-CAM's channel pooling."):
    return click.option("--pool", type=click.Choice(POOLING), default="mean", show_default=True, help=help_text)


def _click_type(option):
    if option.choices:
        return click.Choice(option.choices)
    if option.kind in (int, float):
        return strict_type(option.kind, option.minimum, option.maximum)
    return str


def _shown(value, kind):
    return "not given" if value is None else f"{value:g}" if kind is float else str(value)


def split_method_options(arguments):
    """A command's arguments split into (the methods' own options that were given, the rest):
    method_parameters' options are None when not given."""
    from gradcam_cli.explain.methods import OPTION_NAMES

    given = {name: arguments[name] for name in arguments if name in OPTION_NAMES and arguments[name] is not None}
    return given, {name: value for name, value in arguments.items() if name not in OPTION_NAMES}


def method_parameters(methods, prefix="", exclude=()):
    """method_parameter_options as one decorator (the options in their order, no heading)."""
    options = method_parameter_options(methods, prefix, exclude)

    def decorate(function):
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def method_parameter_options(methods, prefix="", exclude=()):
    """The options of `methods` (registry names), as a list of Click option decorators (the
    commands put them under "Method settings"), made from their registry entries: one Click
    option per flag (an option several methods share is one flag, its help naming them), each
    defaulting to None ("not given": the method's own default applies), and --compat. `prefix`
    begins --compat's help (what the options are for in this command); `exclude`: flags the
    command has for its own use (eval's --steps), which its methods' options then do not take."""
    from gradcam_cli.explain.methods import LIBRARIES, METHODS

    flags = {}
    for name in methods:
        for option in METHODS[name].options:
            flags.setdefault(option.spelled, []).append((name, option))
    options = [click.option("--compat", type=click.Choice(LIBRARIES), metavar="|".join(LIBRARIES),
                            help=prefix + "Make the methods' open choices as that library does, to see "
                                 "the maps it draws (`gradcam methods NAME` lists each method's choices; methods "
                                 "without one are unchanged).")]
    for spelling, owners in flags.items():
        if spelling in exclude:
            continue
        option = owners[0][1]
        if any((o.name, o.kind, o.choices, o.minimum, o.maximum) != (option.name, option.kind, option.choices,
                                                                        option.minimum, option.maximum)
               for _, o in owners):
            raise ValueError(f"{spelling} means different things to {', '.join(n for n, _ in owners)}")
        defaults = dict.fromkeys(_shown(o.default, o.kind) for _, o in owners)
        default = next(iter(defaults)) if len(defaults) == 1 else ", ".join(
            f"{_shown(o.default, o.kind)} ({n})" for n, o in owners)
        options.append(click.option(spelling, option.name, type=_click_type(option), default=None,
                                    metavar=option.metavar, help=f"{', '.join(n for n, _ in owners)}: {option.help}. "
                                                                 f"Default: {default}."))
    return options
