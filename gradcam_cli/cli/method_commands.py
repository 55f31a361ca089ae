"""The method commands (`gradcam`, `cam`, `guided`, `dilated`) and `gradcam methods`: parse,
call the API (api.Explainer), report."""

import sys
from pathlib import Path

import click

from gradcam_cli.cli.base import (
    STATE,
    Console,
    UsageProblem,
    collect,
    load,
    log,
    main,
    setup_logging,
    shared_for,
    worded,
    writable,
)
from gradcam_cli.cli.helptext import epilog
from gradcam_cli.cli.options import method_options, method_parameter_options, pool_option, split_method_options
from gradcam_cli.cli.process import uninterrupted
from gradcam_cli.errors import LayerError
from gradcam_cli.explain.methods import METHODS


def run_method(method, images, layers, classes, top_k, output_dir, save, colormap, alpha, crop, batch_size,
               as_json, quiet, shard, skip_existing, jit, precision, aug_smooth=False, eigen_smooth=False, pool="mean",
               compare=False, network=None, compat=None, ray_address=None, workers=None, report_dir=None, target=None,
               window=None, max_voxels=None, frames=None, **arguments):
    """What every method command does: collect inputs, load, explain (here, or on a Ray cluster
    with `ray_address`), report, exit status. arguments: the methods' own options (method_parameters:
    None when not given) and those of `model_options`, for base.load. Volumes are collected with
    images; once the model is loaded, what it does not take is set aside (`_for_model`)."""
    given, model_options = split_method_options(arguments)
    setup_logging(model_options["verbose"], quiet)
    collected = collect(images, quiet, as_json, shard=shard, output_dir=output_dir, volumes=True)
    if classes and top_k != 1:
        raise UsageProblem("give --class or --top-k, not both")
    if classes and target is not None:
        raise UsageProblem("give --class or --target, not both (--class N is --target class:N)")
    if classes:  # --class N is the short form of --target class:N: asked for explicitly
        from gradcam_cli.explain.targets import Target

        target = Target("class")
    if workers is not None and ray_address is None:
        raise UsageProblem("--workers is the number of Ray workers: give --ray auto|local|ADDRESS too")
    if ray_address is not None:
        if compare:
            raise UsageProblem("--compare runs on this machine: drop --ray")
        from gradcam_cli.distributed import import_ray

        import_ray()  # a missing Ray is said before the model loads
    writable(output_dir)
    if report_dir is not None:
        writable(report_dir)
    loaded = load(precision=precision, quiet=quiet, keep=True, **model_options)
    shared = shared_for(loaded)  # under `gradcam serve`: its engines and steps, kept between commands
    _for_model(collected, loaded, images, quiet, ray_address=ray_address, compare=compare)
    batch_size = min(batch_size, len(collected.sources))
    from gradcam_cli.api import Explainer
    from gradcam_cli.files.outputs import json_line, write_line

    layer = None if not layers else layers[0] if len(layers) == 1 else list(layers)
    # inputs: a one-batch run computes eagerly (explain.eager.eager_pays); a kept engine compiles at once instead
    explainer_arguments = dict(layer=layer, batch_size=batch_size, pool=pool, crop=crop, jit=jit,
                               aug_smooth=aug_smooth, eigen_smooth=eigen_smooth, network=network, compat=compat,
                               target=target, inputs=len(collected.sources) if shared is None else None,
                               **({} if frames is None else {"frames": frames}), **given)
    explainer = Explainer(loaded, method, **explainer_arguments)
    class_indices = explainer.class_indices(classes)
    if compare:  # the original's Grad-CAM, then both dilated copies', side by side
        from gradcam_cli.compare import figures as comparing

        if len(layers) > 1 or aug_smooth or eigen_smooth:
            raise UsageProblem("--compare draws one layer's plain maps: drop the extra --layer and the smoothing")
        rows = comparing.dilated_rows(loaded, layer, class_indices[0] if class_indices else None, batch_size, crop)
        tag = "dilated" + (f".class{class_indices[0]}" if class_indices else "")
        figure_options = comparing.CompareOptions(Path(output_dir), tag=tag, colormap=colormap.lower(), alpha=alpha, crop=crop)
        sources, reference = collected.sources, None
    else:
        try:
            built = explainer.build(shared)
        except LayerError as error:
            hint = ": use `gradcam gradcam`" if METHODS[method].needs_classifier else ""
            raise UsageProblem(f"{worded(error)}{hint}") from None
        if built.engine.batch_size < batch_size:
            from gradcam_cli.models.precision import activation_bytes

            log.info("batch size %d -> %d: each image holds %.2f GB of activations at full resolution",
                     batch_size, built.engine.batch_size, activation_bytes(built.loaded) / 1e9)
        if built.context.relus is not None and not quiet:
            _describe_relus(built.context.relus, method)
        for warning in built.warnings if not quiet else ():
            click.echo(f"warning: {method}: {warning}", err=True)
        log.info("model %s, layer %s, input %sx%s, preprocess %s", loaded.name, built.layer, *loaded.input_size,
                 loaded.preprocess)
        file_options = explainer.file_options(output_dir, classes=class_indices, top_k=top_k, save=save,
                                              colormap=colormap, alpha=alpha, window=window, max_voxels=max_voxels)
        sources, resumed = collected.sources, {}
        if skip_existing and ray_address is not None:  # the cluster gets what is left; the rest is re-emitted here
            from gradcam_cli.files.writer import resumable

            sources, resumed = resumable(collected.sources, file_options)
        reference, layer_name = built.reference, built.layer

    # Under --report, every record (failures too, missing arguments first), for the page.
    kept = None if report_dir is None else [{"input": str(argument), "error": "no such file or folder"}
                                            for argument in collected.missing] + \
        [{"input": str(path), "error": collected.link_problem(path)} for path in collected.broken]

    def on_failure(source, reason, record=None):
        with uninterrupted():  # printed and kept together
            if kept is not None:
                kept.append(record if record is not None else {"input": str(getattr(source, "path", source)),
                                                               "error": reason})
            console.failure(source, reason, record)

    def on_result(record):
        with uninterrupted():  # printed and kept together
            if kept is not None:
                kept.append(record)
            _print_record(record)

    def _print_record(record):
        if as_json:
            write_line(json_line(record))
            return
        for entry in record.get("maps", [record]):  # compare records carry their figure's path
            for written in entry["outputs"].values():
                click.echo(written)
        if reference is not None and not quiet:
            console.clear()
            click.echo(_side_by_side(record, reference.name, explainer.build().loaded.name), err=True)

    def on_empty(source, class_index_):
        if not quiet:
            click.echo(f"warning: {source.path}: the map for class {class_index_} ({loaded.label(class_index_)}) "
                       f"is zero everywhere: no positive evidence at {layer_name}", err=True)

    console = Console(len(sources), quiet, as_json)
    try:
        if compare:
            report = comparing.draw_figures(rows, sources, figure_options, on_result, on_failure, console.update,
                                   skip_existing=skip_existing)
        elif ray_address is not None:
            for stored in resumed.values():
                on_result(stored.record)
            from gradcam_cli.files.images import max_pixels

            arguments = dict(model=model_options["model"], method=method, output_dir=output_dir, classes=class_indices,
                             top_k=top_k, save=save, colormap=colormap, alpha=alpha, precision=precision,
                             max_pixels=max_pixels(), **explainer_arguments, **_load_options(model_options))
            report = _on_ray(ray_address, workers, sources, arguments, built.engine.batch_size, quiet,
                             model_options["verbose"], on_result, on_failure, console.update, on_empty)
            report.done, report.resumed = report.done + len(resumed), len(resumed)
        else:
            report = explainer.write(sources, file_options, on_result, on_failure, on_empty, console.update,
                                     skip_existing=skip_existing)
    except KeyboardInterrupt:  # SIGINT or SIGTERM (cli.base): the report of what finished, then exit 130 or 143
        console.close()
        if kept is not None:
            _write_report(kept, report_dir, quiet)
        raise
    finally:
        console.close()
    failed = len(report.failed) + collected.failures
    if kept is not None and not _write_report(kept, report_dir, quiet):
        failed += 1
    noun = _inputs_noun(loaded)
    if report.resumed and not quiet:
        click.echo(f"skipped {report.resumed} {noun} whose outputs exist (their records are emitted again)",
                   err=True)
    if not quiet:
        empty = f", {report.empty_maps} map(s) zero everywhere" if report.empty_maps else ""
        click.echo(f"{report.done} {noun} explained, {failed} failed{empty}; outputs in {output_dir}", err=True)
    sys.exit(1 if failed else 0)


def _inputs_noun(loaded):
    """What the summary calls the inputs `loaded` takes: clip(s), scan(s) or image(s)."""
    from gradcam_cli.explain.prepared import takes_clips, takes_volumes

    return "clip(s)" if takes_clips(loaded) else "scan(s)" if takes_volumes(loaded) else "image(s)"


def _for_model(collected, loaded, images, quiet, ray_address=None, compare=False):
    """The inputs `loaded` takes (inputs.Collected.for_model): for a model of images, the volumes
    found in folders are skipped (said on stderr); UsageProblem when nothing is left, or for what
    a model of volumes does not run with (--ray, --compare)."""
    from gradcam_cli.explain.prepared import takes_clips, takes_volumes

    volumes = takes_volumes(loaded)
    if volumes and ray_address is not None:
        raise UsageProblem(f"{loaded.name} takes volumes, which run on this machine: drop --ray")
    if volumes and compare:
        raise UsageProblem(f"{loaded.name} takes volumes: --compare (a dilated copy) does not apply to volumes yet")
    dropped = collected.for_model(volumes, clips=takes_clips(loaded))
    if dropped and not quiet:
        click.echo(f"skipped {len(dropped)} volume(s) or clip(s) (NIfTI, NumPy, DICOM, video) found in folders: "
                   f"{loaded.name} takes images", err=True)
    if not collected.sources:
        if collected.failures:  # as base.collect: the missing arguments were said
            sys.exit(1)
        raise UsageProblem("no images found in " + ", ".join(images))


def _write_report(records, report_dir, quiet):
    """The run's HTML report (gradcam_cli.report), its path on stderr; False (said in one line)
    when it cannot be written."""
    from gradcam_cli.report import write_report

    try:
        written = write_report(records, report_dir)
    except OSError as error:
        click.echo(f"error: cannot write the report in {report_dir}: {error.strerror or error}", err=True)
        return False
    if not quiet:
        click.echo(f"report: {written.index} ({written.maps} map(s), {written.failures} failure(s))", err=True)
    return True


def _load_options(model_options):
    """The command's model options as api.load_model takes them (for Ray workers to load the model):
    api.LOAD_OPTIONS, the precision aside (the command passes it on its own)."""
    from gradcam_cli.api import LOAD_OPTIONS

    spelled = {"trust": "trust_model"}  # the command's names that are not the API's
    return {name: model_options[spelled.get(name, name)] for name in LOAD_OPTIONS if name != "precision"}


def _on_ray(address, workers, sources, arguments, batch_size, quiet, verbose, on_result, on_failure, progress,
            on_empty):
    """The run on a Ray cluster (gradcam_cli.distributed.cluster.explain_on_cluster), its notes on stderr unless
    quiet."""
    from gradcam_cli.distributed import cluster as on_ray

    say = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    if arguments["weights"] == "none":
        say("warning: with --weights none each Ray worker draws its own random weights")
    STATE.activity = f"running on the Ray cluster {address}"
    return on_ray.explain_on_cluster(sources, arguments, address, workers=workers, batch_size=batch_size,
                                     on_result=on_result, on_failure=on_failure, on_empty=on_empty, progress=progress,
                                     say=say, verbose=verbose)


MAP_METHODS = tuple(name for name, method in METHODS.items() if method.backprop is None)
# Those `dilated --method` computes on a dilated copy (the dilated methods are Grad-CAM on one).
DILATABLE = tuple(name for name in MAP_METHODS if METHODS[name].network is None and METHODS[name].meta is None)


@main.command("gradcam", short_help="Grad-CAM maps, or any map method (also what a bare `gradcam IMAGE...` runs).",
              epilog=epilog("gradcam"))
@method_options(
    explain=[click.option("--method", type=click.Choice(MAP_METHODS), default="gradcam", show_default=True,
                          metavar="NAME", help=f"The method: {', '.join(MAP_METHODS)} (see `gradcam methods`); "
                                               "the other commands are presets of it.")],
    settings=[pool_option("How gradients become channel weights: their spatial mean (Grad-CAM) or maximum (a "
                          "variant: the strongest gradient of each channel)."),
              *method_parameter_options(MAP_METHODS)])
def gradcam_command(method, **kwargs):
    """Grad-CAM (Selvaraju et al. 2017): the target layer's channels weighted by the spatially
    pooled gradient of the class score (before softmax), summed, ReLU, upsampled onto the image.
    --method chooses another method; `gradcam methods` lists them.

    IMAGE may be files, folders (searched recursively), globs, or - to read paths from stdin.
    Exit status: 0 all images done, 1 some failed (each reported on stderr), 2 usage error.

    Volumes (.nii, .nii.gz, .npy, .npz, DICOM series folders; a Conv3D model): the array goes in as stored,
    in its own axis order, never reoriented or resampled to its voxel sizes (only resized to the model's input);
    maps come back at the volume's shape, and --save nifti carries the input's affine to NAME.METHOD.nii.gz.

    Clips (.mp4, .avi, .mov, .webm, or a folder of numbered frames named directly; a video model whose input
    is T x H x W x 3): --frames N frames are taken evenly (default the model's T), as RGB, then the model's
    preprocessing; the maps are (T, H, W), one per frame taken, at the clip's own frame size.
    """
    run_method(method, **kwargs)


@main.command("methods", epilog=epilog("methods"))
@click.argument("name", required=False, metavar="[NAME]")
def methods_command(name):
    """List the methods: name, what each needs from the model, what its map is, and its paper.
    Each runs with `gradcam gradcam --method NAME` (guided and deconvnet: `gradcam guided`), in
    `compare --methods` and in `eval --methods`. With NAME, that method's page: its paper, what
    it needs, its options (flag, API keyword, type, default, range), what it adds to a JSON
    record, and the open choices that pytorch-grad-cam and tf-keras-vis make differently
    (`--compat` makes them)."""
    if name is not None:
        if name not in METHODS:
            raise UsageProblem(f"no method {name!r}; choose from {', '.join(METHODS)}")
        click.echo(method_page(METHODS[name]))
        return
    rows = [("method", "needs", "map", "paper")]
    rows += [(key, ",".join(m.needs), m.summary, m.paper) for key, m in METHODS.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for key, needs, summary, paper in rows:
        click.echo(f"{key:<{widths[0]}}  {needs:<{widths[1]}}  {summary}  ({paper})" if key != "method"
                   else f"{key:<{widths[0]}}  {needs:<{widths[1]}}  {summary} (paper)")


def method_page(method):
    """`gradcam methods NAME`: one method's page, from its registry entry."""
    from gradcam_cli.explain.methods import LIBRARIES, NEEDS

    lines = [f"{method.name}: {method.summary}", f"paper: {method.paper}", "needs:"]
    lines += [f"  {need}: {NEEDS[need]}" for need in method.needs]
    lines.append("options:" if method.options else "options: none")
    lines += [f"  {option.describe()}" for option in method.options]
    record = method.record_keys()
    lines.append("in the JSON record: " + (", ".join(record) if record else "nothing beyond every method's fields"))
    if method.warnings is not None:
        lines.append("warns: when the model is one the method says little of (see --json method_warnings)")
    if method.choices:
        lines.append("open choices (ours, then --compat's):")
        for choice in method.choices:
            lines.append(f"  {choice.question} ({choice.option}):")
            lines.append(f"    gradcam-cli       {choice.ours}")
            for library in LIBRARIES:
                value, what = choice.libraries.get(library, (None, "the same as ours"))
                setting = f" [{choice.option}={value}]" if value is not None else ""
                lines.append(f"    {library:<17} {what}{setting}")
    else:
        lines.append("open choices: none that pytorch-grad-cam or tf-keras-vis make differently in a way --compat "
                     "reproduces (docs/methods.md says what each does)")
    return "\n".join(lines)


@main.command("cam", short_help="CAM maps, for models whose head is global average pooling + Dense.",
              epilog=epilog("cam"))
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


@main.command("guided", short_help="Guided backpropagation and Guided Grad-CAM (or deconvnet) images.",
              epilog=epilog("guided"))
@method_options(
    guided=True,
    explain=[click.option("--mode", type=click.Choice(["guided", "deconvnet"]), default="guided", show_default=True,
                          help="How gradients pass back through ReLUs: guided backpropagation (only positive "
                               "gradients, only where the forward input was positive) or deconvnet (only "
                               "positive gradients, wherever the input was).")],
    settings=[pool_option("Grad-CAM's channel pooling, for the map the gradient is multiplied by."),
              *method_parameter_options(("guided", "deconvnet"))])
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


@main.command("dilated", short_help="Grad-CAM at full resolution on a dilated copy of VGG16/VGG19/demo-vgg.",
              epilog=epilog("dilated"))
@method_options(
    explain=[click.option("--mode", type=click.Choice(["exact", "no-pooling"]), default="exact", show_default=True,
                          help="exact: the a trous network, which computes the original's predictions exactly; "
                               "no-pooling: the poolings removed and the convolutions dilated instead, a different "
                               "classifier."),
             click.option("--method", type=click.Choice(DILATABLE), default="gradcam", show_default=True,
                          metavar="NAME", help=f"The map method to compute on the dilated copy: {', '.join(DILATABLE)} "
                                               "(see `gradcam methods`): a full-resolution map for any of them.")],
    settings=[pool_option(), *method_parameter_options(DILATABLE)],
    output=[click.option("--compare", is_flag=True,
                         help="Instead, write one figure per image (NAME.dilated.compare.png): the original's "
                              "Grad-CAM, the no-pooling map and the exact map side by side, for the same class; "
                              "then its record (NAME.dilated.compare.record.json), what --skip-existing reads.")])
def dilated_command(mode, method, compare, **kwargs):
    """Grad-CAM (or --method) on a dilated copy of a plain convolutional network (VGG16, VGG19, demo-vgg, or a
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

    Outputs are named NAME.dilated.KIND.png (exact) or NAME.dilated-no-pooling.KIND.png, with
    --method M NAME.dilated-M.KIND.png or NAME.dilated-no-pooling-M.KIND.png. Both models'
    top-5 predictions are printed side by side on stderr (in --json: predictions and
    reference_predictions), with the seconds each image took. The dilated VGG16 costs about 50
    VGG16 passes (some 12 s an image on 2 CPU cores); the batch size is cut so that a batch's
    activations stay within 2 GB (one image at a time for VGG16).

    IMAGE may be files, folders (searched recursively), globs, or - to read paths from stdin.
    Exit status: 0 all images done, 1 some failed (each reported on stderr), 2 usage error.
    """
    if method == "gradcam":
        run_method("dilated" if mode == "exact" else "dilated-no-pooling", compare=compare, **kwargs)
    elif compare:
        raise UsageProblem("--compare draws Grad-CAM's maps: drop --method")
    else:
        run_method(method, network=mode, **kwargs)


