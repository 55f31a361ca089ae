"""What a new-user trial of the transformer, target and concepts features found (issue 31): a
--grid whose left-over tokens are not the model's prefix, concepts named on the wrong shape,
concepts' writes left half-done, records claiming options that had no effect, and checks that
came after the model loaded or named the wrong cure."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke_cli
from PIL import Image

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"
CIRCLE = SAMPLES / "synthetic_circle.png"


# --- 1. a given grid leaves the model's own prefix, or is refused ------------------------------

@pytest.mark.parametrize("count, grid, own_embedding, expected", [
    (65, (8, 8), (8, 8), (8, 8, 1)),   # the model's own grid: its class token left over
    (65, (4, 16), (8, 8), (4, 16, 1)),  # another shape of the same 64 patches
    (64, (4, 16), None, (4, 16, 0)),    # no prefix and none read: nothing left over
])
def test_a_given_grid_keeps_the_models_own_prefix(count, grid, own_embedding, expected):
    from gradcam_cli.models import tokens

    found = tokens.read_grid(count, (64, 64), own_embedding, grid)
    assert (found.height, found.width, found.prefix) == expected and found.source == "given"


@pytest.mark.parametrize("count, grid, own_embedding, message", [
    (65, (7, 7), (8, 8), "its 65 tokens are a 7x7 grid (49 tokens) with 16 left over, but the model's own reading "
                         "has 1 prefix token(s): give a grid of 64 tokens, or the prefix tokens too (prefix_tokens=N)"),
    (65, (5, 13), (8, 8), "its 65 tokens are a 5x13 grid (65 tokens) with 0 left over, but the model's own reading "
                          "has 1 prefix token(s): give a grid of 64 tokens, or the prefix tokens too (prefix_tokens=N)"),
    (50, (7, 7), None, "its 50 tokens are a 7x7 grid (49 tokens) with 1 left over, but the model gives no prefix "
                       "count of its own: give a grid of 50 tokens, or the prefix tokens too (prefix_tokens=N)"),
])
def test_a_given_grid_that_leaves_other_tokens_is_refused(count, grid, own_embedding, message):
    from gradcam_cli.errors import GradcamError
    from gradcam_cli.models import tokens

    with pytest.raises(ValueError) as caught:
        tokens.read_grid(count, (64, 64), own_embedding, grid)
    assert str(GradcamError(caught.value.args[0])) == message  # the option spelled as the API takes it
    # said together with the prefix, the same grid is the user's reading
    assert tokens.read_grid(count, (64, 64), own_embedding, grid, count - grid[0] * grid[1]).source == "given"


def test_grid_7x7_on_demo_vit_is_refused_in_one_line(tmp_path):
    result = invoke_cli(CIRCLE, "-m", "demo-vit", "--grid", "7x7", "-o", tmp_path / "out", "--json")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("Error: demo-vit: the default layer 'block4_norm1' (the input of the last attention "
                             "layer) has output shape (65, 64): its 65 tokens are a 7x7 grid (49 tokens) with 16 left "
                             "over, but the model's own reading has 1 prefix token(s): give a grid of 64 tokens, or the "
                             "prefix tokens too (--prefix-tokens N)\n")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    # the model's own grid, given, is recorded as read
    result = invoke_cli(CIRCLE, "-m", "demo-vit", "--grid", "8x8", "-o", tmp_path / "out", "--json", "-q")
    assert result.returncode == 0
    record = json.loads(result.stdout.splitlines()[0])
    assert record["grid"] == [8, 8] and record["prefix_tokens"] == 1


# --- 2. concepts: the strongest concept of each scene is its own shape -------------------------

SHAPES = ("circle", "cross", "square", "triangle")


@pytest.mark.parametrize("k", [4, 5])
def test_each_scenes_strongest_concept_is_its_own_shape(tmp_path, k):
    """demo-gap's synthetic scenes: the concept named strongest in each single-shape scene's record,
    and in the report's caption, has that shape as its top class; the overlay is brightest on it."""
    from test_report import page_data

    scenes = sorted(SAMPLES.glob("synthetic_*.png"))
    result = invoke_cli("concepts", *scenes, "-m", "demo-gap", "-k", k, "-o", tmp_path / "out", "--json", "-q",
                        "--save", "overlay,raw", "--report", tmp_path / "report")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    *images, summary = records
    top = [c["top_classes"][0]["label"] for c in summary["concepts"]]
    assert sorted(set(top)) == list(SHAPES)  # every shape is a concept
    by_shape = {Path(r["input"]).stem.removeprefix("synthetic_"): r for r in images}
    for shape in SHAPES:
        record = by_shape[shape]
        assert top[record["strongest"]] == shape, (shape, record["concepts"])
        shares = [c["share"] for c in record["concepts"]]
        assert record["strongest"] == int(np.argmax(shares)) and max(shares) > 2 * sorted(shares)[-2]
    # the report's captions and header
    [entry] = page_data(tmp_path / "report" / "index.html")["concepts"]
    named = {Path(image["name"]).stem.removeprefix("synthetic_"): image["strongest"] for image in entry["images"]}
    names = [c["name"] for c in summary["concepts"]]
    for shape in SHAPES:
        assert top[names.index(named[shape])] == shape
    assert page_data(tmp_path / "report" / "index.html")["summary"] == ["6 images with concepts", "0 failures"]


def test_a_weak_concept_paints_faintly():
    """Two concepts on a 4x4 map: one strong on the object (peak 10), one weak everywhere (1). Each
    over its own maximum, the weak one would paint the background at full strength; over the
    image's largest, at a tenth."""
    from gradcam_cli.explain.concepts import ImageConcepts
    from gradcam_cli.files import concepts as drawing

    heatmaps = np.zeros((4, 4, 2), np.float32)
    heatmaps[..., 1] = 1.0
    heatmaps[1:3, 1:3, 0] = 10.0
    image = ImageConcepts(0, heatmaps, (0, 0, 4, 4), (4, 4), True)
    strongest, strength, shares, _ = drawing.strengths(image, [1.0, 1.0])
    inside = np.zeros((4, 4), bool)
    inside[1:3, 1:3] = True
    assert (strongest[inside] == 0).all() and (strongest[~inside] == 1).all()
    np.testing.assert_allclose(strength, np.where(inside, 1.0, 0.1), rtol=1e-6)
    np.testing.assert_allclose(shares, [0.25, 0.1], rtol=1e-6)
    black = np.zeros((4, 4, 3), np.uint8)
    painted = drawing.overlay(black, image, 1.0, part_norms=[1.0, 1.0]).astype(float)
    colours = np.array(drawing.colours(2), float)
    np.testing.assert_array_equal(painted[0, 0], np.rint(colours[1] * 0.1))
    np.testing.assert_array_equal(painted[1, 1], colours[0])


# --- 3. concepts' writes: whole or absent, whatever interrupts them ---------------------------

def _interrupting(monkeypatch, name, when, error):
    """os.NAME raising `error` on its `when`-th call on a temporary (.part) file; for os.open, just
    after the file was made (the instant a signal may land), else before the call."""
    import os

    original, calls = getattr(os, name), []

    def call(*args, **kwargs):
        if str(args[0]).endswith(".part"):
            calls.append(args[0])
            if len(calls) == when:
                if name == "open":
                    os.close(original(*args, **kwargs))
                raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(os, name, call)
    return calls


@pytest.mark.parametrize("name", ["open", "replace"])
@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(143), OSError(28, "No space left on device")])
def test_an_interrupted_write_leaves_no_part_file_and_the_old_file_whole(tmp_path, monkeypatch, name, error):
    from gradcam_cli.files import outputs

    path = tmp_path / "a.png.concepts.record.json"
    outputs.write_json(path, {"old": 1})
    _interrupting(monkeypatch, name, 1, error)
    with pytest.raises(type(error)):
        outputs.write_json(path, {"new": 2})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png.concepts.record.json"]
    assert json.loads(path.read_text()) == {"old": 1}


def test_an_interrupted_write_of_the_data_leaves_no_part_file(tmp_path, monkeypatch):
    import os

    from gradcam_cli.files import outputs

    class HalfWritten:  # the stream takes half the bytes, then the interruption lands
        def __init__(self, stream):
            self.stream = stream

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.stream.close()

        def write(self, data):
            self.stream.write(data[: len(data) // 2])
            self.stream.flush()
            raise KeyboardInterrupt

    original = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: HalfWritten(original(*a, **k)))
    with pytest.raises(KeyboardInterrupt):
        outputs.write_npy(tmp_path / "x.npy", np.ones((8, 8)))
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error, status", [(SystemExit(143), 143), (KeyboardInterrupt(), None)])
def test_interrupted_concepts_leave_whole_files_and_records(tmp_path, monkeypatch, error, status):
    """The 5th file rename (the third image's overlay, after two images' overlays and records) is
    interrupted: the concepts' record names them with the 2 images done, those two have their
    records and files, the third nothing, no .part file anywhere; the report shows what finished."""
    scenes = sorted(SAMPLES.glob("synthetic_*.png"))[:4]
    out, report = tmp_path / "out", tmp_path / "report"
    # renames: concepts.json, then per image overlay, record, concepts.json: the 3rd image's overlay is the 8th
    _interrupting(monkeypatch, "replace", 8, error)
    result = invoke_cli("concepts", *scenes, "-m", "demo-gap", "-k", 4, "-o", out, "-q", "--report", report)
    monkeypatch.undo()
    if status is not None:
        assert result.returncode == status
    else:
        assert result.returncode != 0
    assert [p.name for p in out.rglob("*.part")] == [] and [p.name for p in report.rglob("*.part")] == []
    concepts = json.loads((out / "concepts.json").read_text())
    assert concepts["images"] == 2 and len(concepts["concepts"]) == 4 and concepts["method"] == "concepts"
    records = sorted(out.glob("*.concepts.record.json"))
    assert [p.name for p in records] == [f"{s.name}.concepts.record.json" for s in scenes[:2]]
    for path in records:
        record = json.loads(path.read_text())
        assert [c["name"] for c in record["concepts"]] == [c["name"] for c in concepts["concepts"]]
        assert record["outputs"]["record"] == str(path)
        with Image.open(record["outputs"]["overlay"]) as picture:
            picture.load()  # whole
    assert sorted(p.name for p in out.glob("*.png")) == [f"{s.name}.concepts.overlay.png" for s in scenes[:2]]
    from test_report import page_data

    [entry] = page_data(report / "index.html")["concepts"]
    assert len(entry["images"]) == 2 and "found in 2 image(s)" in entry["title"]


# --- 4. records hold what was used: options that cannot apply are refused ---------------------

@pytest.mark.parametrize("arguments, message", [
    (["--method", "rollout", "--layer", "block2_norm1"],
     "Error: rollout does not apply to demo-vit at layer block2_norm1: it reads every attention layer over the "
     "layer's 65 tokens (a 8x8 grid after 1 prefix token(s)), whichever layer of that grid is the target, and "
     "'block2_norm1' has the grid of the default layer 'block4_norm1': its map would be the default's. Leave "
     "--layer out"),
    (["--method", "generic-attention", "--layer", "block1_norm1"],
     "Error: generic-attention does not apply to demo-vit at layer block1_norm1: it reads every attention layer over "
     "the layer's 65 tokens (a 8x8 grid after 1 prefix token(s)), whichever layer of that grid is the target, and "
     "'block1_norm1' has the grid of the default layer 'block4_norm1': its map would be the default's. Leave "
     "--layer out"),
    (["--method", "legrad", "--legrad-blocks", "9"],
     "Error: legrad does not apply to demo-vit at layer block4_norm1: demo-vit has 4 attention block(s) over the "
     "layer's tokens: the last 9 cannot be averaged. Received: --legrad-blocks 9 (give at most 4)"),
])
def test_an_option_without_effect_is_refused_in_one_line(tmp_path, arguments, message):
    result = invoke_cli(CIRCLE, "-m", "demo-vit", *arguments, "-o", tmp_path / "out", "--json")
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message + "\n")


def test_the_values_used_are_recorded(tmp_path):
    """The default layer given explicitly, and --legrad-blocks 4 of 4 blocks, are what was used:
    accepted and recorded so, each map equal to the default run's."""
    def run(*arguments):
        result = invoke_cli(CIRCLE, "-m", "demo-vit", *arguments, "-o", tmp_path / "-".join(arguments), "--json",
                            "--save", "raw", "-q")
        assert result.returncode == 0, result.stderr
        record = json.loads(result.stdout)
        return record, np.load(record["maps"][0]["outputs"]["raw"])

    default, default_map = run("--method", "rollout")
    given, given_map = run("--method", "rollout", "--layer", "block4_norm1")
    assert default["layer"] == given["layer"] == "block4_norm1"
    np.testing.assert_array_equal(given_map, default_map)
    every, every_map = run("--method", "legrad")
    four, four_map = run("--method", "legrad", "--legrad-blocks", "4")
    assert "legrad_blocks" not in every and four["legrad_blocks"] == 4
    np.testing.assert_allclose(four_map, every_map, rtol=1e-6)
    _, last_map = run("--method", "legrad", "--legrad-blocks", "1")
    assert not np.allclose(last_map, every_map)  # fewer blocks than there are: an effect


def _two_stage(keras):
    """Tokens on an 8x8 grid with attention, then (through a strided convolution) on a 4x4 grid
    with attention: the default layer is the second stage's; the first stage's is another grid."""
    layers = keras.layers
    keras.utils.set_random_seed(3)
    inputs = keras.Input((32, 32, 3))
    x = layers.Conv2D(8, 4, strides=4, name="embed")(inputs)
    x = layers.Reshape((64, 8))(x)
    y = layers.LayerNormalization(name="stage1_norm")(x)
    x = layers.Add()([x, layers.MultiHeadAttention(2, 4, name="stage1_attn")(y, y)])
    x = layers.Conv2D(16, 2, strides=2, name="merge")(layers.Reshape((8, 8, 8))(x))
    x = layers.Reshape((16, 16))(x)
    y = layers.LayerNormalization(name="stage2_norm")(x)
    x = layers.Add()([x, layers.MultiHeadAttention(2, 8, name="stage2_attn")(y, y)])
    x = layers.LayerNormalization(name="final_norm")(x)
    outputs = layers.Dense(3)(layers.GlobalAveragePooling1D()(x))
    return keras.Model(inputs, outputs)


def test_a_layer_of_another_grid_chooses_that_grid(keras):
    from gradcam_cli import Explainer
    from gradcam_cli.errors import GradcamError
    from gradcam_cli.models import loading

    loaded = loading.describe(_two_stage(keras), "two", (32, 32), "none", ("a", "b", "c"))
    assert loaded.default_layer == ("stage2_norm",)
    images = [np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)]
    first = Explainer(loaded, "rollout", layer="stage1_norm")(images)[0]
    default = Explainer(loaded, "rollout")(images)[0]
    assert first.small_map.shape == (8, 8) and default.small_map.shape == (4, 4)
    with pytest.raises(GradcamError, match="legrad_blocks=2 .give at most 1.$"):
        Explainer(loaded, "legrad", legrad_blocks=2).build()


# --- 5. checks that come first and say what is wrong ------------------------------------------

@pytest.mark.parametrize("arguments, message", [
    (["--methods", "rollout,bogus"], "Error: --methods bogus: choose from "),
    (["--variants", "pool-min"], "Error: --variants pool-min: choose from pool-mean, pool-max, argmax-channel, "
                                 "relu-after-resize, comma-separated"),
])
def test_compare_refuses_a_wrong_name_before_keras_or_a_model(tmp_path, monkeypatch, arguments, message):
    from gradcam_cli.cli import tools

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded (or Keras imported) before the names were checked")

    monkeypatch.setattr(tools, "load", never)
    monkeypatch.setattr("gradcam_cli.explain.runtime.import_keras", never)
    result = invoke_cli("compare", CIRCLE, "-m", "demo-vit", *arguments, "-o", tmp_path / "out")
    assert result.returncode == 2 and result.stderr.startswith(message) and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_compare_variants_spelled_for_the_early_check_are_compares():
    from gradcam_cli.cli.tools import COMPARE_VARIANTS
    from gradcam_cli.compare.figures import VARIANTS

    assert COMPARE_VARIANTS == VARIANTS


def test_rollout_on_a_cnn_says_it_needs_a_transformer(tmp_path):
    result = invoke_cli(CIRCLE, "-m", "demo-gap", "--method", "rollout", "-o", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr == ("Error: rollout does not apply to demo-gap at layer block3_conv2: attention maps read a "
                             "vision transformer's attention (its keras.layers.MultiHeadAttention layers), and demo-gap "
                             "has no attention layer: choose a method for its layers' maps (`gradcam methods`)\n")
