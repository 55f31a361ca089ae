"""The command line: parse, validate, call the library, report. No math here.

TensorFlow/Keras are imported inside the commands that compute, so `gradcam --help` and
`gradcam models` start instantly.
"""

import logging
import sys
from pathlib import Path

import click

from gradcam_cli import __version__
from gradcam_cli.errors import GradcamError, LayerError


class UsageProblem(click.UsageError):
    """A usage error in one line (exit status 2), without the usage block Click prints: the
    message already says what to do. The library's GradcamErrors reach the user as these."""

    exit_code = 2

    def show(self, file=None):
        click.echo(f"Error: {self.format_message()}", err=True)
from gradcam_cli.methods import COMPARE_COLUMNS, METHODS, POOLING
from gradcam_cli.models import registry
from gradcam_cli.models.preprocess import MODES as PREPROCESS_MODES
from gradcam_cli.outputs import KINDS, MAP_KINDS

log = logging.getLogger("gradcam_cli")

# The OpenCV colormap names, listed without importing cv2 at start-up.
COLORMAP_NAMES = (
    "autumn", "bone", "cividis", "cool", "deepgreen", "hot", "hsv", "inferno", "jet", "magma",
    "ocean", "parula", "pink", "plasma", "rainbow", "spring", "summer", "turbo", "twilight",
    "twilight_shifted", "viridis", "winter",
)


class DefaultCommandGroup(click.Group):
    """A group whose bare form `gradcam IMAGE... [options]` runs the default command, and which
    reports any unexpected exception in one line (the traceback only with --verbose), exit 1."""

    default_command = "gradcam"

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except GradcamError as error:  # the library's own: a usage error, before any image
            raise UsageProblem(str(error)) from None
        except Exception as error:
            from gradcam_cli.errors import unexpected

            if _STATE.verbose:
                import traceback

                traceback.print_exc()
            hint = "" if _STATE.verbose else " (run with --verbose for details)"
            click.echo(f"error: failed while {_STATE.activity}: {unexpected(error)}{hint}", err=True)
            ctx.exit(1)


@click.group(
    cls=DefaultCommandGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="gradcam")
def main():
    """Show where a Keras image classifier looks: class activation maps as PNG heatmaps and
    overlays.

    \b
      gradcam cat.jpg --model vgg16 --layer block5_conv3
      gradcam photos/ --model resnet50 -o out/ --json > results.jsonl
      find . -name '*.png' | gradcam - --model my_model.keras --preprocess unit

    A bare `gradcam IMAGE...` runs `gradcam gradcam IMAGE...`. Run `gradcam COMMAND --help` for
    a command's options, `gradcam models` for the known models.
    """


def _parse_size(ctx, param, value):
    if value is None:
        return None
    text = value.lower().replace("x", ",")
    try:
        parts = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise click.BadParameter(f"expected N or H,W (e.g. 224 or 224,320). Received: {value!r}")
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 8 or max(parts) > MAX_INPUT_SIDE:
        raise click.BadParameter(f"expected N or H,W, each from 8 to {MAX_INPUT_SIDE}. Received: {value!r}")
    return tuple(parts)


# The largest --input-size side (models/loading.py's MAX_INPUT_SIDE; a test ties the two): 8192 x
# 8192 x 3 float32 is already 800 MB an image.
MAX_INPUT_SIDE = 8192


def _save_parser(kinds):
    """A --save callback accepting the command's own kinds."""

    def parse(ctx, param, value):
        if value is None:
            return None  # the command's default (METHODS[...].default_save)
        chosen = tuple(dict.fromkeys(k.strip().lower() for k in value.split(",") if k.strip()))
        if not chosen or any(k not in kinds for k in chosen):
            raise UsageProblem(f"--save {value}: choose from {', '.join(kinds)}, comma-separated")
        return chosen

    return parse


_MAP_SAVE_HELP = ("What to write, comma-separated: heatmap, overlay, raw (the float map before "
                  "normalisation, as .npy (height, width) at the image's resolution). Default: heatmap,overlay.")
_GUIDED_SAVE_HELP = ("What to write, comma-separated: heatmap, overlay, raw (the Grad-CAM map, as for "
                     "`gradcam gradcam`), gradient and gradcam (the input gradient and Guided Grad-CAM "
                     "images) and their -gray versions; raw also saves both as .npy (height, width, "
                     "channels) at the model's input size. Default: every PNG kind.")


def _parse_shard(ctx, param, value):
    if value is None:
        return None
    from gradcam_cli.inputs import parse_shard

    try:
        return parse_shard(value)
    except ValueError as error:
        raise click.BadParameter(str(error))


def _parse_weights(ctx, param, value):
    if value is None:
        return None
    return value.lower() if value.lower() in ("imagenet", "none") else value


def model_options(function):
    """Options that choose and load a model (shared by the method commands and `layers`)."""
    options = [
        click.option("--model", "-m", default="vgg16", show_default=True,
                     help="A keras.applications model name (case-insensitive; see `gradcam models`) "
                          "or a path to a .keras / .h5 model file."),
        click.option("--weights", "-w", callback=_parse_weights, metavar="imagenet|none|PATH",
                     help="ImageNet weights (the default for named models; downloaded once into "
                          "~/.keras/models or $KERAS_HOME/models), none (random, for trying things "
                          "offline), or a weights file (.weights.h5 / .h5) to load into the model."),
        click.option("--preprocess", metavar="MODE",
                     help=f"Input preprocessing: {', '.join(PREPROCESS_MODES)} (0..1 scaling), or a "
                          "keras.applications name whose preprocess_input to use. Default: a named "
                          "model's own; none (raw 0..255) for model files. Given for a named model, it "
                          "replaces the model's own, with a warning. A 1-channel model is given the "
                          "image's luminance (0..255), then this preprocessing (none, unit or tf)."),
        click.option("--input-size", callback=_parse_size, metavar="N|H,W",
                     help="Input size for a model file whose input shape is not fixed."),
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
                     help="For a model with several outputs: the classifier output to explain, by "
                          "name (a layer name, or the key of a dict of outputs) or index. A model with "
                          "several outputs is refused without it, listing them."),
        click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default="auto",
                     show_default=True, help="Where to compute."),
        click.option("--verbose", "-v", is_flag=True, help="Log details, and TensorFlow's own messages."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


_precision_option = click.option(
    "--precision", type=click.Choice(["float32", "mixed-bfloat16"]), default="float32", show_default=True,
    help="mixed-bfloat16: the convolutional layers compute in bfloat16 on float32 weights (faster on "
         "GPUs with bfloat16 units, half the activation memory; usually slower on CPUs); "
         "the classifier head and the maps stay float32. Grad-CAM maps then differ from float32 ones "
         "by about 1% of their maximum, guided gradients by up to about 10%.")


def method_options(guided=False):
    """Options every method command shares (`guided`: the --save kinds of guided backpropagation)."""
    return lambda function: _method_options(function, KINDS if guided else MAP_KINDS,
                                            _GUIDED_SAVE_HELP if guided else _MAP_SAVE_HELP)


def _method_options(function, save_kinds, save_help):
    options = [
        click.argument("images", nargs=-1, required=True, metavar="IMAGE..."),
        click.option("--layer", "-l", metavar="NAME",
                     help="Target layer (see `gradcam layers --model M`). Default: the model's last "
                          "convolutional feature layer, found automatically, also inside nested "
                          "models ('resnet50/conv5_block3_out')."),
        click.option("--class", "-c", "classes", multiple=True, metavar="INDEX|NAME",
                     help="Class to explain: an index or a class name such as boxer (repeatable). "
                          "Default: each image's top-1 prediction."),
        click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True,
                     help="One map for each of the image's k most likely classes."),
        click.option("--output-dir", "-o", type=click.Path(file_okay=False), default="gradcam_out",
                     show_default=True,
                     help="Where outputs go, named <input name>.<method>[.classN|.topK].<kind>.png, "
                          "folder trees mirrored (an explicit --class is always in the name). Files "
                          "in this folder are not taken as inputs; neither are masks (NAME.mask.png)."),
        click.option("--save", callback=_save_parser(save_kinds), metavar="KIND,...", help=save_help),
        click.option("--colormap", type=click.Choice(COLORMAP_NAMES, case_sensitive=False),
                     default="jet", show_default=True, help="OpenCV colormap for heatmaps."),
        click.option("--alpha", type=click.FloatRange(0.0, 1.0), default=0.4, show_default=True,
                     help="Heatmap opacity in the overlay."),
        click.option("--crop", is_flag=True,
                     help="Resize the shorter side then centre-crop to the model's input (the "
                          "ImageNet evaluation transform) instead of resizing the whole image."),
        click.option("--batch-size", "-b", type=click.IntRange(min=1), default=8, show_default=True,
                     help="Images per forward/backward pass."),
        click.option("--json", "as_json", is_flag=True,
                     help="Write one JSON object per image to stdout: predictions, target class and "
                          "score, layer, output, channels, output paths, map statistics; a failed "
                          "image gets a record with an error field. Sizes and points are [width, "
                          "height] and [x, y]; raw .npy arrays are (height, width). Numbers that are "
                          "not finite are null."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar, warnings or summary."),
        click.option("--shard", callback=_parse_shard, metavar="K/N",
                     help="Process only shard K of N (1-based): a fixed share of the images chosen by "
                          "their names, so N jobs (a SLURM or Kubernetes job array) split a folder with "
                          "no coordination."),
        click.option("--skip-existing", is_flag=True,
                     help="Skip images whose outputs all exist (resume an interrupted run; files are "
                          "written atomically, so an existing one is complete)."),
        click.option("--jit", is_flag=True, help="Compile the gradient step with XLA (faster on GPUs; "
                                                 "a slower first batch)."),
        _precision_option,
    ]
    for option in reversed(options):
        function = option(function)
    return model_options(function)


class _State:
    """What the command is doing, for the one-line report of an unexpected failure."""

    activity = "running the command"
    verbose = False


_STATE = _State()


def _setup_logging(verbose, quiet=False):
    _STATE.verbose = verbose
    level = logging.INFO if verbose else logging.ERROR if quiet else logging.WARNING
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")
    log.setLevel(level)


def _load(model, weights=None, preprocess=None, input_size=None, labels=None, trust_model=False, device="auto",
          verbose=False, precision="float32", imports=(), output=None, quiet=False):
    """The model, loaded as the model options say; its warnings on stderr unless quiet."""
    from gradcam_cli._keras import import_keras

    _STATE.activity = f"loading model {model}"
    import_keras(device=device, verbose=verbose)
    from gradcam_cli.models.loading import load

    loaded = load(model, weights=weights, preprocess=preprocess, input_size=input_size, labels_file=labels,
                  trust=trust_model, precision=precision, output=output, imports=imports)
    if not quiet:
        for warning in loaded.warnings:
            click.echo(f"warning: {loaded.name}: {warning}", err=True)
    _STATE.activity = f"explaining images with {loaded.name}"
    return loaded


class _Console:
    """The progress bar (on a terminal, unless quiet) and per-image error lines on stderr, with an
    error record on stdout under --json."""

    def __init__(self, total, quiet, as_json):
        self.as_json = as_json
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", file=sys.stderr, leave=False)

    @property
    def update(self):
        return self.bar.update if self.bar is not None else None

    def clear(self):
        if self.bar is not None:
            self.bar.clear()

    def failure(self, source, reason, record=None):
        """One image (or argument) failed: a line on stderr; under --json its record (the one
        given, else {"input", "error"}) on stdout."""
        from gradcam_cli.outputs import json_line

        self.clear()
        path = getattr(source, "path", source)
        click.echo(f"error: {path}: {reason}", err=True)
        if self.as_json:
            click.echo(json_line(record if record is not None else {"input": str(path), "error": reason}))

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _collect(images, quiet, as_json=False, shard=None, exclude=None, output_dir=None):
    """IMAGE arguments expanded (inputs.collect: the files of `output_dir` and masks left out),
    less those `exclude(path)` names, then shard K/N of them. Missing arguments and broken links
    are errors (a line on stderr, a record under --json; `failures` counts them), skipped files
    are counted on stderr. Exits 1 when nothing is left and something was missing, 0 for an
    empty shard; UsageProblem otherwise."""
    from gradcam_cli.inputs import collect, shard as shard_of

    collected = collect(images, stdin=click.get_text_stream("stdin"), output_dir=output_dir)
    if exclude is not None:
        collected.sources = [s for s in collected.sources if not exclude(s.path)]
    if shard is not None:
        collected.sources = shard_of(collected.sources, *shard)
    console = _Console(0, quiet=True, as_json=as_json)
    for argument in collected.missing:
        console.failure(argument, "no such file or folder")
    for path in collected.broken:
        console.failure(path, "broken symbolic link (its target does not exist)")
    if not quiet:
        for files, what in ((collected.skipped, "file(s) that are not images"),
                            (collected.masks, "mask file(s) (NAME.mask.png)"),
                            (collected.excluded, f"file(s) in the output folder {output_dir}")):
            if files:
                click.echo(f"skipped {len(files)} {what}", err=True)
                for path in files:
                    log.info("skipped %s", path)
    if not collected.sources:
        if collected.failures:
            sys.exit(1)
        if shard is not None:
            if not quiet:
                click.echo(f"shard {shard[0]}/{shard[1]} has no images", err=True)
            sys.exit(0)
        raise UsageProblem("no images found in " + ", ".join(images))
    return collected


def _writable(output_dir):
    """Stop before any work (exit 2) when the output folder cannot be written."""
    from gradcam_cli.outputs import check_writable

    try:
        check_writable(output_dir)
    except OSError as error:
        raise UsageProblem(f"cannot write to the output folder {output_dir}: {error.strerror or error}") from None


def run_method(method, images, layer, classes, top_k, output_dir, save, colormap, alpha, crop, batch_size,
               as_json, quiet, shard, skip_existing, jit, precision, pool="mean", compare=False, max_masks=None,
               **model_options):
    """What every method command does: collect inputs, load, explain, report, exit status.
    model_options: those of `model_options`, for _load."""
    _setup_logging(model_options["verbose"], quiet)
    collected = _collect(images, quiet, as_json, shard=shard, output_dir=output_dir)
    if classes and top_k != 1:
        raise UsageProblem("give --class or --top-k, not both")
    if save is None:
        save = METHODS[method].default_save
    _writable(output_dir)
    weights = model_options["weights"]
    loaded = _load(precision=precision, quiet=quiet, **model_options)
    from gradcam_cli.models.labels import class_index

    class_indices = tuple(dict.fromkeys(class_index(c, loaded.labels, loaded.num_classes) for c in classes))
    if top_k > loaded.num_classes:
        raise UsageProblem(f"--top-k {top_k}: the model has {loaded.num_classes} classes")
    target_path = loaded.target_layer(layer)
    if weights == "none" and not quiet:
        click.echo("warning: random weights (--weights none): the maps show nothing meaningful", err=True)

    from gradcam_cli import pipeline
    from gradcam_cli.api import Explainer
    from gradcam_cli.models.graph import path_name
    from gradcam_cli.models.loading import activation_bytes
    from gradcam_cli.outputs import json_line

    log.info("model %s, layer %s, input %sx%s, preprocess %s", loaded.name, path_name(target_path),
             *loaded.input_size, loaded.preprocess)
    batch_size = min(batch_size, len(collected.sources))
    reference = rows = None
    if compare:  # the original's Grad-CAM, then both dilated copies', side by side
        from gradcam_cli import compare as comparing

        layer_name = path_name(target_path)
        cells = comparing.columns(["gradcam", "dilated-no-pooling", "dilated"], [layer_name])
        ready = comparing.ready_cells(loaded, cells, batch_size)
        for item in ready:
            if item.reason is not None:
                raise UsageProblem(f"{item.cell.method}: {item.reason}")
        rows = [comparing.Row(loaded, ready, class_indices[0] if class_indices else None)]
        tag = "dilated" + (f".class{class_indices[0]}" if class_indices else "")
        figure_options = comparing.Options(Path(output_dir), tag=tag, colormap=colormap.lower(),
                                           alpha=alpha, crop=crop)
        done = lambda source: [comparing.figure_path(figure_options, source.name)]
    else:
        explainer = Explainer(loaded, method, layer=layer, batch_size=batch_size, pool=pool, crop=crop, jit=jit,
                              max_masks=max_masks)
        try:
            ready = explainer.prepare_run(batch_size)
        except LayerError as error:
            hint = ": use `gradcam gradcam`" if METHODS[method].needs_classifier else ""
            raise UsageProblem(f"{error}{hint}") from None
        if ready.engine.batch_size < batch_size:
            log.info("batch size %d -> %d: each image holds %.2f GB of activations at full resolution",
                     batch_size, ready.engine.batch_size, activation_bytes(ready.loaded) / 1e9)
        if ready.context.relus is not None and not quiet:
            _describe_relus(ready.context.relus, method)
        loaded, engine, context, reference = ready.loaded, ready.engine, ready.context, ready.reference
        options = pipeline.Options(output_dir=Path(output_dir), method=method,
                                   classes=class_indices, top_k=top_k, save=save, colormap=colormap.lower(),
                                   alpha=alpha, crop=crop, reference=reference)
        done = lambda source: pipeline.expected_outputs(source, options)
    sources = collected.sources
    if skip_existing:
        sources = [s for s in sources if not all(p.is_file() for p in done(s))]
        if len(sources) < len(collected.sources) and not quiet:
            click.echo(f"skipped {len(collected.sources) - len(sources)} image(s) whose outputs exist", err=True)

    def on_result(record):
        if as_json:
            click.echo(json_line(record))
            return
        for entry in record.get("maps", [record]):  # compare records carry their figure's path
            for written in entry["outputs"].values():
                click.echo(written)
        if reference is not None and not quiet:
            console.clear()
            click.echo(_side_by_side(record, reference.name, loaded.name), err=True)

    def on_empty(source, class_index_):
        if not quiet:
            click.echo(
                f"warning: {source.path}: the map for class {class_index_} ({loaded.label(class_index_)}) "
                f"is zero everywhere: no positive evidence at {path_name(target_path)}", err=True)

    console = _Console(len(sources), quiet, as_json)
    try:
        if rows:
            report = comparing.run(rows, sources, figure_options, on_result, console.failure, console.update)
        else:
            report = pipeline.run(loaded, engine, sources, options, context, on_result, console.failure,
                                  on_empty, progress=console.update)
    finally:
        console.close()
    failed = len(report.failed) + collected.failures
    if not quiet:
        empty = f", {report.empty_maps} map(s) zero everywhere" if report.empty_maps else ""
        click.echo(f"{report.done} image(s) explained, {failed} failed{empty}; outputs in {output_dir}", err=True)
    sys.exit(1 if failed else 0)


# The methods `gradcam --method` offers: every registered method that draws a map (guided and
# deconvnet images have their own command and --save kinds).
MAP_METHODS = tuple(name for name, method in METHODS.items() if method.backprop is None)


@main.command("gradcam", short_help="Grad-CAM maps, or any map method (also what a bare `gradcam IMAGE...` runs).")
@method_options()
@click.option("--method", type=click.Choice(MAP_METHODS), default="gradcam", show_default=True,
              help="The method (see `gradcam methods`); the other commands are presets of it.")
@click.option("--pool", type=click.Choice(POOLING), default="mean", show_default=True,
              help="How gradients become channel weights: their spatial mean (Grad-CAM) or "
                   "maximum (a variant: the strongest gradient of each channel).")
@click.option("--max-masks", type=click.IntRange(min=1), metavar="N",
              help="For methods that score masked inputs (see `gradcam methods`): keep the N channels "
                   "of highest variance. Default: all.")
def gradcam_command(method, **kwargs):
    """Grad-CAM (Selvaraju et al. 2017): the target layer's channels weighted by the spatially
    pooled gradient of the class score (before softmax), summed, ReLU, upsampled onto the image.
    --method chooses another method; `gradcam methods` lists them.

    IMAGE may be files, folders (searched recursively), globs, or - to read paths from stdin.
    Exit status: 0 all images done, 1 some failed (each reported on stderr), 2 usage error.
    """
    run_method(method, **kwargs)


@main.command("methods")
def methods_command():
    """List the methods: name, what each needs from the model, what its map is, and its paper.
    Each runs with `gradcam gradcam --method NAME` (guided and deconvnet: `gradcam guided`), in
    `compare --methods` and in `eval --methods`."""
    rows = [("method", "needs", "map", "paper")]
    rows += [(name, ",".join(m.needs), m.summary, m.paper) for name, m in METHODS.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for name, needs, summary, paper in rows:
        click.echo(f"{name:<{widths[0]}}  {needs:<{widths[1]}}  {summary}  ({paper})" if name != "method"
                   else f"{name:<{widths[0]}}  {needs:<{widths[1]}}  {summary} (paper)")


@main.command("cam", short_help="CAM maps, for models whose head is global average pooling + Dense.")
@method_options()
def cam_command(**kwargs):
    """CAM (Zhou et al. 2016): the target layer's channels weighted by the classifier's kernel
    column for the class, summed, ReLU, upsampled onto the image. No gradients: it applies when
    the target layer feeds GlobalAveragePooling2D and one Dense (or 1x1 Conv) classifier, as in
    ResNet, MobileNet, DenseNet, EfficientNet, Inception, Xception and demo-gap (see
    `gradcam models`); other heads are refused, pointing to `gradcam gradcam`.

    IMAGE may be files, folders (searched recursively), globs, or - to read paths from stdin.
    Exit status: 0 all images done, 1 some failed (each reported on stderr), 2 usage error.
    """
    run_method("cam", **kwargs)


def _side_by_side(record, reference_name, name, rows=5):
    """Two models' top predictions for one image, side by side."""
    left, right = record["reference_predictions"], record["predictions"]
    width = max(len(reference_name), *(len(f"{p['label']} ({p['class']}) {p['probability']:.3f}") for p in left))
    lines = [f"{record['input']}: top-{rows} predictions, {record['seconds']:.2f} s an image",
             f"  {reference_name:<{width}}  {name}"]
    for a, b in zip(left[:rows], right[:rows]):
        cell = f"{a['label']} ({a['class']}) {a['probability']:.3f}"
        lines.append(f"  {cell:<{width}}  {b['label']} ({b['class']}) {b['probability']:.3f}")
    return "\n".join(lines)


def _describe_relus(relus, method):
    """Say which activations the guided pass changes, and which it leaves with their gradient."""
    log.info("%s: %d ReLU layer(s) modified", method, len(relus.relu_paths))
    if not relus.relu_paths:
        click.echo(f"warning: the model has no ReLU: {method} here is the plain input gradient "
                   f"(activations: {relus.describe_others() or 'none'})", err=True)
    elif relus.others:
        click.echo(f"warning: {method} modifies the model's {len(relus.relu_paths)} ReLU layer(s) only; "
                   f"these keep their plain gradient: {relus.describe_others()}", err=True)


@main.command("guided", short_help="Guided backpropagation and Guided Grad-CAM (or deconvnet) images.")
@method_options(guided=True)
@click.option("--mode", type=click.Choice(["guided", "deconvnet"]), default="guided", show_default=True,
              help="How gradients pass back through ReLUs: guided backpropagation (only positive "
                   "gradients, only where the forward input was positive) or deconvnet (only "
                   "positive gradients, wherever the input was).")
@click.option("--pool", type=click.Choice(POOLING), default="mean", show_default=True,
              help="Grad-CAM's channel pooling, for the map the gradient is multiplied by.")
def guided_command(mode, **kwargs):
    """Guided backpropagation (Springenberg et al. 2015) or deconvnet (Zeiler & Fergus 2014):
    the gradient of the class score (before softmax) with respect to the input image, passed
    back through every ReLU (fused activation='relu'/'relu6', ReLU and Activation layers) the
    chosen way; and Guided Grad-CAM (Selvaraju et al. 2017): that gradient times the upsampled
    Grad-CAM map of --layer.

    \b
    Writes, per image and class (OUTDIR/NAME.MODE.KIND.png):
      gradient, gradient-gray   the input gradient, colour and greyscale
      gradcam, gradcam-gray     Guided Grad-CAM: the gradient times the Grad-CAM map
      heatmap, overlay          the Grad-CAM map, as `gradcam gradcam` writes it

    Gradient images are centred at mid-grey (no gradient), 0.1 per standard deviation, at the
    model's input size resized onto the image. Other activations (swish, gelu, sigmoid gates)
    keep their plain gradient; a warning lists them. Caveat (Adebayo et al. 2018): guided
    backpropagation looks much the same for a model with random weights; Grad-CAM does not.

    IMAGE may be files, folders (searched recursively), globs, or - to read paths from stdin.
    Exit status: 0 all images done, 1 some failed (each reported on stderr), 2 usage error.
    """
    run_method(mode, **kwargs)


@main.command("dilated", short_help="Grad-CAM at full resolution on a dilated copy of VGG16/VGG19/demo-vgg.")
@method_options()
@click.option("--mode", type=click.Choice(["exact", "no-pooling"]), default="exact", show_default=True,
              help="exact: the a trous network, which computes the original's predictions exactly; "
                   "no-pooling: the poolings removed and the convolutions dilated instead, a different "
                   "classifier.")
@click.option("--pool", type=click.Choice(POOLING), default="mean", show_default=True,
              help="Grad-CAM's channel pooling.")
@click.option("--compare", is_flag=True,
              help="Instead, write one figure per image (NAME.dilated.compare.png): the original's "
                   "Grad-CAM, the no-pooling map and the exact map side by side, for the same class.")
def dilated_command(mode, compare, **kwargs):
    """Grad-CAM on a dilated copy of a plain convolutional network (VGG16, VGG19, demo-vgg, or a
    model file of stride-1 convolutions, non-overlapping pooling, Flatten or global pooling and a
    dense head), whose target layer keeps the input's resolution: a 224x224 map for VGG16's
    block5_conv3 instead of 14x14.

    \b
    --mode exact       each pooling becomes a stride-1 pooling over a dilated window ("a
                       trous") and the convolutions after it are dilated; the classifier reads
                       the last map every 32 pixels. Same predictions as the original, and the
                       original's block5_conv3 on every 16th pixel: a full-resolution map of
                       the original classifier.
    --mode no-pooling  poolings removed, convolutions dilated 1,1,2,2,4,4,4,8,8,8,16,16,16,
                       MaxPooling2D(32) before Flatten (the "dilated VGG16" often tried). Same
                       weights, but its predictions degrade and its map shows a grid pattern.

    Outputs are named NAME.dilated.KIND.png (exact) or NAME.dilated-no-pooling.KIND.png. Both models'
    top-5 predictions are printed side by side on stderr (in --json: predictions and
    reference_predictions), with the seconds each image took. The dilated VGG16 costs about 50
    VGG16 passes (some 12 s an image on 2 CPU cores); the batch size is cut so that a batch's
    activations stay within 2 GB (one image at a time for VGG16).

    IMAGE may be files, folders (searched recursively), globs, or - to read paths from stdin.
    Exit status: 0 all images done, 1 some failed (each reported on stderr), 2 usage error.
    """
    run_method("dilated" if mode == "exact" else "dilated-no-pooling", compare=compare, **kwargs)


def _names(value):
    return [part.strip() for part in (value or "").split(",") if part.strip()]


@main.command("compare", short_help="Maps side by side: methods, layers, variants, models.")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@model_options
@click.option("--models", metavar="M1,M2,...", help="One row per model (names or files), instead of --model.")
@click.option("--methods", metavar="M1,M2,...",
              help=f"Columns, from: {', '.join(COMPARE_COLUMNS)} (guided: the guided-backpropagation image; "
                   "guided-gradcam: it times the Grad-CAM map). Default: gradcam, cam, guided, guided-gradcam and "
                   "dilated, those that apply to some row's model; none when --variants is given.")
@click.option("--layers", metavar="L1,L2,...", help="One column per layer for each method (default: each model's "
                                                   "default layer).")
@click.option("--variants", metavar="V1,V2,...",
              help="Grad-CAM variants as further columns: pool-mean (Grad-CAM), pool-max (the "
                   "strongest gradient of each channel), argmax-channel (only the channel with the largest "
                   "weight), relu-after-resize (the ReLU applied after upsampling).")
@click.option("--class", "-c", "class_name", metavar="INDEX|NAME",
              help="The class every cell explains (default: each row's top-1 prediction).")
@click.option("--grid", is_flag=True, help="One figure for all images (OUTDIR/grid.compare.png), a row per "
                                           "image and model.")
@click.option("--output-dir", "-o", type=click.Path(file_okay=False), default="gradcam_out", show_default=True,
              help="Where figures go: OUTDIR/NAME.compare.png.")
@click.option("--colormap", type=click.Choice(COLORMAP_NAMES, case_sensitive=False), default="jet",
              show_default=True)
@click.option("--alpha", type=click.FloatRange(0.0, 1.0), default=0.4, show_default=True,
              help="Heatmap opacity in the overlays.")
@click.option("--crop", is_flag=True, help="Centre-crop to the model's input (see `gradcam gradcam --help`).")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per image: per row and cell the class, score, map statistics, the "
                   "pointing/energy/IoU figures when NAME.mask.png lies beside the image, and the rank "
                   "correlation between the cells' maps.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, warnings or summary.")
@_precision_option
def compare_command(images, models, methods, layers, variants, class_name, grid, output_dir, colormap, alpha, crop,
                    batch_size, as_json, quiet, precision, **model_options):
    """Maps side by side, one figure per image: the image, then one cell per method (at
    each --layers layer) and per --variants variant, each an overlay (or, for guided and
    deconvnet, a gradient image) captioned with method, layer, resolution, class, pre-softmax
    score and probability; one row per --models model. Every cell of a row explains the same
    class. Maps are each normalised to their maximum and share one colormap (bar at the bottom).
    A cell that does not apply to a model is drawn as "not applicable".

    \b
      gradcam compare cat.jpg --model vgg16
      gradcam compare cat.jpg --model vgg16 --layers block4_conv3,block5_conv3
      gradcam compare cat.jpg --model vgg16 --variants pool-mean,pool-max,argmax-channel,relu-after-resize
      gradcam compare photos/ --models vgg16,resnet50 --methods gradcam,cam --grid
    """
    from gradcam_cli._keras import import_keras

    _setup_logging(model_options["verbose"], quiet)
    import_keras(device=model_options["device"], verbose=model_options["verbose"])  # quietly, before compare's imports
    from gradcam_cli import compare as comparing

    chosen_methods, chosen_variants = _names(methods), _names(variants)
    for name in chosen_methods:
        if name not in COMPARE_COLUMNS:
            raise click.BadParameter(f"choose from {', '.join(COMPARE_COLUMNS)}. Received: {name!r}",
                                     param_hint="--methods")
    for name in chosen_variants:
        if name not in comparing.VARIANTS:
            raise click.BadParameter(f"choose from {', '.join(comparing.VARIANTS)}. Received: {name!r}",
                                     param_hint="--variants")
    from gradcam_cli.evaluation import is_mask

    collected = _collect(images, quiet, as_json, exclude=is_mask, output_dir=output_dir)
    sources = collected.sources
    _writable(output_dir)
    from gradcam_cli.models.labels import class_index

    names = _names(models) or [model_options.pop("model")]
    model_options.pop("model", None)
    loaded_models = [_load(name, precision=precision, quiet=quiet, **model_options) for name in names]
    if model_options["weights"] == "none" and not quiet:
        click.echo("warning: random weights (--weights none): the maps show nothing meaningful", err=True)
    if not chosen_methods and not chosen_variants:
        chosen_methods = [m for m in comparing.DEFAULT_METHODS
                          if any(comparing.applies(loaded, m) for loaded in loaded_models)]
    for layer in _names(layers):  # a layer that no row's model has is a typo, not a figure of grey cells
        problems = []
        for loaded in loaded_models:
            try:
                loaded.target_layer(layer)
                break
            except GradcamError as problem:
                problems.append(str(problem))
        else:
            raise click.BadParameter("; ".join(problems), param_hint="--layers")
    cells = comparing.columns(chosen_methods, _names(layers), chosen_variants)
    batch_size = min(batch_size, len(sources))
    rows = []
    for loaded in loaded_models:
        index = None if class_name is None else class_index(class_name, loaded.labels, loaded.num_classes,
                                                            model=loaded.name if len(loaded_models) > 1 else None)
        rows.append(comparing.Row(loaded, comparing.ready_cells(loaded, cells, batch_size), index))
    tag = f"class{rows[0].class_index}" if class_name is not None else ""
    options = comparing.Options(Path(output_dir), tag=tag, grid=grid, colormap=colormap.lower(), alpha=alpha,
                                crop=crop)
    from gradcam_cli.outputs import json_line

    console = _Console(len(sources), quiet, as_json)

    def on_result(record):
        click.echo(json_line(record) if as_json else record["outputs"]["compare"])

    try:
        report = comparing.run(rows, sources, options, on_result, console.failure, console.update)
    finally:
        console.close()
    failed = len(report.failed) + collected.failures
    if not quiet:
        click.echo(f"{report.done} image(s) compared, {failed} failed; figures in {output_dir}", err=True)
    sys.exit(1 if failed else 0)


@main.command("models")
def models_command():
    """List the known models: input size, default target layer, whether CAM applies (global
    average pooling + one linear classifier), preprocessing. demo-vgg and demo-gap are shipped
    in the package (trained on synthetic shapes): they need no download."""
    rows = [("model", "input", "channels", "default layer", "CAM", "preprocess", "head")]
    for spec in registry.MODELS.values():  # every known model takes RGB; `gradcam layers` tells a file's
        rows.append((spec.name, f"{spec.input_size}x{spec.input_size}", "rgb", spec.default_layer or "(auto)",
                     "yes" if spec.cam else "no", spec.preprocess, spec.head))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


@main.command("layers")
@model_options
@click.option("--all", "show_all", is_flag=True, help="List every layer, not only those with a spatial output.")
def layers_command(show_all, **model_options):
    """List the layers of a model that a map can target, with their output shapes; the default
    target is marked with *. The first line says what the model is given: its input size and
    channels (rgb, or luminance for a 1-channel model), preprocessing and output. Named models
    are built without downloading weights."""
    _setup_logging(model_options["verbose"])
    spec = registry.find(model_options["model"])
    if model_options["weights"] is None and spec is not None and spec.is_application:
        model_options["weights"] = "none"  # layer names and shapes do not depend on the weights
    loaded = _load(**model_options)
    height, width = loaded.input_size
    click.echo(f"# input {height}x{width}x{loaded.channels} ({loaded.colour}), preprocess {loaded.preprocess}, "
               f"output {loaded.output.name}, {loaded.num_classes} classes")
    for info in loaded.layers:
        if not show_all and not info.spatial:
            continue
        mark = "*" if info.path == loaded.default_layer else " "
        shape_text = "x".join(str(d) for d in info.shape) if info.shape else "?"
        click.echo(f"{mark} {info.name:<48} {type(info.layer).__name__:<24} {shape_text}")


def _annotated_inputs(images, quiet):
    """Images with a mask beside them (evaluation.annotated_inputs), the unusable ones reported."""
    from gradcam_cli.evaluation import annotated_inputs
    from gradcam_cli.inputs import collect

    collected = collect(images, stdin=click.get_text_stream("stdin"))
    rgbs, objects, paths, unusable = annotated_inputs(collected.sources)
    if not quiet:
        for path, reason in unusable:
            click.echo(f"skipped {path}: {reason}", err=True)
    if not rgbs:
        raise UsageProblem("no image with a usable mask (NAME.ext beside NAME.mask.png) in " + ", ".join(images))
    return rgbs, objects, paths, len(unusable) + collected.failures


@main.command("eval")
@click.argument("images", nargs=-1, metavar="[IMAGE...]")
@model_options
@click.option("--layer", "-l", metavar="NAME", help="Target layer (default: the model's default).")
@click.option("--class", "-c", "class_name", metavar="INDEX|NAME",
              help="With IMAGE arguments: the class to explain in every image (default: each image's top-1).")
@click.option("--methods", default="gradcam", show_default=True,
              help=f"Comma-separated methods to measure: {', '.join(METHODS)}.")
@click.option("--pool", type=click.Choice(POOLING), default="mean", show_default=True,
              help="Grad-CAM's channel pooling.")
@click.option("--count", "-n", type=click.IntRange(min=2), default=200, show_default=True,
              help="One-object scenes to generate.")
@click.option("--pairs", type=click.IntRange(min=0), default=100, show_default=True,
              help="Two-object scenes (objects of two classes) for class discrimination.")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Scene set (the demo models trained on seed 0; seed 1 is their held-out set).")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.5, show_default=True,
              help="Map threshold (fraction of its maximum) for the box.")
@click.option("--control", type=click.Choice(["none", "shuffled"]), default="none", show_default=True,
              help="shuffled: score each map against another image's object (a negative control).")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="No warnings about skipped images.")
def eval_command(images, layer, class_name, methods, pool, count, pairs, seed, threshold, control, batch_size, as_json,
                 quiet, **model_options):
    """Measure how well maps find the object.

    Without IMAGE arguments: on generated scenes with known masks and boxes (gradcam_cli.synthetic:
    circles, squares, triangles, crosses on cluttered backgrounds), each explained for its
    object's class; needs a model of those four classes, such as demo-gap or demo-vgg.

    With IMAGE arguments (files, folders, -): on your images, each with its object's mask beside
    it as NAME.mask.png (non-zero = object, same size as the image).

    \b
    pointing        the map's maximum lies on the object (15 px tolerance at 224, scaled)
    energy in box   the share of the map's mass inside the object's box
    box IoU         the box around the largest region >= threshold vs the object's box
    IoU>=0.5        the share of images localized in the ILSVRC sense
    discrimination  on two-object scenes: the map for A's class puts more mass on A than on B
    The chance row scores a uniform map (a centre point for pointing; a coin toss for
    discrimination).
    """
    from gradcam_cli.models.registry import DEMO_CLASSES

    _setup_logging(model_options["verbose"])
    chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        raise click.BadParameter(f"choose from {', '.join(METHODS)}. Received: {methods!r}", param_hint="--methods")
    if class_name is not None and not images:
        raise UsageProblem("--class applies to IMAGE arguments; generated scenes use each object's class")
    annotated = _annotated_inputs(images, quiet) if images else None
    loaded = _load(quiet=quiet, **model_options)
    if annotated is None and tuple(loaded.labels) != DEMO_CLASSES:
        raise UsageProblem(
            f"{loaded.name} does not classify the generated scenes ({', '.join(DEMO_CLASSES)}); "
            "use demo-gap or demo-vgg, a model trained on gradcam_cli.synthetic with those --labels, "
            "or give images with masks")
    if annotated is None and loaded.input_size[0] != loaded.input_size[1]:
        raise UsageProblem("generated scenes are square: the model's input must be too")
    from gradcam_cli import evaluation
    from gradcam_cli.engine import Engine, top_rank
    from gradcam_cli.models.labels import class_index

    from gradcam_cli.api import Explainer

    readies = {}
    for method in chosen:
        try:
            readies[method] = Explainer(loaded, method, layer=layer, batch_size=batch_size, pool=pool).prepare_run(batch_size)
        except LayerError as error:
            raise UsageProblem(f"--methods {method}: {error}") from None
    target_path = loaded.target_layer(layer)
    plain = [r for m, r in readies.items() if not METHODS[m].network]
    engine = plain[0].engine if plain else Engine(loaded, target_path, batch_size=batch_size)
    engines = {m: r.engine for m, r in readies.items() if METHODS[m].network}
    control = None if control == "none" else control
    if annotated is None:
        report = evaluation.evaluate(loaded, engine, chosen, count=count, pairs=pairs, seed=seed, pool=pool,
                                     threshold=threshold, control=control, engines=engines)
        heading = (f"{count} scenes and {pairs} two-object scenes (seed {seed}), "
                   f"classification accuracy {report['accuracy']:.3f}")
    else:
        rgbs, objects, paths, skipped = annotated
        code = top_rank(1) if class_name is None else class_index(class_name, loaded.labels, loaded.num_classes)
        report = evaluation.evaluate_annotated(loaded, engine, chosen, rgbs, objects, code, pool=pool,
                                               threshold=threshold, control=control, engines=engines)
        report.update(inputs=paths, skipped=skipped)
        heading = f"{len(rgbs)} annotated image(s)" + (f", {skipped} skipped" if skipped else "")
    report.update(model=loaded.name, layer="/".join(target_path), threshold=threshold)
    if as_json:
        from gradcam_cli.outputs import json_line

        click.echo(json_line(report))
        return
    click.echo(f"{loaded.name}, layer {report['layer']}: {heading}"
               + (", maps shuffled across images (negative control)" if control else ""))
    click.echo(evaluation.format_table(report))
