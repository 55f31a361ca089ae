"""The command line of one `gradcam` run with marks at its phases' ends, for bench_latency.py's phase
table: `PHASES=1 python benchmarks/latency_phases.py ARGUMENTS...` runs `gradcam ARGUMENTS...` as the
console script does, and prints to stderr one JSON line with the seconds of each phase: import (the
command line's modules, then Keras and TensorFlow: explain.runtime.import_keras's return), build (the
model loaded: cli.base.load's return), first_batch (the run's work, to the command's end), and
`started` / `finished` (epoch seconds), from which bench_latency.py takes the interpreter's start
and the exit. Nothing else of the run is changed.
"""

import time

START = time.time()

import json  # noqa: E402
import sys  # noqa: E402

import gradcam_cli.cli.base as base  # noqa: E402
import gradcam_cli.explain.runtime as runtime  # noqa: E402

marks = {}


def marked(name, function):
    def call(*args, **kwargs):
        result = function(*args, **kwargs)
        marks.setdefault(name, time.time())
        return result

    return call


def report_then(exit_now):
    def call(code):
        marks["finished"] = time.time()
        imported, built = marks["imported"], marks["built"]
        print(json.dumps({"import": imported - START, "build": built - imported, "first_batch": marks["finished"] - built,
                          "started": START, "finished": marks["finished"]}), file=sys.stderr, flush=True)
        exit_now(code)

    return call


runtime.import_keras = marked("imported", runtime.import_keras)
base.load = marked("built", base.load)
base._exit_now = report_then(base._exit_now)
import gradcam_cli.cli.method_commands as method_commands  # noqa: E402

method_commands.load = base.load
from gradcam_cli.cli import main  # noqa: E402

sys.argv[0] = "gradcam"
main()
