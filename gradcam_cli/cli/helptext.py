"""What `--help` and `--version` say beyond each option's own help: the headings options are
grouped under (cloup option groups), each command's examples (its epilog), the demo models'
list and classes, and the versions of the tool, Keras and its backend. Pure data and Click: no
Keras or TensorFlow here, so `gradcam --help` stays instant.

Choices, named: the headings are one list (HEADINGS), so every command orders them alike; an
option's heading is chosen where the option is declared (options.py), and `grouped` merges the
options given under one heading wherever they come from (a command's own, the shared ones). The
examples are data (EXAMPLES), so that tests/test_epilogs.py runs exactly what the help shows.
"""

import cloup

from gradcam_cli.models import registry

# INPUT holds what most runs give (--model, --weights); the rest of loading a model (files, preprocessing,
# transformers' grids) comes after the output under LOADING, so that "What to explain" (--method) is near the top.
INPUT = "Input and model"
EXPLAIN = "What to explain"
MEASURE = "Measure settings"  # eval's
SETTINGS = "Method settings"
OUTPUT = "Output"
LOADING = "Model loading"
VOLUMES = "Volumes and clips"
RUN = "Run and limits"
HEADINGS = (INPUT, EXPLAIN, MEASURE, SETTINGS, OUTPUT, LOADING, VOLUMES, RUN)


def grouped(*sections):
    """A decorator adding `sections`, (heading, [option decorators]) pairs, as cloup option
    groups in HEADINGS' order (a heading not in HEADINGS after them, in the order given);
    the options given under one heading, wherever given, form one group in the order given.
    The command must be a cloup.Command (every command of `main` is: base.DefaultCommandGroup)."""
    merged: dict = {}
    for heading, options in sections:
        merged.setdefault(heading, []).extend(options)
    order = [h for h in HEADINGS if merged.get(h)] + [h for h in merged if h not in HEADINGS and merged[h]]

    def decorate(function):
        for heading in reversed(order):  # Click lists the decorator applied last first
            function = cloup.option_group(heading, *merged[heading])(function)
        return function

    return decorate


# Each command's examples: runnable offline, on the shipped demo models and sample images (a
# relative path, from the repository's root; outputs go under the current folder).
EXAMPLES = {
    "gradcam": [
        "gradcam gradcam sample_images/synthetic_square.png --model demo-vgg -o out/",
        "gradcam gradcam sample_images/synthetic_two_circle_triangle.png --model demo-gap --method gradcam++ "
        "--class triangle -o out/",
        "gradcam gradcam sample_images/synthetic_cross.png --model demo-unet --target segment:cross -o out/ --json",
    ],
    "cam": [
        "gradcam cam sample_images/synthetic_circle.png --model demo-gap -o out/",
        "gradcam cam sample_images/synthetic_sphere.nii.gz --model demo-volume -o out/",
    ],
    "guided": [
        "gradcam guided sample_images/synthetic_triangle.png --model demo-vgg -o out/",
        "gradcam guided sample_images/synthetic_square.png --model demo-vgg --mode deconvnet --save gradcam -o out/",
    ],
    "dilated": [
        "gradcam dilated sample_images/synthetic_square.png --model demo-vgg -o out/",
        "gradcam dilated sample_images/synthetic_cross.png --model demo-vgg --mode no-pooling -o out/",
    ],
    "compare": [
        "gradcam compare sample_images/synthetic_square.png --model demo-gap --methods gradcam,cam -o out/",
        "gradcam compare sample_images/synthetic_circle.png --models demo-vgg,demo-gap --methods gradcam -o out/",
    ],
    "eval": [
        "gradcam eval --model demo-gap --methods gradcam,cam --count 8 --pairs 4",
        "gradcam eval sample_images/synthetic_square.png sample_images/synthetic_circle.png --model demo-vgg "
        "--measures deletion --steps 4 -o out/",
    ],
    "concepts": [
        "gradcam concepts sample_images/synthetic_square.png sample_images/synthetic_circle.png --model demo-gap "
        "-k 2 -o out/",
    ],
    "report": [
        "gradcam gradcam sample_images/synthetic_square.png sample_images/synthetic_cross.png --model demo-gap "
        "-o out/ --json > out/results.jsonl",
        "gradcam report out/results.jsonl -o out/report/",
    ],
    "layers": [
        "gradcam layers --model demo-vgg",
        "gradcam layers --model demo-unet --all",
    ],
    "models": [
        "gradcam models",
    ],
    "serve": [
        "gradcam serve --preload demo-vgg --idle-timeout 0.05",
        "gradcam --server sample_images/cat.png --model demo-vgg -o out/",
    ],
    "methods": [
        "gradcam methods",
        "gradcam methods gradcam++",
    ],
}


def epilog(command):
    """The examples of `command` as its help's last lines (\\b keeps Click from rewrapping them)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[command])


def demo_models():
    """The shipped demo models (registry entries with a file), in the registry's order."""
    return [spec for spec in registry.MODELS.values() if not spec.is_application]


def classes_line(names, most=32):
    """Class names as one line: all of them up to `most`, else the count with the first and last."""
    names = [str(name) for name in names]
    if len(names) <= most:
        return ", ".join(names)
    return f"{len(names)} classes: {', '.join(names[:3])}, ... {names[-1]}"


def models_help():
    """`gradcam models`'s help, its demo models and their classes taken from the registry."""
    demos = "\n".join(f"  {spec.name:<18} {classes_line(spec.labels)}" for spec in demo_models())
    return ("List the known models: input size, channels, default target layer, whether CAM applies (global "
            "average pooling + one linear classifier), preprocessing and head; then the demo models' classes. "
            "keras.applications models are downloaded once with their ImageNet weights; the demo models are "
            "shipped in the package (trained on synthetic shapes, scans and clips: gradcam_cli.evaluate) and "
            "need no download.\n\n\b\nThe demo models and their classes:\n" + demos)


def versions():
    """`gradcam --version`'s lines: the tool, Keras, and Keras's backend with its version. Read
    from the installed distributions' metadata and Keras's own rule for its backend (the
    KERAS_BACKEND variable, else "backend" in $KERAS_HOME/keras.json or ~/.keras/keras.json,
    else tensorflow): nothing is imported, so it answers at once."""
    from gradcam_cli import __version__

    backend = keras_backend()
    return "\n".join([f"gradcam, version {__version__}", f"keras {_distribution('keras')}",
                      f"backend {backend} {_backend_version(backend)}"])


def keras_backend():
    """The backend Keras will pick, by Keras 3's rule (keras/src/backend/config.py), without importing it."""
    import json
    import os
    from pathlib import Path

    chosen = os.environ.get("KERAS_BACKEND")
    if chosen:
        return chosen
    home = os.environ.get("KERAS_HOME") or str(Path("~").expanduser() / ".keras")
    try:
        config = json.loads((Path(home) / "keras.json").read_text())
    except (OSError, ValueError):
        return "tensorflow"
    backend = config.get("backend") if isinstance(config, dict) else None
    return backend if isinstance(backend, str) and backend else "tensorflow"


# The distributions that may provide each backend, in the order they are looked for.
_BACKEND_DISTRIBUTIONS = {"tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly"),
                          "jax": ("jax",), "torch": ("torch",), "numpy": ("numpy",), "openvino": ("openvino",)}


def _backend_version(backend):
    for name in _BACKEND_DISTRIBUTIONS.get(backend, (backend,)):
        found = _distribution(name)
        if found != "not installed":
            return found
    return "not installed"


def _distribution(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
