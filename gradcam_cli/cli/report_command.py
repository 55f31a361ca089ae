"""`gradcam report RESULTS.jsonl... -o DIR`: the HTML report of a run's JSON lines. It needs no
model: nothing here imports Keras or TensorFlow."""

import sys

import click

from gradcam_cli.cli.base import Console, UsageProblem, main, worded, writable
from gradcam_cli.cli.helptext import INPUT, OUTPUT, RUN, epilog, grouped
from gradcam_cli.cli.numbers import StrictIntRange
from gradcam_cli.cli.options import max_pixels_option


@main.command("report", short_help="An HTML page of a run's results: thumbnails, filters, failures.",
              epilog=epilog("report"))
@click.argument("results", nargs=-1, required=True, metavar="RESULTS.jsonl...",
                type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@grouped((INPUT, [
    click.option("--base", "base_dir", type=click.Path(exists=True, file_okay=False), metavar="DIR",
                 help="The folder the run was started from: relative paths in the records are taken from it "
                      "(default: the current folder)."),
]), (OUTPUT, [
    click.option("--output-dir", "-o", type=click.Path(file_okay=False), default="gradcam_report", show_default=True,
                 help="Where the report goes: OUTDIR/index.html and the thumbnails in OUTDIR/thumbs/."),
    click.option("--title", help="The page's title (default: gradcam report)."),
    click.option("--thumbnail-size", type=StrictIntRange(32, 1024), default=160, show_default=True, metavar="PIXELS",
                 help="The thumbnails' longer side."),
    click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary."),
]), (RUN, [max_pixels_option]))
def report_command(results, output_dir, base_dir, title, thumbnail_size, quiet):
    """Write one static page, OUTDIR/index.html, of the JSON lines that `gradcam ... --json`,
    `gradcam compare --json`, `gradcam eval --json` and `gradcam concepts --json` print (any mix, from one run or several;
    - reads standard input): a grid of the maps' thumbnails with file name, class, score and map
    statistics, sorted and filtered by class, score, method, file name, all-zero maps and missing
    files; a click shows the original, the heatmap and the overlay side by side with the top-5
    predictions. Failures, compare figures, eval tables and curves and concepts get their own sections.

    The page needs no server and loads nothing from the network. Thumbnails are written to
    OUTDIR/thumbs/; originals, heatmaps, overlays and figures are shown from where they lie,
    by paths relative to OUTDIR (keep OUTDIR where it is relative to them). A line that is not
    a record is reported and skipped (exit status 1); a missing image file is said on its card.

    \b
      gradcam photos/ --model resnet50 -o out/ --json > results.jsonl
      gradcam report results.jsonl -o report/
      gradcam photos/ --model demo-gap --json | gradcam report - -o report/
    """
    from gradcam_cli.report import ReportError, read_results, write_report

    bad_lines = []

    def on_bad_line(where, reason):
        bad_lines.append(where)
        click.echo(f"error: {where}: {reason}; line skipped", err=True)

    sources = [click.get_binary_stream("stdin") if path == "-" else path for path in results]
    records = list(read_results(sources, on_bad_line))
    if not records:
        raise UsageProblem("no records in " + ", ".join("standard input" if r == "-" else r for r in results))
    writable(output_dir)
    total = sum(len(record["maps"]) for record in records if isinstance(record.get("maps"), list)
                and "error" not in record)
    console = Console(total, quiet, as_json=False)
    try:
        written = write_report(records, output_dir, base_dir=base_dir, title=title, thumbnail_size=thumbnail_size,
                               progress=console.update)
    except ReportError as error:
        raise UsageProblem(worded(error)) from None
    finally:
        console.close()
    click.echo(str(written.index))
    if not quiet:
        parts = [f"{written.maps} map(s) of {written.images} image(s)", f"{written.failures} failure(s)"]
        parts += [f"{written.compare} comparison(s)"] if written.compare else []
        parts += [f"{written.eval} evaluation(s)"] if written.eval else []
        parts += [f"{written.concepts} set(s) of concepts"] if written.concepts else []
        parts += [f"{written.concept_images} concept overlay(s)"] if written.concept_images else []
        parts += [f"{written.missing} with a file missing"] if written.missing else []
        parts += [f"{len(bad_lines)} bad line(s) skipped"] if bad_lines else []
        click.echo(f"report: {', '.join(parts)}; {written.thumbnails} thumbnail(s) written", err=True)
    sys.exit(1 if bad_lines else 0)
