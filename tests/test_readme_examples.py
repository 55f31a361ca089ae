"""The "Your own models" examples (docs/models.md), run as written: the model files from
scripts/make_example_models.py, then every `gradcam` command of the code block after
`<!-- own-models-examples -->`, with `my_models/` and `out/` moved into tmp_path; outputs opened
and checked."""

import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import FLOAT32_ABS, FLOAT32_REL, OFFLINE_ENV, run_cli
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- own-models-examples -->"
PAGE = REPO / "docs" / "models.md"  # the page holding MARKER and its block
WITHOUT_IMPORT = "custom.keras without --import"


def readme_example_lines():
    """The lines of the indented code block that follows MARKER, indentation removed."""
    lines = PAGE.read_text().splitlines()
    start = lines.index(MARKER) + 1
    while not lines[start].strip():
        start += 1
    block = []
    for line in lines[start:]:
        if line.strip() and not line.startswith("    "):
            break
        block.append(line[4:])
    return [line for line in block if line.strip()]


def gradcam_commands(models_dir, out_dir):
    """Each `gradcam ...` line as an argument list (its trailing # comment dropped), with the
    page's my_models/ and out/ folders replaced by `models_dir` and `out_dir`."""
    folders = {"my_models/": models_dir, "out/": out_dir}
    commands = []
    for line in readme_example_lines():
        words = shlex.split(line, comments=True)
        if words[0] != "gradcam":
            continue
        for i, word in enumerate(words):
            for prefix, folder in folders.items():
                if word.startswith(prefix):
                    words[i] = str(folder / word[len(prefix):])
        commands.append(words)
    return commands


@pytest.fixture(scope="module")
def readme_runs(tmp_path_factory):
    """{page command line: CompletedProcess}, and the out folder they wrote into. The key
    WITHOUT_IMPORT holds `gradcam layers` on custom.keras without --import, which must fail."""
    root = tmp_path_factory.mktemp("readme")
    models_dir, out_dir = root / "my_models", root / "out"
    made = subprocess.run([sys.executable, "scripts/make_example_models.py", str(models_dir)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, **OFFLINE_ENV))
    assert made.returncode == 0, made.stderr
    assert sorted(Path(p).name for p in made.stdout.split()) == sorted(
        ["gray.keras", "custom.keras", "two_outputs.keras", "augmented.keras", "binary.keras",
         "free_size.keras", "labels.txt"])
    commands = {" ".join(words): words for words in gradcam_commands(models_dir, out_dir)}
    commands[WITHOUT_IMPORT] = ["gradcam", "layers", "--model", str(models_dir / "custom.keras")]
    # Each run spends most of its time importing TensorFlow: two at a time halves the wall time on 2 cores
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = pool.map(lambda words: run_cli(*words[1:], cwd=REPO), commands.values())
        runs = dict(zip(commands, results))
    return runs, out_dir


def find_run(runs, *needles):
    """The result of the one line of the block containing every needle."""
    matches = [result for line, result in runs.items()
               if line != WITHOUT_IMPORT and all(n in line for n in needles)]
    assert len(matches) == 1, (needles, list(runs))
    return matches[0]


def assert_same_map(actual, expected):
    """Two commands' raw maps, each run in its own process: equal to float32 precision (threaded
    float32 sums are not bit-reproducible across processes)."""
    np.testing.assert_allclose(actual, expected, rtol=FLOAT32_REL, atol=FLOAT32_ABS * np.abs(expected).max())


def image_size(name):
    with Image.open(REPO / "sample_images" / name) as image:
        return image.size


def test_block_covers_every_option_of_the_section():
    text = "\n".join(readme_example_lines())
    assert readme_example_lines()[0] == "python scripts/make_example_models.py my_models/"
    for option in ("--preprocess", "--input-size", "--labels", "--import", "--output", "--class", "gradcam cam",
                   "gray.keras", "custom.keras", "two_outputs.keras", "augmented.keras", "binary.keras"):
        assert option in text, option


def test_every_readme_command_exits_zero(readme_runs):
    runs, _ = readme_runs
    readme_lines = {line: result for line, result in runs.items() if line != WITHOUT_IMPORT}
    assert len(readme_lines) >= 10
    for line, result in readme_lines.items():
        assert result.returncode == 0, f"{line}\n{result.stderr}"
        assert "Traceback" not in result.stderr, line


def test_one_channel_model_gets_luminance(readme_runs):
    runs, out = readme_runs
    layers = find_run(runs, "layers", "gray.keras")
    assert layers.stdout.splitlines()[0].startswith("# input 64x64x1 (luminance), preprocess none")
    record = json.loads(find_run(runs, "camera_gray.png", "gray.keras").stdout)
    assert record["channels"] == "luminance" and record["image_size"] == [512, 512]
    assert not record["maps"][0]["stats"]["empty"]
    for name in ("camera_gray.png", "cat.png"):  # a colour image too, converted
        with Image.open(out / f"{name}.gradcam.overlay.png") as overlay:
            assert overlay.size == image_size(name) and overlay.mode == "RGB"


def test_custom_layer_loads_with_import(readme_runs):
    runs, out = readme_runs
    written = find_run(runs, "custom.keras", "--import").stdout.split()
    assert str(out / "synthetic_circle.png.gradcam.overlay.png") in written
    with Image.open(out / "synthetic_circle.png.gradcam.overlay.png") as overlay:
        assert overlay.size == image_size("synthetic_circle.png")


def test_custom_layer_without_import_is_refused_in_one_line(readme_runs):
    runs, _ = readme_runs
    result = runs[WITHOUT_IMPORT]
    assert result.returncode == 2
    assert "it uses class 'ScaledReLU'" in result.stderr and "(--import MODULE|FILE.py)" in result.stderr
    assert "Traceback" not in result.stderr


def test_output_by_name_and_by_index_give_the_same_map(readme_runs):
    runs, out = readme_runs
    assert "output classes, 4 classes" in find_run(runs, "layers", "two_outputs.keras").stdout
    by_name = np.load(out / "synthetic_cross.png.gradcam.raw.npy")
    by_index = np.load(out / "by_index" / "synthetic_cross.png.gradcam.raw.npy")
    assert by_name.shape == (192, 192) and by_name.max() > 0
    assert_same_map(by_index, by_name)


def test_augmentation_layers_give_the_same_map_every_run(readme_runs):
    _, out = readme_runs
    first = np.load(out / "run1" / "synthetic_triangle.png.gradcam.raw.npy")
    second = np.load(out / "run2" / "synthetic_triangle.png.gradcam.raw.npy")
    assert first.shape == (192, 192) and first.max() > 0
    assert_same_map(second, first)  # an augmentation left on would move the map far beyond float32's last bits


def test_binary_model_class_zero_with_gradcam_and_cam(readme_runs):
    _, out = readme_runs
    for method in ("gradcam", "cam"):  # an explicit --class is in the name
        with Image.open(out / f"synthetic_square.png.{method}.class0.overlay.png") as overlay:
            assert overlay.size == (192, 192)
    assert not (out / "synthetic_square.png.gradcam.overlay.png").exists()


def test_free_size_model_at_the_given_input_size(readme_runs):
    runs, out = readme_runs
    layers = find_run(runs, "layers", "free_size.keras").stdout.splitlines()
    assert layers[0].startswith("# input 96x128x3 (rgb)")
    assert any(line.startswith("* conv2") and line.endswith("48x64x16") for line in layers)
    with Image.open(out / "rocket.jpg.gradcam.overlay.png") as overlay:
        assert overlay.size == image_size("rocket.jpg")


def test_labels_name_the_class(readme_runs):
    runs, out = readme_runs
    record = json.loads(find_run(runs, "--labels").stdout)
    entry = record["maps"][0]
    assert entry["class"] == 1 and entry["label"] == "banana"
    assert {p["label"] for p in record["predictions"]} == {"apple", "banana", "cherry"}
    assert entry["outputs"]["overlay"] == str(out / "synthetic_two_circle_triangle.png.gradcam.class1.overlay.png")
    with Image.open(entry["outputs"]["overlay"]) as overlay:
        assert overlay.size == image_size("synthetic_two_circle_triangle.png")
