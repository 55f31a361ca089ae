"""--help a person can use: options under headings (cloup), --method near the top, the methods'
own settings under "Method settings", --version, shell completion, and the new-user trial's
findings (demo-unet's classes, every demo model named, `layers` aligned, how a similar:IMAGE
reference is resized)."""

import importlib.metadata
import re

import numpy as np
import pytest
from conftest import invoke_cli, python_cli, run_cli

from gradcam_cli import __version__
from gradcam_cli.cli import main
from gradcam_cli.cli.helptext import HEADINGS, SETTINGS
from gradcam_cli.explain.methods import METHODS
from gradcam_cli.models import registry

COMMANDS_WITH_OPTIONS = ("gradcam", "cam", "guided", "dilated", "compare", "eval", "concepts", "report", "layers")


def sections(text):
    """{heading: [its lines]} of a --help text (a heading: a line without indent ending with ':')."""
    found, current = {}, None
    for line in text.splitlines():
        if re.fullmatch(r"[A-Z][A-Za-z ]+:", line):
            current = line[:-1]
            found[current] = []
        elif current is not None:
            found[current].append(line)
    return found


def flags_in(lines):
    """The long flags that start the option entries among `lines`."""
    return {match.group(1) for line in lines if (match := re.match(r"\s{2}(?:-\w, )?(--[\w-]+)", line))}


@pytest.mark.parametrize("command", COMMANDS_WITH_OPTIONS)
def test_every_option_is_under_a_heading(command):
    text = invoke_cli(command, "--help").stdout
    found = sections(text)
    headings = [h for h in found if h not in ("Other options", "Examples")]
    assert headings == [h for h in HEADINGS if h in headings]  # the one order of every command
    assert flags_in(found["Other options"]) == {"--help"}  # nothing left ungrouped
    grouped = set().union(*(flags_in(found[h]) for h in headings))
    declared = {opt for p in main.commands[command].params if p.param_type_name == "option"
                for opt in p.opts if opt.startswith("--") and opt != "--help"}
    assert grouped == declared


def test_method_is_near_the_top_of_gradcam_help():
    lines = invoke_cli("gradcam", "--help").stdout.splitlines()
    where = next(i for i, line in enumerate(lines) if line.lstrip().startswith("--method "))
    assert where < 45, where
    assert lines.index("What to explain:") < where < lines.index("Method settings:")


@pytest.mark.parametrize("command,methods", [("gradcam", None), ("dilated", None), ("guided", ("guided",)),
                                             ("eval", None)])
def test_method_options_are_under_method_settings(command, methods):
    found = sections(invoke_cli(command, "--help").stdout)
    settings = flags_in(found[SETTINGS])
    own = {option.spelled for name in (methods or METHODS) for option in METHODS[name].options}
    shown = {flag for heading in found for flag in flags_in(found[heading])}
    assert own & shown and own & shown <= settings | {"--steps"}  # eval's --steps is its deletion's
    assert "--compat" in settings


def test_version_names_the_tool_keras_and_the_backend():
    lines = invoke_cli("--version").stdout.splitlines()
    assert lines[0] == f"gradcam, version {__version__}"
    assert lines[1] == f"keras {importlib.metadata.version('keras')}"
    assert lines[2] == f"backend tensorflow {importlib.metadata.version('tensorflow')}"
    on_jax = run_cli("--version", env={"KERAS_BACKEND": "jax"})
    assert on_jax.returncode == 0 and on_jax.stdout.splitlines()[2] == f"backend jax {importlib.metadata.version('jax')}"


def test_version_and_help_import_no_tensorflow():
    result = python_cli(
        "import sys",
        "from gradcam_cli.cli import main",
        "for args in (['--version'], ['--help'], ['concepts', '--help'], ['report', '--help'], ['models', '--help'],",
        "             ['methods', '--help'], ['gradcam', '--help'], ['eval', '--help']):",
        "    try:",
        "        main(args, standalone_mode=False)",
        "    except SystemExit:",
        "        pass",
        "print('HEAVY', [m for m in ('tensorflow', 'keras', 'jax', 'cv2') if m in sys.modules])",
    )
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
    assert "backend tensorflow" in result.stdout


def test_bash_completion_source_and_candidates():
    """Click's completion for the `gradcam` entry point: the script bash sources, then what it
    asks for while a word is typed (the commands, then an option's choices)."""
    source = run_cli(env={"_GRADCAM_COMPLETE": "bash_source"})
    assert source.returncode == 0, source.stderr
    assert "_gradcam_completion()" in source.stdout and "complete -o nosort -F _gradcam_completion gradcam" in \
        source.stdout
    commands = run_cli(env={"_GRADCAM_COMPLETE": "bash_complete", "COMP_WORDS": "gradcam co", "COMP_CWORD": "1"})
    assert commands.stdout.split() == ["plain,compare", "plain,concepts"]
    choices = run_cli(env={"_GRADCAM_COMPLETE": "bash_complete", "COMP_WORDS": "gradcam gradcam --method gradcam",
                           "COMP_CWORD": "3"})
    assert {"plain,gradcam", "plain,gradcam++", "plain,gradcam-elementwise"} <= set(choices.stdout.split())


def test_models_help_and_listing_name_every_demo_model_and_its_classes():
    demos = [spec for spec in registry.MODELS.values() if spec.file is not None]
    assert {spec.name for spec in demos} >= {"demo-vgg", "demo-gap", "demo-vit", "demo-unet", "demo-volume",
                                             "demo-clip", "demo-clip-frames"}
    helped = invoke_cli("models", "--help").stdout
    listed = invoke_cli("models").stdout
    for spec in demos:
        line = f"{spec.name} ".ljust(19) + ", ".join(spec.labels)
        assert line in helped, spec.name
        assert f"# {spec.name}".ljust(len("# demo-clip-frames") + 2) + ", ".join(spec.labels) in listed, spec.name
    assert "demo-unet          background, circle, square, triangle, cross" in helped


def test_layers_lists_the_class_names(keras):
    lines = invoke_cli("layers", "--model", "demo-unet").stdout.splitlines()
    assert lines[1] == "# classes: background, circle, square, triangle, cross"
    gap = invoke_cli("layers", "--model", "demo-gap").stdout.splitlines()
    assert gap[1] == "# classes: circle, square, triangle, cross"


def test_layers_aligns_long_layer_names(keras, tmp_path):
    long_name = "a_rather_long_convolution_name_from_an_exported_graph_block7"
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", name=long_name)(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="pred")(x)
    path = tmp_path / "long.keras"
    keras.Model(inputs, outputs).save(path)
    result = invoke_cli("layers", "--model", path, "--all")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert any(long_name in row for row in rows)
    for column in ("Conv2D", "16x16x4"):  # each column starts at one offset in every row that has it
        starts = {row.index(column) for row in rows if column in row}
        assert len(starts) == 1, (column, rows)
    kinds = {re.split(r"\s+", row[2:].strip())[1] for row in rows}
    assert {"Conv2D", "GlobalAveragePooling2D", "Dense"} <= kinds


def test_target_help_says_how_a_reference_image_is_resized():
    text = " ".join(invoke_cli("gradcam", "--help").stdout.split())
    assert ("A similar:IMAGE reference is read and resized exactly as each input image is (EXIF orientation "
            "applied; the whole image resized to the model's input by OpenCV, area averaging when shrinking and "
            "bilinear when enlarging") in text


def test_a_reference_image_is_resized_as_the_help_says():
    """What the help states, checked on the code that embeds a reference (api.Explainer._bound:
    files.images.prepare -> model_view): OpenCV's area averaging when shrinking, its bilinear
    resize when enlarging; Pillow's resize of the same image differs."""
    import cv2
    from PIL import Image

    from gradcam_cli.files.images import load_rgb, model_view

    rgb = load_rgb("sample_images/cat.png")
    view, box = model_view(rgb, (64, 64))
    assert box == (0, 0, rgb.shape[1], rgb.shape[0])
    np.testing.assert_array_equal(view, cv2.resize(rgb, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32))
    small = rgb[:20, :30]
    enlarged, _ = model_view(small, (64, 64))
    np.testing.assert_array_equal(enlarged, cv2.resize(small, (64, 64), interpolation=cv2.INTER_LINEAR))
    pillow = np.asarray(Image.fromarray(rgb).resize((64, 64)), dtype=np.float32)
    assert np.abs(pillow - view).max() > 1
