"""The other commands: `compare`, `models`, `layers` and `eval`."""

import sys
from pathlib import Path

import click

from gradcam_cli.cli.base import Console, UsageProblem, collect, load, main, names, setup_logging, worded, writable
from gradcam_cli.cli.helptext import (
    EXPLAIN,
    INPUT,
    MEASURE,
    OUTPUT,
    RUN,
    SETTINGS,
    classes_line,
    demo_models,
    epilog,
    models_help,
)
from gradcam_cli.cli.numbers import STRICT_INT, BadValue, StrictFloatRange, StrictIntRange
from gradcam_cli.cli.options import (
    COLORMAP_NAMES,
    check_classes,
    check_target,
    max_pixels_option,
    method_parameter_options,
    model_options,
    pool_option,
    precision_option,
    split_method_options,
)
from gradcam_cli.errors import GradcamError, LayerError
from gradcam_cli.evaluate.assess import MEASURES, RANDOMISATION_SCENES
from gradcam_cli.explain.methods import COMPARE_COLUMNS, METHODS
from gradcam_cli.explain.target_spec import KINDS, spelled
from gradcam_cli.models import registry

# compare.figures.VARIANTS, spelled here so that a wrong name is refused before Keras is imported (a test ties them).
COMPARE_VARIANTS = ("pool-mean", "pool-max", "argmax-channel", "relu-after-resize")


@main.command("compare", short_help="Maps side by side: methods, layers, variants, models.", epilog=epilog("compare"))
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@model_options(None, "--token-grid", (EXPLAIN, [
    click.option("--models", metavar="M1,M2,...", help="One row per model (names or files), instead of --model."),
    click.option("--methods", metavar="M1,M2,...",
                 help=f"Columns, from: {', '.join(COMPARE_COLUMNS)} (guided: the guided-backpropagation image; "
                      "guided-gradcam: it times the Grad-CAM map). Default: gradcam, cam, guided, guided-gradcam and "
                      "dilated, those that apply to some row's model; none when --variants is given."),
    click.option("--layers", metavar="L1,L2,...", help="One column per layer for each method (default: each model's "
                                                      "default layer)."),
    click.option("--class", "-c", "class_name", metavar="INDEX|NAME", callback=check_classes,
                 help="The class every cell explains (default: each row's top-1 prediction)."),
    click.option("--target", "-t", metavar="SPEC", callback=check_target,
                 help=f"What every cell explains instead of a class: {spelled(KINDS[1:])} (see `gradcam gradcam "
                      "--help`)."),
]), (SETTINGS, [
    click.option("--variants", metavar="V1,V2,...",
                 help="Grad-CAM variants as further columns: pool-mean (Grad-CAM), pool-max (the "
                      "strongest gradient of each channel), argmax-channel (only the channel with the largest "
                      "weight), relu-after-resize (the ReLU applied after upsampling)."),
]), (OUTPUT, [
    click.option("--output-dir", "-o", type=click.Path(file_okay=False), default="gradcam_out", show_default=True,
                 help="Where figures go: OUTDIR/NAME.compare.png."),
    click.option("--grid", is_flag=True, help="One figure for all images (OUTDIR/grid.compare.png), a row per "
                                              "image and model."),
    click.option("--colormap", type=click.Choice(COLORMAP_NAMES, case_sensitive=False), default="jet",
                 show_default=True, metavar="NAME", help=f"OpenCV colormap: {', '.join(COLORMAP_NAMES)}."),
    click.option("--alpha", type=StrictFloatRange(0.0, 1.0), default=0.4, show_default=True,
                 help="Heatmap opacity in the overlays."),
    click.option("--json", "as_json", is_flag=True,
                 help="One JSON object per image: per row and cell the class, score, map statistics, the "
                      "pointing/energy/IoU figures when NAME.mask.png lies beside the image, and the rank "
                      "correlation between the cells' maps."),
    click.option("--quiet", "-q", is_flag=True, help="No progress bar, warnings or summary."),
]), (INPUT, [
    click.option("--crop", is_flag=True, help="Centre-crop to the model's input (see `gradcam gradcam --help`)."),
]), (RUN, [
    click.option("--batch-size", "-b", type=StrictIntRange(min=1), default=8, show_default=True,
                 help="Images per forward/backward pass."),
    click.option("--skip-existing", is_flag=True,
                 help="Resume an interrupted run: skip each image whose record file (NAME.compare.record.json, "
                      "written after its figure) was made from the same file for the same request (models, "
                      "methods, layers, variants, class or target, colormap, alpha, crop) and whose figure "
                      "exists; its stored record is printed again in its place. Not with --grid."),
    precision_option,
    max_pixels_option,
]))
def compare_command(images, models, methods, layers, variants, class_name, target, grid, output_dir, colormap, alpha,
                    crop, batch_size, skip_existing, as_json, quiet, precision, **model_options):
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
    from gradcam_cli.explain.runtime import import_keras

    model_options["grid"] = model_options.pop("token_grid")  # --grid lays out the figure here
    if class_name is not None and target is not None:
        raise UsageProblem("give --class or --target, not both (--class N is --target class:N)")
    if skip_existing and grid:
        raise UsageProblem("--skip-existing does not apply to --grid (one figure of all images, drawn whole each "
                           "time): drop one of them")
    chosen_methods, chosen_variants = names(methods), names(variants)
    checks = (("--methods", chosen_methods, COMPARE_COLUMNS), ("--variants", chosen_variants, COMPARE_VARIANTS))
    for flag, chosen, known in checks:  # every name, before Keras is imported and any model loads
        for name in chosen:
            if name not in known:
                raise UsageProblem(f"{flag} {name}: choose from {', '.join(known)}, comma-separated")
    setup_logging(model_options["verbose"], quiet)
    import_keras(device=model_options["device"], verbose=model_options["verbose"], lean=True)  # quietly, before compare's imports
    from gradcam_cli.compare import figures as comparing
    from gradcam_cli.files.inputs import is_mask

    collected = collect(images, quiet, as_json, exclude=is_mask, output_dir=output_dir)
    sources = collected.sources
    writable(output_dir)
    model_names = names(models) or [model_options.pop("model")]
    model_options.pop("model", None)
    loaded_models = [load(name, precision=precision, quiet=quiet, **model_options) for name in model_names]
    try:
        rows = comparing.rows_for(loaded_models, chosen_methods, names(layers), chosen_variants, class_name,
                                  min(batch_size, len(sources)), crop, target)
    except LayerError as error:
        raise click.BadParameter(worded(error), param_hint="--layers") from None
    except GradcamError as error:
        raise UsageProblem(worded(error)) from None
    tag = f"class{rows[0].class_index}" if class_name is not None else ""
    if target is not None:
        from gradcam_cli.explain.targets import parse

        tag = parse(target).tag
    options = comparing.CompareOptions(Path(output_dir), tag=tag, grid=grid, colormap=colormap.lower(), alpha=alpha,
                                crop=crop)
    from gradcam_cli.files.outputs import json_line

    console = Console(len(sources), quiet, as_json)

    def on_result(record):
        outputs = record["outputs"]  # the figure, and with --layers the plot of where each layer peaks
        click.echo(json_line(record) if as_json else "\n".join(str(outputs[k]) for k in ("compare", "layers") if k in outputs))

    try:
        report = comparing.draw_figures(rows, sources, options, on_result, console.failure, console.update,
                               skip_existing=skip_existing)
    finally:
        console.close()
    failed = len(report.failed) + collected.failures
    if report.resumed and not quiet:
        click.echo(f"skipped {report.resumed} image(s) whose figures exist (their records are emitted again)",
                   err=True)
    if not quiet:
        click.echo(f"{report.done} image(s) compared, {failed} failed; figures in {output_dir}", err=True)
    sys.exit(1 if failed else 0)


@main.command("models", help=models_help(), epilog=epilog("models"))
def models_command():
    rows = [("model", "input", "channels", "default layer", "CAM", "preprocess", "head")]
    for spec in registry.MODELS.values():  # `gradcam layers` tells a file's
        channels = "1" if spec.channels == 1 else "rgb"
        rows.append((spec.name, "x".join(map(str, spec.shape)), channels, spec.default_layer or "(auto)",
                     "yes" if spec.cam else "no", spec.preprocess, spec.head))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    click.echo("# the demo models' classes (the keras.applications models': ImageNet's 1000)")
    demos = demo_models()
    width = max(len(spec.name) for spec in demos)
    for spec in demos:
        click.echo(f"# {spec.name:<{width}}  {classes_line(spec.labels)}")


@main.command("layers", epilog=epilog("layers"))
@model_options(None, "--grid", (OUTPUT, [
    click.option("--all", "show_all", is_flag=True, help="List every layer, not only those a map can target.")]))
def layers_command(show_all, **model_options):
    """List the layers of a model that a map can target, with their output shapes; the default
    target is marked with * (a segmenter's: its bottleneck, the coarsest layer its output is
    computed from). A transformer's token layers show the patch grid their tokens are
    read as and the prefix tokens (class, distillation, registers) dropped first. The first line says what the model is given: its input size and
    channels (rgb, or luminance for a 1-channel model), preprocessing and output. Named models
    are built without downloading weights."""
    setup_logging(model_options["verbose"])
    spec = registry.find(model_options["model"])
    if model_options["weights"] is None and spec is not None and spec.is_application:
        model_options["weights"] = "none"  # layer names and shapes do not depend on the weights
    loaded = load(**model_options, maps=False)
    sides = "x".join(str(side) for side in loaded.input_size)  # HxW, a scan's D1xD2xD3, a clip's TxHxW
    what = {"classes": f"{loaded.num_classes} classes", "embedding": f"an embedding of {loaded.num_classes}",
            "map": f"a map of {loaded.num_classes} classes per pixel (a segmenter)"}[loaded.output_kind]
    click.echo(f"# input {sides}x{loaded.channels} ({loaded.colour}), preprocess {loaded.preprocess}, "
               f"output {loaded.output.name}, {what}")
    if loaded.labels and loaded.output_kind != "embedding":
        click.echo(f"# classes: {classes_line(loaded.labels)}")
    rows = []
    for info in loaded.layers:
        if not show_all and not info.mappable:
            continue
        mark = "*" if info.path == loaded.default_layer else " "
        shape_text = "x".join(str(d) for d in info.shape) if info.shape else "?"
        if mark == "*" and loaded.output_kind == "map":
            shape_text += "  the bottleneck (the coarsest layer the output is computed from)"
        if info.grid is not None:
            shape_text += f"  grid {'x'.join(map(str, info.grid.sides))}, prefix {info.grid.prefix}"
        rows.append((mark, info.name, type(info.layer).__name__, shape_text))
    # the columns as wide as their longest entry (names of nested layers run long), at least the old 48 and 24
    name_width = max([48, *(len(row[1]) for row in rows)])
    type_width = max([24, *(len(row[2]) for row in rows)])
    for mark, name, kind, shape_text in rows:
        click.echo(f"{mark} {name:<{name_width}} {kind:<{type_width}} {shape_text}".rstrip())


def _parse_thresholds(ctx, param, value):
    if value is None:
        return None
    from gradcam_cli.errors import GradcamError
    from gradcam_cli.evaluate.gate import parse_thresholds

    try:
        return parse_thresholds(value)
    except GradcamError as error:
        raise BadValue(str(error)) from None


def _measures(ctx, param, value):
    chosen = tuple(dict.fromkeys(names(value)))
    unknown = [m for m in chosen if m not in MEASURES]
    if unknown or not chosen:
        raise UsageProblem(f"--measures: choose from {', '.join(MEASURES)}. Received: {value!r}")
    return chosen


@main.command("eval", epilog=epilog("eval"))
@click.argument("images", nargs=-1, metavar="[IMAGE...]")
@model_options(None, "--grid", (INPUT, [
    click.option("--boxes", "boxes_file", type=click.Path(dir_okay=False), metavar="FILE",
                 help="With IMAGE arguments: the objects' boxes from a COCO-style JSON file (images: id, file_name; "
                      "annotations: image_id, bbox [x, y, width, height]) instead of NAME.mask.png files; an "
                      "image's boxes together are its object."),
    click.option("--count", "-n", type=StrictIntRange(min=2), default=200, show_default=True,
                 help="One-object scenes to generate (randomisation takes the first "
                      f"{RANDOMISATION_SCENES} at most)."),
    click.option("--pairs", type=StrictIntRange(min=0), default=100, show_default=True,
                 help="Two-object scenes (objects of two classes) for class discrimination."),
    click.option("--seed", type=STRICT_INT, default=1, show_default=True,
                 help="Scene set (the demo models trained on seed 0; seed 1 is their held-out set)."),
]), (EXPLAIN, [
    click.option("--methods", default="gradcam", show_default=True,
                 help=f"Comma-separated methods to measure: {', '.join(METHODS)}."),
    click.option("--measures", callback=_measures, default="localization", show_default=True, metavar="M1,M2,...",
                 help=f"What to measure, from: {', '.join(MEASURES)}. Only localization needs masks or boxes "
                      "with IMAGE arguments."),
    click.option("--layer", "-l", metavar="NAME", help="Target layer (default: the model's default)."),
    click.option("--class", "-c", "class_name", metavar="INDEX|NAME", callback=check_classes,
                 help="With IMAGE arguments: the class to explain in every image (default: each image's top-1)."),
    click.option("--target", "-t", metavar="SPEC", callback=check_target,
                 help=f"What the maps explain instead of a class: {spelled(KINDS[1:])}; faithfulness then scores "
                      "the target's value. On "
                      "generated scenes a segmenter (demo-unet) explains each scene's object as a segment target."),
]), (MEASURE, [
    click.option("--threshold", type=StrictFloatRange(0.0, 1.0, min_open=True), default=0.5, show_default=True,
                 help="Map threshold (fraction of its maximum) for the box."),
    click.option("--control", type=click.Choice(["none", "shuffled"]), default="none", show_default=True,
                 help="shuffled: score each map against another image's object (a negative control)."),
    click.option("--steps", type=StrictIntRange(min=1), default=20, show_default=True,
                 help="Deletion and insertion: equal steps from no pixel to all."),
    click.option("--baseline", type=click.Choice(["zero", "blur", "mean"]), default="zero", show_default=True,
                 help="What deleted pixels become: black, the blurred image, its mean colour (insertion always "
                      "starts from the blur). The choice changes which method ranks first (Hedstrom et al. 2023, "
                      "Quantus): compare methods under one baseline, beside the uniform and random maps."),
    click.option("--fail-under", "fail_under", callback=_parse_thresholds, metavar="FIGURE=N,...",
                 help="Exit 1, with one line per figure that fell short, when a method's figure is below N "
                      "(e.g. pointing=0.8,energy_in_box=0.3,insertion=0.5): a gate for a model's CI."),
]), (SETTINGS, [
    pool_option(),
    *method_parameter_options(METHODS, prefix="The methods' own options, each for the --methods that have it (not "
                              "integrated-gradients' --steps: here --steps is deletion's). ", exclude=("--steps",)),
]), (OUTPUT, [
    click.option("--output-dir", "-o", type=click.Path(file_okay=False), default="gradcam_out", show_default=True,
                 help="Where the figures go: eval.curves.png (deletion), eval.bars.png (the table's figures) and "
                      "eval.randomisation.png."),
    click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object."),
    click.option("--quiet", "-q", is_flag=True, help="No warnings about skipped images."),
]), (RUN, [
    click.option("--batch-size", "-b", type=StrictIntRange(min=1), default=32, show_default=True,
                 help="Images per forward/backward pass."),
    max_pixels_option,
]))
def eval_command(images, layer, class_name, target, methods, measures, pool, count, pairs, seed, threshold, control, steps,
                 baseline, output_dir, batch_size, boxes_file, fail_under, as_json, quiet, compat, **model_options):
    """Measure how well maps find the object, and how faithful they are to the model.

    Without IMAGE arguments: on generated scenes with known masks and boxes (gradcam_cli.evaluate.scenes:
    circles, squares, triangles, crosses on cluttered backgrounds), each explained for its
    object's class; needs a model of those four classes, such as demo-gap or demo-vgg.

    With IMAGE arguments (files, folders, -): on your images; localization needs each object's
    mask beside its image as NAME.mask.png (same size as the image; the object: where it is not
    transparent or, without transparency, non-zero, as --target's masks) or --boxes; the other
    measures need no mask.

    A model of volumes (demo-volume, a 3-D U-Net) takes scans (.nii, .nii.gz, .npy, .npz);
    localization needs each scan's label map beside it, NAME.mask.nii.gz (or .nii, .npy, .npz;
    the object: its non-zero voxels), of the scan's shape: pointing is the peak voxel inside it,
    its chance the mask's share of voxels. Deletion and confidence run over voxels (road and
    randomisation do not apply to volumes yet). Without scans, demo-volume is measured on
    generated ones (gradcam_cli.evaluate.volume_scenes).

    \b
    localization:
    pointing        the map's maximum lies on the object (15 px tolerance at 224, scaled)
    energy in box   the share of the map's mass inside the object's box
    box IoU         the box around the largest region >= threshold vs the object's box
    IoU>=0.5        the share of images localized in the ILSVRC sense
    discrimination  on two-object scenes: the map for A's class puts more mass on A than on B
    The chance row scores a uniform map (a centre point for pointing; a coin toss for
    discrimination).
    \b
    deletion        deletion AUC (RISE; lower is better) and insertion AUC (higher is better)
    confidence      average drop % (lower is better) and increase in confidence % (Grad-CAM++ paper)
    road            ROAD: the probability with the most (MoRF, lower is better) or least (LeRF)
                    relevant 10..90% of pixels imputed
    Beside them, baselines: a uniform map, a random map and randomcam.
    randomisation   Adebayo et al.'s cascading randomisation: the maps' rank correlation with
                    the trained model's as weights are re-initialised from the top (low is good)
    """
    setup_logging(model_options["verbose"])
    options, model_options = split_method_options(model_options)
    chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        raise click.BadParameter(f"choose from {', '.join(METHODS)}. Received: {methods!r}", param_hint="--methods")
    from gradcam_cli.evaluate import assess

    figures_out = "deletion" in measures or "randomisation" in measures
    if figures_out:
        writable(output_dir)
    inputs = None
    loaded = load(quiet=quiet, **model_options)  # first: whether the inputs are images or scans is the model's
    if images:
        from gradcam_cli.explain.prepared import takes_volumes

        try:
            inputs = assess.read_images(images, objects="localization" in measures, boxes_file=boxes_file,
                                        stdin=click.get_text_stream("stdin"),
                                        output_dir=output_dir if figures_out else None,
                                        volumes=takes_volumes(loaded))
        except GradcamError as error:
            raise UsageProblem(worded(error)) from None
        for path, reason in inputs.problems if not quiet else ():
            click.echo(f"skipped {path}: {reason}", err=True)
    try:
        result = assess.assess(loaded, chosen, measures, images=inputs, layer=layer, class_name=class_name,
                                   count=count, pairs=pairs, seed=seed, threshold=threshold,
                                   control=None if control == "none" else control, steps=steps, baseline=baseline,
                                   output_dir=output_dir if figures_out else None, batch_size=batch_size, pool=pool,
                                   fail_under=fail_under, boxes_file=boxes_file, options=options, compat=compat,
                                   target=target)
    except LayerError as error:
        raise UsageProblem(f"--methods {worded(error)}") from None
    except GradcamError as error:
        raise UsageProblem(worded(error)) from None
    if not quiet:
        for path in result.outputs.values():
            click.echo(f"wrote {path}", err=True)
    if as_json:
        from gradcam_cli.files.outputs import json_line

        click.echo(json_line(result.report))
    else:
        click.echo(result.text())
    for line in result.failed:
        click.echo(f"fail: {line}", err=True)
    sys.exit(1 if result.failed else 0)
