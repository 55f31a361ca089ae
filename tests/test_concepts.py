"""Deep Feature Factorization (`gradcam concepts`, explain/concepts.py, files/concepts.py): the
concepts and heatmaps against sklearn's NMF run by hand on activations computed by hand, the
concepts' classes against the head by hand, the sample's non-negative least squares against
scipy's, the command's files and records, and the report's section."""

import json
import warnings
from dataclasses import replace

import numpy as np
import pytest
from conftest import invoke_cli, python_cli, run_cli, set_fixed_weights, write_image
from PIL import Image

CLASSES = ("ring", "bar", "dot")


def dff_model(keras, activation="relu", seed=3):
    """8x8x3 -> Conv2D(4, 1) 'feat' -> GlobalAveragePooling2D -> Dense(3, softmax)."""
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 1, activation=activation, name="feat")(inputs)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(3, activation="softmax", name="pred")(x)
    return set_fixed_weights(keras.Model(inputs, outputs, name="dff"), seed, scale=0.05)


def skip_model(keras, seed=4):
    """As dff_model, but the head also reads the input's pooled colour: the layers above 'feat'
    cannot run from its map alone."""
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 1, activation="relu", name="feat")(inputs)
    x = layers.Concatenate(name="both")([layers.GlobalAveragePooling2D(name="gap")(x),
                                         layers.GlobalAveragePooling2D(name="colour")(inputs)])
    outputs = layers.Dense(3, activation="softmax", name="pred")(x)
    return set_fixed_weights(keras.Model(inputs, outputs, name="skip"), seed, scale=0.05)


def images(count, seed=0):
    """8x8 RGB images the model sees unchanged (no resize, preprocessing none)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(count)]


def activations_by_hand(model, rgbs, activation="relu"):
    """The 1x1 convolution in numpy: (N, 8, 8, 4)."""
    kernel, bias = model.get_layer("feat").get_weights()
    out = np.stack(rgbs).astype(np.float64) @ kernel[0, 0].astype(np.float64) + bias
    return np.maximum(out, 0.0) if activation == "relu" else out


def nmf_by_hand(activations, k, seed=0):
    """sklearn's NMF with the settings of explain/concepts.py, on the shifted matrix."""
    from sklearn.decomposition import NMF

    matrix = activations.reshape(-1, activations.shape[-1])
    shift = np.minimum(matrix.min(axis=0), 0.0)
    nmf = NMF(n_components=k, init="random", random_state=seed, max_iter=500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 500 iterations may stop short: the library's run must too
        weights = nmf.fit_transform(matrix - shift)
    return nmf.components_ + shift, weights.reshape(activations.shape[:3] + (k,)), nmf.components_, shift


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture
def loaded(keras):
    from gradcam_cli import load_model

    return lambda model: load_model(model, preprocess="none")


def factorize(loaded_model, rgbs, **options):
    from gradcam_cli import Explainer
    from gradcam_cli.explain.concepts import factorize as run

    explainer = Explainer(loaded_model, "eigencam", layer=options.pop("layer", None),
                          batch_size=options.pop("batch_size", 3))
    return run(explainer, rgbs, **options)


@pytest.mark.parametrize("activation", ["relu", None])
def test_concepts_and_heatmaps_are_nmf_by_hand(keras, loaded, activation):
    model = dff_model(keras, activation)
    rgbs = images(5)
    result = factorize(loaded(model), rgbs, k=3, seed=7)
    by_hand = activations_by_hand(model, rgbs, activation)
    vectors, heatmaps, _, shift = nmf_by_hand(by_hand, 3, seed=7)
    if activation is None:  # a linear layer: negative channels are shifted, and the shift added back
        assert (shift < 0).any()
    else:
        assert not shift.any()
    scale = np.abs(vectors).max()
    np.testing.assert_allclose(result.concepts.vectors, vectors, rtol=1e-4, atol=1e-4 * scale)
    np.testing.assert_allclose(result.concepts.shift, shift, rtol=1e-5, atol=1e-4)
    assert result.concepts.fitted == [0, 1, 2, 3, 4] and not result.failed
    got = np.stack([image.heatmaps for image in result.images])
    assert got.shape == (5, 8, 8, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, heatmaps, rtol=1e-3, atol=1e-4 * heatmaps.max())
    assert [image.index for image in result.images] == list(range(5))
    assert all(image.fitted and image.box == (0, 0, 8, 8) and image.image_shape == (8, 8) for image in result.images)


def test_each_concept_is_named_by_the_head_on_its_vector(keras, loaded):
    model = dff_model(keras)
    result = factorize(replace(loaded(model), labels=CLASSES), images(4), k=3, top_classes=3)
    kernel, bias = model.get_layer("pred").get_weights()
    expected = softmax(result.concepts.vectors @ kernel.astype(np.float64) + bias)  # GAP of a constant map: the vector
    for c, classes in enumerate(result.concepts.top_classes):
        order = list(np.argsort(-expected[c], kind="stable"))
        assert [index for index, _, _ in classes] == order
        assert [label for _, label, _ in classes] == [CLASSES[i] for i in order]
        np.testing.assert_allclose([p for _, _, p in classes], expected[c][order], rtol=1e-5, atol=1e-6)
        assert result.concepts.names[c] == ", ".join(f"{CLASSES[i]} {expected[c][i]:.2f}" for i in order)
    assert result.concepts.classes_note is None


def test_top_classes_are_capped_and_named_so(keras, loaded):
    result = factorize(loaded(dff_model(keras)), images(3), k=2, top_classes=2)
    assert all(len(classes) == 2 for classes in result.concepts.top_classes)
    assert all(name.count(",") == 1 for name in result.concepts.names)
    result = factorize(loaded(dff_model(keras)), images(3), k=2, top_classes=9)
    assert all(len(classes) == 3 for classes in result.concepts.top_classes)


def test_without_an_upper_graph_the_concepts_are_numbered(keras, loaded):
    result = factorize(loaded(skip_model(keras)), images(3), k=2, layer="feat")
    assert result.concepts.names == ["concept 1", "concept 2"]
    assert result.concepts.top_classes == [[], []]
    note = result.concepts.classes_note
    assert note.startswith("no classes: the layers above feat cannot be run alone") and "\n" not in note


def test_max_images_fits_the_sample_and_solves_the_rest_by_nnls(keras, loaded):
    from scipy.optimize import nnls

    from gradcam_cli import Explainer
    from gradcam_cli.explain.concepts import factorize as run
    from gradcam_cli.explain.concepts import sample_indices

    model = dff_model(keras, activation=None)
    rgbs = images(7, seed=5)
    progress = []
    result = run(Explainer(loaded(model), "eigencam", batch_size=2), rgbs, k=2, max_images=3, progress=progress.append)
    assert sample_indices(7, 3) == [0, 2, 4]
    assert result.concepts.fitted == [0, 2, 4]
    assert sum(progress) == 3 + 7
    by_hand = activations_by_hand(model, rgbs, activation=None)
    vectors, heatmaps, components, shift = nmf_by_hand(by_hand[[0, 2, 4]], 2)
    np.testing.assert_allclose(result.concepts.vectors, vectors, rtol=1e-4, atol=1e-4 * np.abs(vectors).max())
    found = {image.index: image for image in result.images}
    for j, index in enumerate([0, 2, 4]):
        assert found[index].fitted
        np.testing.assert_allclose(found[index].heatmaps, heatmaps[j], rtol=1e-3, atol=1e-4 * heatmaps.max())
    for index in (1, 3, 5, 6):
        assert not found[index].fitted
        rows = np.maximum(by_hand[index].reshape(-1, 4) - shift, 0.0)
        solved = np.stack([nnls(components.T, row)[0] for row in rows]).reshape(8, 8, 2)
        np.testing.assert_allclose(found[index].heatmaps, solved, atol=1e-4 * max(1.0, solved.max()))


def test_unreadable_images_are_skipped_and_said(keras, loaded, tmp_path):
    rgbs = images(3)
    paths = []
    for i, rgb in enumerate(rgbs):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rgb).save(paths[-1])
    (tmp_path / "1.png").write_bytes(b"not an image")
    said = []
    result = factorize(loaded(dff_model(keras)), paths, k=2, on_failure=lambda i, reason: said.append((i, reason)))
    assert said == result.failed and [i for i, _ in said] == [1] and said[0][1].startswith("cannot decode")
    assert [image.index for image in result.images] == [0, 2] and result.concepts.fitted == [0, 2]


@pytest.mark.parametrize("options, message", [
    ({"k": 0}, "the number of concepts must be a whole number of at least 1. Received: k=0"),
    ({"k": 5}, "layer feat has 4 channel(s): it cannot hold more concepts than that. Received: k=5"),
    ({"k": 2, "max_images": 0}, "the number of images to fit on must be a whole number of at least 1. Received: "
                                "max_images=0"),
    ({"k": 2, "top_classes": 0}, "the number of classes to name a concept by must be a whole number of at least 1. "
                                 "Received: top_classes=0"),
    ({"k": 2, "layer": "gap"}, "gap"),
    ({"k": 2, "layer": "nope"}, "nope"),
])
def test_bad_arguments_are_refused(keras, loaded, options, message):
    from gradcam_cli.errors import GradcamError

    with pytest.raises(GradcamError) as caught:
        factorize(loaded(dff_model(keras)), images(2), **options)
    assert message in str(caught.value)


def test_fewer_positions_than_concepts_are_refused(keras, loaded):
    from gradcam_cli.explain.concepts import ConceptError

    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(3, 1, activation="relu", name="early")(inputs)
    x = layers.Conv2D(6, 8, activation="relu", name="whole")(x)  # one position an image
    outputs = layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    model = set_fixed_weights(keras.Model(inputs, outputs), 1, scale=0.05)
    with pytest.raises(ConceptError, match="the fitted images give 2 position"):
        factorize(loaded(model), images(2), k=3, layer="whole")


# --- the files ----------------------------------------------------------------------------------


def test_the_overlay_colours_each_pixel_by_its_strongest_concept():
    """Heatmaps 4 at (0, 0) for concept 0; 1 at (0, 1) and 2 at (1, 1) for concept 1, whose
    component is 3 times as long: weighed, 4 and 3, 6; over the image's largest (6), concept 0 is
    2/3 at its peak and concept 1 1/2 and 1. Each heatmap over its own maximum (pytorch-grad-cam's)
    would give both 1 at their peaks."""
    from gradcam_cli.explain.concepts import ImageConcepts
    from gradcam_cli.files import concepts as drawing

    heatmaps = np.zeros((2, 2, 2), np.float32)
    heatmaps[0, 0, 0], heatmaps[1, 1, 1], heatmaps[0, 1, 1] = 4.0, 2.0, 1.0
    image = ImageConcepts(0, heatmaps, (0, 0, 2, 2), (2, 2), True)
    strongest, strength, shares, areas = drawing.strengths(image, np.array([1.0, 3.0]))
    np.testing.assert_array_equal(strongest, [[0, 1], [0, 1]])
    np.testing.assert_allclose(strength, [[2 / 3, 0.5], [0.0, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(shares, [1 / 6, 0.375], rtol=1e-6)
    np.testing.assert_allclose(areas, [0.25, 0.5])
    rgb = np.full((2, 2, 3), 100, np.uint8)
    colours = np.array(drawing.colours(2), np.float32)
    expected = 0.5 * 100 + 0.5 * colours[strongest] * strength[..., None]
    np.testing.assert_array_equal(drawing.overlay(rgb, image, 0.5, part_norms=[1.0, 3.0]),
                                  np.rint(expected).astype(np.uint8))
    # unweighed, the heatmaps still share one scale: the weaker concept is the fainter
    strongest, strength, shares, _ = drawing.strengths(image)
    np.testing.assert_allclose(strength, [[1.0, 0.25], [0.0, 0.5]])
    np.testing.assert_allclose(shares, [0.25, 0.1875])


def test_a_concepts_part_norms_leave_out_the_shift():
    from gradcam_cli.explain.concepts import Concepts

    concepts = Concepts(np.array([[3.0, 3.0], [-1.0, 2.0]]), [[], []], ["a", "b"], "feat", np.array([-1.0, 0.0]),
                        [0])
    np.testing.assert_allclose(concepts.part_norms, [5.0, 2.0])  # (4, 3) and (0, 2)


# --- the command --------------------------------------------------------------------------------


@pytest.fixture
def run(keras, tmp_path):
    """A saved dff_model, its labels file and four images (8x8 and 40x30) in tmp_path/in."""
    model = tmp_path / "dff.keras"
    dff_model(keras).save(model)
    (tmp_path / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    (tmp_path / "in").mkdir()
    for i, rgb in enumerate(images(3)):
        Image.fromarray(rgb).save(tmp_path / "in" / f"img{i}.png")
    write_image(tmp_path / "in" / "wide.png", size=(40, 30), seed=3)
    return ["--model", model, "--preprocess", "none", "--labels", tmp_path / "labels.txt"]


def test_command_writes_overlays_and_records(run, tmp_path):
    import cv2

    from gradcam_cli.files.concepts import LEGEND_MIN_WIDTH, legend_height
    from gradcam_cli.report import kind_of

    result = invoke_cli("concepts", tmp_path / "in", *run, "-k", "2", "-o", tmp_path / "out", "--json",
                        "--save", "overlay,raw")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [kind_of(r) for r in records] == ["concept-image"] * 4 + ["concepts"]
    summary = records[-1]
    assert summary["images"] == 4 and summary["images_fitted"] == 4 and summary["layer"] == "feat"
    assert summary["model"] == "dff.keras" and summary["method"] == "concepts"
    assert [c["index"] for c in summary["concepts"]] == [0, 1]
    assert all(c["top_classes"][0]["label"] in CLASSES and c["vector_norm"] > 0 for c in summary["concepts"])
    names = [c["name"] for c in summary["concepts"]]
    for record in records[:-1]:
        assert record["method"] == "concepts" and record["layer"] == "feat" and record["resolution"] == [8, 8]
        assert [c["name"] for c in record["concepts"]] == names
        shares = [c["share"] for c in record["concepts"]]
        assert record["strongest"] == int(np.argmax(shares)) and all(0 <= s <= 1 for s in shares)
        width, height = record["image_size"]
        overlay = cv2.imread(record["outputs"]["overlay"])
        assert overlay.shape == (height + legend_height(2, width), max(width, LEGEND_MIN_WIDTH), 3)
        raw = np.load(record["outputs"]["raw"])
        assert raw.shape == (8, 8, 2) and raw.dtype == np.float32 and (raw >= 0).all()
    wide = next(r for r in records if r["input"].endswith("wide.png"))
    assert wide["image_size"] == [40, 30]
    assert wide["outputs"]["overlay"] == str(tmp_path / "out" / "wide.png.concepts.overlay.png")
    assert "4 image(s) done, 0 failed" in result.stderr


def test_command_without_json_prints_the_paths(run, tmp_path):
    result = invoke_cli("concepts", tmp_path / "in" / "img0.png", *run, "-k", "2", "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(tmp_path / "out" / "img0.png.concepts.overlay.png")]
    assert "2 concept(s) at layer feat, fitted on 1 image(s):" in result.stderr


@pytest.mark.parametrize("arguments, message", [
    (["-k", "0"], "Error: the number of concepts must be a whole number of at least 1. Received: -k 0"),
    (["-k", "5"], "Error: layer feat has 4 channel(s): it cannot hold more concepts than that. Received: -k 5"),
    (["-k", "2", "--max-images", "0"], "Error: the number of images to fit on must be a whole number of at least 1. "
                                       "Received: --max-images 0"),
    (["-k", "2", "--layer", "nope"], "nope"),
    (["-k", "2", "--save", "heatmap"], "Error: --save heatmap: choose from overlay, raw, comma-separated"),
])
def test_command_refuses_bad_arguments_in_one_line(run, tmp_path, arguments, message):
    result = invoke_cli("concepts", tmp_path / "in", *run, *arguments, "-o", tmp_path / "out")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_command_skips_an_unreadable_image(run, tmp_path):
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image")
    result = invoke_cli("concepts", tmp_path / "in", *run, "-k", "2", "-o", tmp_path / "out", "--json")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {tmp_path / 'in' / 'broken.png'}: cannot decode: not an image file"]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {"input": str(tmp_path / "in" / "broken.png"), "error": "cannot decode: not an image file"} in records
    assert records[-1]["images"] == 4 and records[-1]["images_fitted"] == 4
    assert len(list((tmp_path / "out").glob("*.concepts.overlay.png"))) == 4
    assert "4 image(s) done, 1 failed" in result.stderr


def test_command_without_classes_says_why(keras, tmp_path):
    model = tmp_path / "skip.keras"
    skip_model(keras).save(model)
    for i, rgb in enumerate(images(2)):
        Image.fromarray(rgb).save(tmp_path / f"{i}.png")
    result = invoke_cli("concepts", tmp_path / "0.png", tmp_path / "1.png", "--model", model, "--layer", "feat",
                        "-k", "2", "-o", tmp_path / "out", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert [c["name"] for c in summary["concepts"]] == ["concept 1", "concept 2"]
    assert summary["classes_note"].startswith("no classes")
    assert "warning: no classes: the layers above feat cannot be run alone" in result.stderr


def test_command_report_names_the_concepts(run, tmp_path):
    from test_report import page_data

    result = invoke_cli("concepts", tmp_path / "in", *run, "-k", "2", "-o", tmp_path / "out", "--json",
                        "--report", tmp_path / "report")
    assert result.returncode == 0, result.stderr
    names = [c["name"] for c in json.loads(result.stdout.splitlines()[-1])["concepts"]]
    index = tmp_path / "report" / "index.html"
    assert f"report: {index} (1 set(s) of concepts, 4 image(s), 0 failure(s))" in result.stderr
    data = page_data(index)
    [entry] = data["concepts"]
    assert [c["name"] for c in entry["concepts"]] == names
    assert all(c["colour"].startswith("#") for c in entry["concepts"])
    assert len(entry["images"]) == 4 and all(image["overlay"] for image in entry["images"])
    assert all(image["strongest"] in names for image in entry["images"])
    assert 'id="concepts"' in index.read_text()
    # `gradcam report` reads the same lines back
    (tmp_path / "results.jsonl").write_text(result.stdout)
    again = invoke_cli("report", tmp_path / "results.jsonl", "-o", tmp_path / "again")
    assert again.returncode == 0, again.stderr
    assert "1 set(s) of concepts, 4 concept overlay(s)" in again.stderr
    assert [c["name"] for c in page_data(tmp_path / "again" / "index.html")["concepts"][0]["concepts"]] == names


def test_report_kinds_of_the_concepts_records():
    from gradcam_cli.report import kind_of

    assert kind_of({"input": "a", "method": "concepts", "concepts": []}) == "concept-image"
    assert kind_of({"method": "concepts", "concepts": [], "images_fitted": 2}) == "concepts"
    assert kind_of({"method": "concepts", "concepts": []}) is None
    assert kind_of({"input": "a", "error": "e", "method": "concepts", "concepts": []}) == "failure"
    assert kind_of({"input": "a", "maps": []}) == "image"


def test_the_commands_save_kinds_are_the_files():
    import importlib

    from gradcam_cli.files import concepts as drawing

    command = importlib.import_module("gradcam_cli.cli.concepts_command")  # the module, not the Command

    assert command.SAVE_KINDS == drawing.SAVE_KINDS and command.DEFAULT_SAVE == drawing.DEFAULT_SAVE


def test_installed_script_help():
    result = run_cli("concepts", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "Usage: gradcam concepts" in text
    assert 'Collins, Achanta and Süsstrunk 2018, "Deep Feature Factorization for Concept Discovery"' in text
    for option in ("-k", "--layer", "--max-images", "--top-classes", "--batch-size", "--json", "--quiet", "--report",
                   "--save", "--model"):
        assert option in text


def test_help_does_not_import_tensorflow():
    result = python_cli(
        "import sys",
        "from gradcam_cli.cli import main",
        "try:",
        "    main(['concepts', '--help'], standalone_mode=False)",
        "except SystemExit:",
        "    pass",
        "print('HEAVY', [m for m in ('tensorflow', 'keras', 'cv2', 'sklearn') if m in sys.modules])",
    )
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
