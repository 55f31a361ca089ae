"""The command line as users run it: the installed `gradcam` script in a subprocess (and Click's
CliRunner in-process), on real files; outputs opened and checked."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import gap_model, invoke_cli, python_cli, run_cli, write_image
from PIL import Image

from gradcam_cli.cli import main
from gradcam_cli.files import render
from gradcam_cli.models import registry

NOISE = ("Traceback", "cudart", "I0000", "oneDNN", "cpu_feature_guard", "absl::")


def assert_clean(stderr):
    """No traceback and none of TensorFlow's C++ start-up lines: only a subprocess shows those."""
    for marker in NOISE:
        assert marker not in stderr, stderr


def test_help_and_models_do_not_import_tensorflow():
    result = python_cli(
        "import sys",
        "from gradcam_cli.cli import main",
        "for args in (['--help'], ['models'], ['methods'], ['gradcam', '--help'], ['layers', '--help'], ['cam', '--help'],",
        "             ['guided', '--help'], ['eval', '--help'], ['dilated', '--help'], ['compare', '--help']):",
        "    try:",
        "        main(args, standalone_mode=False)",
        "    except SystemExit:",
        "        pass",
        "heavy = [m for m in ('tensorflow', 'keras', 'cv2', 'matplotlib') if m in sys.modules]",
        "print('HEAVY', heavy)",
    )
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("args", [["--help"], ["gradcam", "--help"], ["models", "--help"],
                                  ["layers", "--help"], ["cam", "--help"], ["guided", "--help"],
                                  ["eval", "--help"], ["dilated", "--help"], ["compare", "--help"],
                                  ["methods", "--help"], ["--version"]])
def test_installed_script_help(args):
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert ("Usage: gradcam" in result.stdout) or ("gradcam, version" in result.stdout)


def test_gradcam_help_explains_the_options():
    text = invoke_cli("gradcam", "--help").stdout
    for option in ("--model", "--weights", "--layer", "--class", "--top-k", "--output-dir", "--save",
                   "--colormap", "--alpha", "--batch-size", "--device", "--json", "--quiet",
                   "--verbose", "--pool", "--crop", "--preprocess", "--input-size", "--labels",
                   "--trust-model"):
        assert option in text


def test_methods_lists_every_registered_method():
    from gradcam_cli.explain.methods import METHODS

    result = invoke_cli("methods")
    assert result.returncode == 0
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert list(rows) == list(METHODS)
    for name, method in METHODS.items():
        assert ",".join(method.needs) in rows[name] and method.paper in rows[name]


def test_models_lists_every_registry_model():
    result = invoke_cli("models")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    for spec in registry.MODELS.values():
        assert any(line.split()[0] == spec.name for line in lines[1:]), spec.name
    vgg = next(line for line in lines if line.startswith("vgg16 "))
    assert "224x224" in vgg and "block5_conv3" in vgg and " no " in vgg
    resnet = next(line for line in lines if line.startswith("resnet50 "))
    assert "conv5_block3_out" in resnet and " yes " in resnet


def test_folder_with_bad_files_is_processed_and_reported(tmp_path, saved_models):
    folder = tmp_path / "photos"
    write_image(folder / "good1.png", (64, 48), seed=1)
    write_image(folder / "nested" / "good2.jpg", (30, 70), seed=2)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (folder / "empty.png").write_bytes(b"")
    (folder / "readme.txt").write_text("not an image")
    out = tmp_path / "out"
    result = run_cli(folder, "--model", saved_models["gap"], "-o", out, "--json")
    assert result.returncode == 1, result.stderr
    assert_clean(result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert any("corrupt.jpg" in e for e in errors) and any("empty.png" in e for e in errors)
    assert "skipped 1 file(s) that are not images" in result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    done = {r["input"]: r for r in records if "error" not in r}
    assert len(done) == 2 and sum("error" in r for r in records) == 2
    for name, size in (("good1.png", (64, 48)), ("nested/good2.jpg", (30, 70))):
        record = done[str(folder / name)]
        assert record["image_size"] == list(size) and record["layer"] == "conv2"
        assert len(record["predictions"]) == 3
        assert abs(sum(p["probability"] for p in record["predictions"]) - 1) < 1e-4
        entry = record["maps"][0]
        assert entry["class"] == record["predictions"][0]["class"]
        for kind in ("heatmap", "overlay"):
            path = out / f"{name}.gradcam.{kind}.png"
            assert entry["outputs"][kind] == str(path)
            with Image.open(path) as image:
                assert image.size == size and image.mode == "RGB"
    assert not list(out.rglob("*.part"))


def test_exit_zero_paths_on_stdout_and_raw_map_consistent_with_heatmap(tmp_path, saved_models):
    image = write_image(tmp_path / "pic.png", (50, 40), seed=3)
    out = tmp_path / "o"
    result = invoke_cli(image, "--model", saved_models["gap"], "-o", out, "--save", "heatmap,raw,overlay")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "%|" not in result.stderr  # no progress bar when stderr is not a terminal
    written = result.stdout.split()
    assert sorted(written) == sorted(str(out / f"pic.png.gradcam.{k}") for k in
                                     ("heatmap.png", "overlay.png", "raw.npy"))
    raw = np.load(out / "pic.png.gradcam.raw.npy")
    assert raw.shape == (40, 50) and raw.dtype == np.float32 and raw.min() >= 0 and raw.max() > 0
    expected = render.colorize(raw / raw.max(), "jet")
    heatmap = np.asarray(Image.open(out / "pic.png.gradcam.heatmap.png"))
    np.testing.assert_array_equal(heatmap, expected)
    original = np.asarray(Image.open(image).convert("RGB")).astype(np.float32)
    overlay = np.asarray(Image.open(out / "pic.png.gradcam.overlay.png")).astype(np.float32)
    np.testing.assert_allclose(overlay, 0.6 * original + 0.4 * expected, atol=0.51)


def test_bare_form_equals_gradcam_subcommand_and_stdin(tmp_path, saved_models):
    image = write_image(tmp_path / "x.png", (33, 44), seed=4)
    a = invoke_cli(image, "--model", saved_models["gap"], "-o", tmp_path / "a", "--save", "raw")
    b = invoke_cli("gradcam", "--model", saved_models["gap"], image, "-o", tmp_path / "b", "--save", "raw")
    c = invoke_cli("-", "--model", saved_models["gap"], "-o", tmp_path / "c", "--save", "raw", stdin=f"{image}\n")
    for result in (a, b, c):
        assert result.returncode == 0, result.stderr
    maps = [np.load(tmp_path / d / "x.png.gradcam.raw.npy") for d in "abc"]
    np.testing.assert_array_equal(maps[0], maps[1])
    np.testing.assert_array_equal(maps[0], maps[2])


def test_top_k_and_class_names(tmp_path, saved_models):
    image = write_image(tmp_path / "y.png", (32, 32), seed=5)
    labels = tmp_path / "labels.txt"
    labels.write_text("apple\nbanana\ncherry\n")
    result = invoke_cli(image, "--model", saved_models["gap"], "--labels", labels, "--top-k", "3",
                     "-o", tmp_path / "o", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert [m["class"] for m in record["maps"]] == [p["class"] for p in record["predictions"]]
    assert {m["label"] for m in record["maps"]} == {"apple", "banana", "cherry"}
    for rank in (1, 2, 3):
        assert (tmp_path / "o" / f"y.png.gradcam.top{rank}.overlay.png").is_file()
    named = invoke_cli(image, "--model", saved_models["gap"], "--labels", labels, "-c", "banana",
                    "-o", tmp_path / "n", "--json")
    assert json.loads(named.stdout)["maps"][0]["class"] == 1
    assert (tmp_path / "n" / "y.png.gradcam.class1.overlay.png").is_file()  # an explicit class is named


def test_nested_keras_and_legacy_h5_models(tmp_path, saved_models):
    image = write_image(tmp_path / "z.png", (40, 40), seed=6)
    for key in ("nested", "nested_h5"):
        result = invoke_cli(image, "--model", saved_models[key], "-o", tmp_path / key, "--json")
        assert result.returncode == 0, result.stderr
        record = json.loads(result.stdout)
        assert record["layer"] == "base/b_out"
        assert not record["maps"][0]["stats"]["empty"]
    layers = invoke_cli("layers", "--model", saved_models["nested"])
    assert layers.returncode == 0
    assert any(line.startswith("* base/b_out") for line in layers.stdout.splitlines())
    assert "base/b_conv2" in layers.stdout and "gap" not in layers.stdout


@pytest.mark.parametrize("extra,message", [
    (["--model", "alexnet"], "unknown model 'alexnet'"),
    (["--layer", "block9"], "no layer 'block9' in gap.keras; layers a map can target: conv1, pool1, conv2"),
    (["--layer", "pred"], "needs a (height, width, channels) layer"),
    (["--class", "7"], "class 7 is out of range: the model has 3 classes"),
    (["--class", "boxer"], "the model has no class names"),
    (["--top-k", "4"], "--top-k 4: gap.keras has 3 classes"),
    (["--weights", "WEIGHTS"], "cannot load weights file"),
    (["--save", "heatmap,pdf"], "--save heatmap,pdf: choose from heatmap, overlay, raw, comma-separated"),
    (["--colormap", "nope"], "Invalid value for '--colormap'"),
])
def test_usage_errors_exit_2_in_one_line(tmp_path, saved_models, extra, message):
    image = write_image(tmp_path / "u.png", seed=7)
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"junk")
    extra = [str(junk) if e == "WEIGHTS" else e for e in extra]
    args = [image, "--model", saved_models["gap"], "-o", tmp_path / "o", *extra]
    result = invoke_cli(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_missing_input_and_no_images(tmp_path, saved_models):
    result = invoke_cli(tmp_path / "absent.png", "--model", saved_models["gap"], "-o", tmp_path / "o")
    assert result.returncode == 1 and "absent.png: no such file or folder" in result.stderr
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    result = invoke_cli(tmp_path / "docs", "--model", saved_models["gap"])
    assert result.returncode == 2 and "no images found" in result.stderr


def test_offline_imagenet_names_the_weights_file(tmp_path):
    image = write_image(tmp_path / "v.png", seed=8)
    result = invoke_cli(image, "--model", "VGG16", "-o", tmp_path / "o", "--json",
                     env={"KERAS_HOME": str(tmp_path / "kh")})
    assert result.returncode == 2 and result.stdout == ""  # Keras's download notice goes to stderr
    assert "vgg16_weights_tf_dim_ordering_tf_kernels.h5" in result.stderr
    assert str(tmp_path / "kh" / "models") in result.stderr and "--weights" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: cannot download ImageNet weights")
    assert "Traceback" not in result.stderr


def test_vgg16_random_weights_block5_conv3(tmp_path):
    """The README's command shape on the real architecture, offline (--weights none)."""
    image = write_image(tmp_path / "w.jpg", (120, 90), seed=9)
    result = invoke_cli(image, "--model", "vgg16", "--layer", "block5_conv3", "--weights", "none",
                     "-o", tmp_path / "o", "--json", "--crop")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["layer"] == "block5_conv3" and record["maps"][0]["stats"]["resolution"] == [14, 14]
    assert len(record["predictions"]) == 5 and all(p["label"] for p in record["predictions"])
    assert "random weights" in result.stderr
    with Image.open(tmp_path / "o" / "w.jpg.gradcam.overlay.png") as overlay:
        assert overlay.size == (120, 90)


def test_empty_map_is_flagged_and_rendered_without_heat(tmp_path, keras):
    model = gap_model(keras, activation=None)
    kernel, bias = model.get_layer("pred").get_weights()
    model.get_layer("pred").set_weights([-np.abs(kernel), bias])
    model.save(tmp_path / "neg.keras")
    image = write_image(tmp_path / "e.png", (20, 20), seed=10)
    result = invoke_cli(image, "--model", tmp_path / "neg.keras", "--class", "0", "-o", tmp_path / "o",
                     "--json", "--save", "heatmap,raw")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["maps"][0]["stats"]["empty"] is True and record["maps"][0]["stats"]["peak"] is None
    assert "is zero everywhere" in result.stderr
    assert "1 image(s) explained, 0 failed, 1 map(s) zero everywhere" in result.stderr
    assert np.load(tmp_path / "o" / "e.png.gradcam.class0.raw.npy").max() == 0
    heatmap = np.asarray(Image.open(tmp_path / "o" / "e.png.gradcam.class0.heatmap.png"))
    assert (heatmap == render.colorize(np.zeros((1, 1), np.float32))[0, 0]).all()


def test_cli_runner_in_process(tmp_path, saved_models):
    image = write_image(tmp_path / "r.png", (16, 24), seed=11)
    runner = CliRunner()
    result = runner.invoke(main, [str(image), "--model", str(saved_models["gap"]), "-o",
                                  str(tmp_path / "o"), "--json", "-q"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["image_size"] == [16, 24]
    bad = runner.invoke(main, [str(image), "--model", str(saved_models["gap"]), "--class", "x", "--top-k", "2"])
    assert bad.exit_code == 2 and "give --class or --top-k, not both" in bad.output


def test_weights_path_and_imagenet_class_name_on_a_registry_model(tmp_path, keras):
    """--weights PATH loads a weights file into a named model; --class boxer uses the shipped
    ImageNet names (offline)."""
    from gradcam_cli.files.images import load_rgb, model_view
    from gradcam_cli.models import loading
    from gradcam_cli.models.preprocess import preprocess

    model = loading.build_application(registry.find("mobilenetv3small"), "none")
    rng = np.random.default_rng(12)
    model.set_weights([w + rng.normal(0, 0.02, w.shape).astype("float32") for w in model.get_weights()])
    model.save_weights(tmp_path / "mine.weights.h5")
    image = write_image(tmp_path / "p.png", (64, 80), seed=12)
    result = invoke_cli(image, "--model", "MobileNetV3Small", "--weights", tmp_path / "mine.weights.h5",
                     "--class", "boxer", "-o", tmp_path / "o", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["maps"][0]["class"] == 242 and record["maps"][0]["label"] == "boxer"
    view, _ = model_view(load_rgb(image), (224, 224))
    logits = model.predict(preprocess(view[None], "none"), verbose=0)[0]
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    top = record["predictions"][0]
    assert top["class"] == int(np.argmax(logits))
    assert abs(top["probability"] - probabilities[top["class"]]) < 1e-4
    assert abs(record["maps"][0]["score"] - logits[242]) < 1e-3 * max(1.0, abs(logits[242]))


def test_python_dash_m_and_device_gpu_without_gpu(tmp_path, saved_models):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "gradcam_cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and "version" in result.stdout
    image = write_image(tmp_path / "g.png", seed=13)
    gpu = run_cli(image, "--model", saved_models["gap"], "--device", "gpu", "-o", tmp_path / "o",
                  env={"CUDA_VISIBLE_DEVICES": "-1"})
    assert gpu.returncode == 2 and "no GPU is visible" in gpu.stderr
    assert_clean(gpu.stderr)


def test_unwritable_output_fails_that_image_and_the_rest_go_on(tmp_path, saved_models):
    write_image(tmp_path / "in" / "sub" / "a.png", seed=14)
    write_image(tmp_path / "in" / "b.png", seed=15)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub").write_text("a file where the mirrored folder should be")
    result = invoke_cli(tmp_path / "in", "--model", saved_models["gap"], "-o", tmp_path / "out")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "sub/a.png: cannot write outputs" in errors[0]
    assert (tmp_path / "out" / "b.png.gradcam.overlay.png").is_file()
    assert "Traceback" not in result.stderr
