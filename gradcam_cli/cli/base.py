"""The group, and what every command shares: one-line errors, logging, loading the model with
its warnings, the progress console, collecting inputs."""

import logging
import sys

import click
import cloup

from gradcam_cli.cli.process import Terminated, interrupt_handler, on_signals, silence_libraries
from gradcam_cli.errors import GradcamError
from gradcam_cli.files.outputs import StandardOutputError

log = logging.getLogger("gradcam_cli")

# How the command line spells the library's arguments (errors.argument) in its messages.
FLAGS = {"input_size": "--input-size", "grid": "--grid", "prefix_tokens": "--prefix-tokens", "weights": "--weights",
         "imports": "--import", "trust": "--trust-model", "output": "--output", "labels": "--labels", "device": "--device", "preprocess": "--preprocess",
         "top_k": "--top-k", "classes": "--class", "layer": "--layer", "batch_size": "--batch-size",
         "method": "--method", "class_name": "--class", "k": "-k", "max_images": "--max-images",
         "top_classes": "--top-classes"}


def _spell(name, python, command):
    flag = FLAGS.get(name)
    if flag is None:  # a method's option: its registry entry spells it
        from gradcam_cli.explain.methods import METHODS

        flag = next((o.spelled for m in METHODS.values() for o in m.options if o.name == name),
                    "--" + name.replace("_", "-"))
    return f"{flag} {command}".strip()


def worded(error):
    """A library error's message as the command line says it (its options for the arguments)."""
    return error.worded(_spell) if isinstance(error, GradcamError) else str(error)


class UsageProblem(click.UsageError):
    """A usage error in one line (exit status 2), without the usage block Click prints: the
    message already says what to do. The library's GradcamErrors reach the user as these."""

    exit_code = 2

    def show(self, file=None):
        click.echo(f"Error: {self.format_message()}", err=True)


class _State:
    """What the command is doing, for the one-line report of an unexpected failure."""

    activity = "running the command"
    verbose = False


STATE = _State()


class _Serving:
    """Set while `gradcam serve` runs (cli/server.py): `models`, its ModelCache of the models the method
    commands load, kept between commands; None otherwise (each command loads its own)."""

    models = None


SERVING = _Serving()


def shared_for(loaded):
    """What api.Explainer.build shares for `loaded` between commands under `gradcam serve` (its engines
    and compiled steps); None otherwise."""
    return None if SERVING.models is None else SERVING.models.shared(loaded)


class DefaultCommandGroup(cloup.Group):
    """A group whose bare form `gradcam IMAGE... [options]` runs the default command, and which
    reports any unexpected exception in one line (the traceback only with --verbose), exit 1.
    A cloup group: its commands are cloup.Commands, whose --help lists their options under
    headings (helptext.grouped); they subclass Click's, so Click's testing and sphinx-click work."""

    default_command = "gradcam"

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def main(self, args=None, *rest, **options):
        """Click's main; as the process's own command (the console script, `python -m
        gradcam_cli`: no `args` given), a command that loaded Keras ends through `_exit_now`.
        `gradcam --server [--socket PATH] ARGS...` sends ARGS to `gradcam serve` (cli/client.py), and
        runs them here when no server answers."""
        own = args is None
        given = sys.argv[1:] if own else list(args)
        if given[:1] == ["--server"] and SERVING.models is None:
            from gradcam_cli.cli.client import forward

            args = forward(given[1:])  # exits with the server's status
        try:
            return super().main(args, *rest, **options)
        except SystemExit as exit:
            if own and options.get("standalone_mode", True) and "keras" in sys.modules:
                _exit_now(exit.code)
            raise

    def invoke(self, ctx):
        STATE.activity, STATE.verbose = "running the command", False
        previous = on_signals(interrupt_handler)
        try:
            return super().invoke(ctx)
        except click.MissingParameter:  # a missing IMAGE...: the usage block says what to give
            raise
        except click.BadParameter as error:  # a bad value (--colormap nope, --alpha nan): one line, as below
            raise UsageProblem(error.format_message()) from None
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except GradcamError as error:  # the library's own: a usage error, before any image
            raise UsageProblem(worded(error)) from None
        except BrokenPipeError:  # the reader went away (`gradcam ... --json | head`): stop quietly,
            _close_stdout()  # as a command killed by SIGPIPE does (a shell sees status 141)
            ctx.exit(141)
        except KeyboardInterrupt as interrupt:  # what finished is whole and reported: exit as Unix tools do
            terminated = isinstance(interrupt, Terminated)
            click.echo(f"gradcam: {'terminated' if terminated else 'interrupted'}; the images that finished have "
                       "their files and records (--skip-existing resumes)", err=True)
            ctx.exit(143 if terminated else 130)
        except StandardOutputError as error:
            click.echo(f"error: {error.strerror}", err=True)
            ctx.exit(1)
        except Exception as error:
            from gradcam_cli.errors import unexpected

            if STATE.verbose:
                import traceback

                traceback.print_exc()
            hint = "" if STATE.verbose else " (run with --verbose for details)"
            click.echo(f"error: failed while {STATE.activity}: {unexpected(error)}{hint}", err=True)
            ctx.exit(1)
        finally:
            on_signals(previous)


def _exit_now(code):
    """End the process as the interpreter would, less its teardown: Python threads joined (the
    writers' pools), the atexit functions run (logging's flush, finalizers, Ray's shutdown), the
    standard streams flushed, then os._exit. Tearing down TensorFlow's and a model's objects adds
    about 1 s to every run that loaded one (ResNet50, 2 cores) and writes nothing."""
    import atexit
    import os
    import threading

    status = 0 if code is None else code if isinstance(code, int) else 1
    if not isinstance(code, (int, type(None))):
        print(code, file=sys.stderr)  # as SystemExit("message") would print it
    shutdown = getattr(threading, "_shutdown", None)  # what Py_FinalizeEx calls first
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach the reader
            status = status or 1
    os._exit(status)


def _close_stdout():
    """Point stdout at /dev/null, so that flushing it at exit does not raise again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (Click's test runner)
        pass


def _print_versions(ctx, param, value):
    """--version: the tool's, Keras's and its backend's versions (helptext.versions: no import of either)."""
    if not value or ctx.resilient_parsing:
        return
    from gradcam_cli.cli.helptext import versions

    click.echo(versions())
    ctx.exit()


@click.group(
    cls=DefaultCommandGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_versions,
              help="Show the versions of gradcam-cli, Keras and its backend, and exit.")
def main():
    """Show where a Keras image classifier looks: class activation maps as PNG heatmaps and
    overlays.

    \b
      gradcam cat.jpg --model vgg16 --layer block5_conv3
      gradcam photos/ --model resnet50 -o out/ --json > results.jsonl
      find . -name '*.png' | gradcam - --model my_model.keras --preprocess unit

    A bare `gradcam IMAGE...` runs `gradcam gradcam IMAGE...`. Run `gradcam COMMAND --help` for
    a command's options, `gradcam methods` for the methods, `gradcam models` for the known models.

    For many short runs, `gradcam serve` keeps Keras and the models loaded, and
    `gradcam --server [--socket PATH] ARGS...` (--server first) sends `gradcam ARGS...` to it: the
    same maps without the seconds TensorFlow takes to start (run here when no server answers).
    """


class _StderrHandler(logging.StreamHandler):
    """Writes to the sys.stderr of the moment (a command run in-process, as Click's test
    runner does, swaps it), not the one of the first call."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def setup_logging(verbose, quiet=False):
    """Our log's level (--verbose: INFO, --quiet: ERROR); under --quiet the libraries are silenced
    too, for the rest of the command (cli.process.silence_libraries)."""
    STATE.verbose = verbose
    level = logging.INFO if verbose else logging.ERROR if quiet else logging.WARNING
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(level)
    if quiet and not verbose:
        restore = silence_libraries()
        context = click.get_current_context(silent=True)
        if context is not None:
            context.call_on_close(restore)


def load(model, weights=None, preprocess=None, input_size=None, labels=None, trust_model=False, device="auto",
         verbose=False, precision="float32", imports=(), output=None, quiet=False, maps=True, grid=None,
         prefix_tokens=None, cache_dir=None, keep=False):
    """The model, loaded as the model options say; its warnings on stderr unless quiet (and,
    when it is loaded to draw `maps`, that random weights show nothing). cache_dir: JAX's
    compilation cache (explain.runtime.compilation_cache). keep: under `gradcam serve`, the model
    is kept for later commands with the same load arguments (SERVING.models), and taken from there."""
    from gradcam_cli.explain.runtime import compilation_cache, import_keras

    STATE.activity = f"loading model {model}"
    import_keras(device=device, verbose=verbose, lean=True)
    compilation_cache(cache_dir)
    import contextlib
    import io

    from gradcam_cli.models.loading import load as load_model

    # under --quiet, what libraries write to sys.stderr while loading (kagglehub's download bars) is dropped
    with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
        arguments = dict(weights=weights, preprocess=preprocess, input_size=input_size, labels_file=labels,
                         trust=trust_model, precision=precision, output=output, imports=imports, grid=grid,
                         prefix_tokens=prefix_tokens)
        if keep and SERVING.models is not None:
            loaded = SERVING.models.get(dict(arguments, model=model, device=device),
                                        lambda: load_model(model, **arguments))
        else:
            loaded = load_model(model, **arguments)
    if not quiet:
        for warning in loaded.warnings:
            click.echo(f"warning: {loaded.name}: {warning}", err=True)
        if weights == "none" and maps:
            click.echo("warning: random weights (--weights none): the maps show nothing meaningful", err=True)
    STATE.activity = f"explaining images with {loaded.name}"
    return loaded


class Console:
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
        from gradcam_cli.files.outputs import json_line, write_line

        self.clear()
        path = getattr(source, "path", source)
        click.echo(f"error: {path}: {reason}", err=True)
        if self.as_json:
            write_line(json_line(record if record is not None else {"input": str(path), "error": reason}))

    def close(self):
        if self.bar is not None:
            self.bar.close()


def collect(images, quiet, as_json=False, shard=None, exclude=None, output_dir=None, volumes=False):
    """IMAGE arguments expanded (inputs.collect: the files of `output_dir`, masks and those
    `exclude(path)` names left out, then shard K/N), reported: missing arguments, broken
    links and link loops are errors (a line on stderr, a record under --json; `failures` counts them),
    skipped files are counted on stderr. Exits 1 when nothing is left and something was
    missing, 0 for an empty shard; UsageProblem otherwise. `volumes`: volume files and DICOM
    series folders are collected too (inputs.collect)."""
    from gradcam_cli.files.inputs import collect as collect_inputs

    collected = collect_inputs(images, stdin=click.get_text_stream("stdin"), output_dir=output_dir, exclude=exclude,
                               shard=shard, volumes=volumes)
    console = Console(0, quiet=True, as_json=as_json)
    for argument in collected.missing:
        console.failure(argument, "no such file or folder")
    for path in collected.broken:
        console.failure(path, collected.link_problem(path))
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


def writable(output_dir):
    """Stop before any work (exit 2) when the output folder cannot be written."""
    from gradcam_cli.files.outputs import check_writable

    try:
        check_writable(output_dir)
    except OSError as error:
        raise UsageProblem(f"cannot write to the output folder {output_dir}: {error.strerror or error}") from None


def names(value):
    """A comma-separated option's values."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]
