"""`gradcam concepts`: Deep Feature Factorization of a set of images. Parse, call the library
(explain/concepts.py finds the concepts, files/concepts.py draws and records them), report."""

import sys

import click

from gradcam_cli.cli.base import STATE, Console, UsageProblem, collect, load, main, setup_logging, worded, writable
from gradcam_cli.cli.helptext import EXPLAIN, OUTPUT, RUN, SETTINGS, epilog
from gradcam_cli.cli.numbers import STRICT_INT, StrictFloatRange, StrictIntRange
from gradcam_cli.cli.options import _save_parser, max_pixels_option, model_options

# files.concepts.SAVE_KINDS and DEFAULT_SAVE, spelled here so that `--help` imports no OpenCV (a test ties them).
SAVE_KINDS = ("overlay", "raw")
DEFAULT_SAVE = ("overlay",)


@main.command("concepts", short_help="The concepts a model finds across images (Deep Feature Factorization).",
              epilog=epilog("concepts"))
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@model_options(None, "--grid", (EXPLAIN, [
    click.option("--layer", "-l", metavar="NAME",
                 help="The layer whose activations are factorised (see `gradcam layers --model M`). Default: the "
                      "model's default target layer."),
]), (SETTINGS, [
    click.option("-k", "--concepts", "k", type=STRICT_INT, default=5, show_default=True, metavar="K",
                 help="How many concepts to find (the factorisation's components): at most the layer's channels."),
    click.option("--max-images", type=STRICT_INT, default=64, show_default=True, metavar="N",
                 help="Fit the concepts on at most N images, evenly spaced through the list (their activations are "
                      "held in memory together); every other image's heatmaps are then its non-negative "
                      "least-squares fit by those concepts."),
    click.option("--top-classes", type=STRICT_INT, default=2, show_default=True, metavar="N",
                 help="Name each concept by the model's N most likely classes for a map made of that concept "
                      "alone."),
    click.option("--seed", type=STRICT_INT, default=0, show_default=True, help="The factorisation's random start."),
]), (OUTPUT, [
    click.option("--output-dir", "-o", type=click.Path(file_okay=False), default="gradcam_out", show_default=True,
                 help="Where outputs go: OUTDIR/NAME.concepts.overlay.png (and .raw.npy), folder trees mirrored."),
    click.option("--save", callback=_save_parser(SAVE_KINDS), metavar="KIND,...",
                 help="What to write, comma-separated: overlay (the image coloured by its strongest concept, with a "
                      "legend beneath), raw (the heatmaps as .npy (height, width, k) at the layer's resolution, as "
                      "the factorisation weighs them). Default: overlay."),
    click.option("--alpha", type=StrictFloatRange(0.0, 1.0), default=0.5, show_default=True,
                 help="The concepts' opacity in the overlay (pytorch-grad-cam's 1 - image_weight)."),
    click.option("--json", "as_json", is_flag=True,
                 help="One JSON object per image on stdout (each concept's share of it: the mean of its strength, "
                      "its heatmap weighed by the concept's norm over the image's largest such value; the area "
                      "where it is the strongest; the strongest), then one for the concepts (names, colours, top "
                      "classes, vector norms, images fitted on and done); a failed image gets a record with an "
                      "error field."),
    click.option("--quiet", "-q", is_flag=True, help="No progress bar, warnings or summary."),
    click.option("--report", "report_dir", type=click.Path(file_okay=False), metavar="DIR",
                 help="Also write an HTML report into DIR/index.html: the concepts with their names and colours, "
                      "and each image's overlay (as `gradcam report` writes from --json lines)."),
]), (RUN, [
    click.option("--batch-size", "-b", type=StrictIntRange(min=1), default=8, show_default=True,
                 help="Images per forward pass."),
    max_pixels_option,
]))
def concepts_command(images, k, layer, max_images, top_classes, seed, output_dir, save, alpha, batch_size, as_json,
                     quiet, report_dir, **model_options):
    """Find the concepts a model sees across a set of images: Deep Feature Factorization (Collins,
    Achanta and Süsstrunk 2018, "Deep Feature Factorization for Concept Discovery"). The target
    layer's activations at every position of every image are factorised together into K
    non-negative parts (NMF): each concept is a direction in the layer's channels that the
    images share, and each image gets a heatmap per concept showing where it appears. A concept
    is named by the model's top classes for a map made of that concept alone (the layers above
    the target run on it), e.g. "cat 0.71, dog 0.12"; where those layers cannot be run alone,
    the concepts are "concept 1", "concept 2"...

    Writes per image OUTDIR/NAME.concepts.overlay.png: each pixel in the colour of its strongest
    concept, as bright as that concept is strong there, blended with the image, and a legend of
    the concepts beneath, then its record, NAME.concepts.record.json (OUTDIR/concepts.json holds the
    concepts' record). Channels with negative activations are shifted up first; NMF's random
    start is --seed (pytorch-grad-cam's DeepFeatureFactorization factorises the transposed
    matrix, so its numbers differ).

    \b
      gradcam concepts sample_images/synthetic_*.png --model demo-gap -k 4 -o concepts/
      gradcam concepts photos/ --model resnet50 -k 8 --max-images 200 --json > concepts.jsonl

    IMAGE may be files, folders (searched recursively), globs, or - to read paths from stdin.
    Exit status: 0 all images done, 1 some failed (each reported on stderr), 2 usage error.
    """
    from gradcam_cli.explain import concepts as dff

    setup_logging(model_options["verbose"], quiet)
    dff.check_arguments(k, max_images, top_classes)  # a GradcamError: one line, exit 2
    collected = collect(images, quiet, as_json, output_dir=output_dir)
    sources = collected.sources
    writable(output_dir)
    if report_dir is not None:
        writable(report_dir)
    loaded = load(quiet=quiet, **model_options)
    from gradcam_cli.api import Explainer
    from gradcam_cli.files import concepts as drawing
    from gradcam_cli.files.outputs import json_line

    if loaded.output_kind == "detections":
        raise UsageProblem(f"{loaded.name} is a detector: concepts are found in classifiers, segmenters and "
                           "embedding models")
    # the activations alone are factorised: a segmenter or an embedding model is read through a target that fits
    fitting = {"map": "segment:0", "embedding": "output:0"}.get(loaded.output_kind)
    explainer = Explainer(loaded, "eigencam", layer=layer, batch_size=min(batch_size, len(sources)), target=fitting)
    explainer.build()  # a layer that cannot be targeted: one line, exit 2
    kept = None if report_dir is None else [{"input": str(argument), "error": "no such file or folder"}
                                            for argument in collected.missing] + \
        [{"input": str(path), "error": collected.link_problem(path)} for path in collected.broken]
    console = Console(min(max_images, len(sources)) + len(sources), quiet, as_json)
    failed, done, fitted = [], [], []

    def on_concepts(concepts):  # on disk before any image's record, which names them
        fitted.append(concepts)
        drawing.write_concepts_record(output_dir, drawing.concepts_record(concepts, loaded.name, 0))

    def on_failure(index, reason):
        failed.append(index)
        if kept is not None:
            kept.append({"input": str(sources[index].path), "error": reason})
        console.failure(sources[index], reason)

    def on_image(concepts, image, rgb):
        source = sources[image.index]
        try:
            record = drawing.write_image(output_dir, source.name, source.path, rgb, image, concepts, loaded.name,
                                         save or DEFAULT_SAVE, alpha)
        except OSError as error:
            on_failure(image.index, f"cannot write its files: {error.strerror or error}")
            return
        done.append(record)
        if kept is not None:
            kept.append(record)
        try:
            drawing.write_concepts_record(output_dir, drawing.concepts_record(concepts, loaded.name, len(done)))
        except OSError as error:
            console.failure(sources[image.index], f"cannot update {drawing.CONCEPTS_RECORD}: "
                                                  f"{error.strerror or error}")
        if as_json:
            click.echo(json_line(record))
        else:
            for kind, written in record["outputs"].items():
                if kind != "record":  # the paths of the pictures and arrays, as the other commands print
                    click.echo(written)

    STATE.activity = f"finding concepts with {loaded.name}"
    try:
        result = dff.factorize(explainer, [source.path for source in sources], k=k, max_images=max_images,
                               top_classes=top_classes, seed=seed, on_image=on_image, on_failure=on_failure,
                               progress=console.update, on_concepts=on_concepts)
    except dff.ConceptError as error:
        result = error
    except BaseException:  # interrupted (SIGINT, SIGTERM): the report of what finished, then out
        console.close()
        if kept is not None:
            finished = [drawing.concepts_record(fitted[0], loaded.name, len(done))] if fitted else []
            try:
                _write_report(kept + finished, report_dir, quiet=True)
            except OSError as error:  # the interruption stays what the run ends with
                click.echo(f"error: the report of the images done was not written: {error.strerror or error}",
                           err=True)
        raise
    finally:
        console.close()
    if isinstance(result, dff.UnreadableSample):  # every failure was said: the run failed, not its options
        click.echo(f"error: {worded(result)}", err=True)
        sys.exit(1)
    if isinstance(result, dff.ConceptError):
        raise UsageProblem(worded(result))
    concepts = result.concepts
    record = drawing.concepts_record(concepts, loaded.name, len(done))
    if as_json:
        click.echo(json_line(record))
    if kept is not None:
        _write_report(kept + [record], report_dir, quiet)
    failures = len(failed) + collected.failures
    if not quiet:
        for line in ([concepts.classes_note] if concepts.classes_note else []) + concepts.warnings:
            click.echo(f"warning: {line}", err=True)
        click.echo(f"{len(concepts)} concept(s) at layer {concepts.layer}, fitted on "
                   f"{len(concepts.fitted)} image(s):", err=True)
        for index, (name, colour) in enumerate(zip(concepts.names, drawing.colours(len(concepts)))):
            click.echo(f"  {index}  {drawing.hex_colour(colour)}  {name}", err=True)
        click.echo(f"{len(done)} image(s) done, {failures} failed; outputs in {output_dir}", err=True)
    sys.exit(1 if failures else 0)


def _write_report(records, report_dir, quiet):
    """The run's HTML report (gradcam_cli.report), its path on stderr."""
    from gradcam_cli.report import write_report

    written = write_report(records, report_dir, title="gradcam concepts")
    if not quiet:
        click.echo(f"report: {written.index} ({written.concepts} set(s) of concepts, {written.concept_images} "
                   f"image(s), {written.failures} failure(s))", err=True)
