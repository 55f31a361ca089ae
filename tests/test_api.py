"""The Python API: the README's example as written, explanations against the command's files,
batches against single images, arrays, pickling for workers, and the error family."""

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import OFFLINE_ENV, gap_model, write_image
from PIL import Image

from gradcam_cli import Explainer, load_model
from gradcam_cli.cli import main
from gradcam_cli.errors import ClassError, GradcamError, ImageError, LayerError, ModelError

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_images"


def readme_python_example():
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- python-example -->\n```python\n(.*?)```", text, re.S)
    assert match, "the README's Python example is missing"
    return match.group(1)


def test_the_readme_example_runs_as_written(tmp_path):
    code = readme_python_example().replace('"out/"', repr(str(tmp_path / "out") + "/"))
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, **OFFLINE_ENV))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and lines[0].startswith("synthetic_circle.png 0 circle")  # 2 images x top 2
    assert lines[2].startswith("cat.png ") and lines[2].endswith("(300, 451)")
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(f"{name}.gradcam.top{k}.{kind}.png" for name in ("synthetic_circle.png", "cat.png")
                             for k in (1, 2) for kind in ("heatmap", "overlay"))


@pytest.fixture(scope="module")
def demo_gap(keras):
    return load_model("demo-gap")


def test_explanations_equal_the_commands_outputs(tmp_path, demo_gap):
    images = [SAMPLES / "synthetic_square.png", SAMPLES / "synthetic_two_circle_triangle.png"]
    result = CliRunner().invoke(main, [*map(str, images), "--model", "demo-gap", "--class", "1", "--class", "2",
                                       "-o", str(tmp_path / "cli"), "--save", "heatmap,overlay,raw", "--json"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    explanations = Explainer(demo_gap, batch_size=2)(images, classes=[1, "triangle"])
    assert [(e.name, e.class_index) for e in explanations] == [(p.name, c) for p in images for c in (1, 2)]
    for e, entry in zip(explanations, [m for r in records for m in r["maps"]]):
        assert (e.class_index, e.label) == (entry["class"], entry["label"])
        assert e.score == pytest.approx(entry["score"], abs=1e-5)
        assert e.probability == pytest.approx(entry["probability"], abs=1e-5)
        np.testing.assert_allclose(e.map * float(np.load(entry["outputs"]["raw"]).max()),
                                   np.load(entry["outputs"]["raw"]), rtol=1e-5, atol=1e-6)
        saved = e.save(tmp_path / "api")
        for kind in ("heatmap", "overlay"):
            assert Path(saved[kind]).name == Path(entry["outputs"][kind]).name
            np.testing.assert_array_equal(np.asarray(Image.open(saved[kind])), np.asarray(Image.open(entry["outputs"][kind])))
        np.testing.assert_array_equal(e.overlay(), np.asarray(Image.open(entry["outputs"]["overlay"])))
    assert records[0]["predictions"] == explanations[0].predictions


def test_a_batch_equals_its_images_one_by_one_and_arrays_equal_files(demo_gap):
    paths = sorted(SAMPLES.glob("synthetic_*.png"))
    batch = Explainer(demo_gap, batch_size=4)(paths)  # 6 images: a full batch and a padded one
    single = Explainer(demo_gap, batch_size=1)
    arrays = Explainer(demo_gap, batch_size=3)([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    assert [e.name for e in arrays] == [f"image{i}.png" for i in range(6)] and arrays[0].source is None
    for path, together, from_array in zip(paths, batch, arrays):
        alone = single(path)[0]
        assert together.class_index == alone.class_index == from_array.class_index
        np.testing.assert_allclose(together.small_map, alone.small_map, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(from_array.small_map, alone.small_map, rtol=1e-5, atol=1e-6)
    assert len({e.class_index for e in batch}) == 4  # the scenes show all four shapes


def test_an_explainer_by_name_is_picklable_and_builds_in_the_worker(tmp_path, keras):
    path = tmp_path / "gap.keras"
    gap_model(keras).save(path)
    image = write_image(tmp_path / "i.png", (32, 32), seed=3)
    explainer = Explainer(str(path), method="cam", batch_size=2, preprocess="unit")
    worker_copy = pickle.loads(pickle.dumps(explainer))
    here = explainer([image])[0]
    there = worker_copy([image])[0]
    np.testing.assert_array_equal(here.small_map, there.small_map)
    assert pickle.loads(pickle.dumps(worker_copy))._ready is None  # sent again: arguments only
    with pytest.raises(GradcamError, match="cannot be sent to another process"):
        pickle.dumps(Explainer(load_model(str(path))))


def test_the_library_raises_its_own_errors(tmp_path, demo_gap):
    for error, kind in ((GradcamError, ValueError), (ModelError, GradcamError), (LayerError, GradcamError),
                        (ClassError, GradcamError), (ImageError, GradcamError)):
        assert issubclass(error, kind)
    with pytest.raises(ModelError, match="unknown model 'alexnet'"):
        load_model("alexnet")
    with pytest.raises(LayerError, match="no layer 'nope'"):
        Explainer(demo_gap, layer="nope")([SAMPLES / "cat.png"])
    with pytest.raises(LayerError, match="cam does not apply to demo-vgg"):
        Explainer("demo-vgg", method="cam")([SAMPLES / "cat.png"])
    with pytest.raises(ClassError, match="out of range"):
        Explainer(demo_gap)([SAMPLES / "cat.png"], classes=[9])
    with pytest.raises(ImageError, match="missing.png: no such file"):
        Explainer(demo_gap)([tmp_path / "missing.png"])
    with pytest.raises(ImageError, match="expected an \\(H, W, 3\\)"):
        Explainer(demo_gap)([np.zeros((4, 4, 4), np.uint8)])
    with pytest.raises(GradcamError, match="unknown method 'ablation-cam'"):
        Explainer(demo_gap, method="ablation-cam")


def test_maps_of_images_and_classes_are_the_batch_computation(demo_gap):
    """Explainer.maps, the one call evaluation, compare and the randomisation check use: the maps
    of prepared batches, each image's class as asked (None: its top-1), at the image's size."""
    from gradcam_cli.explain.maps import full_map

    rgbs = [np.asarray(Image.open(SAMPLES / name).convert("RGB")) for name in
            ("synthetic_square.png", "synthetic_circle.png", "synthetic_two_circle_triangle.png")]
    explainer = Explainer(demo_gap, "gradcam", batch_size=2)  # two batches: 2 + 1
    found = explainer.maps(rgbs, [None, 3, "triangle"])
    inputs, boxes = explainer.prepare(rgbs)
    top1 = int(np.argmax(explainer.probabilities(inputs[:1])[0]))
    direct = Explainer(demo_gap, "gradcam", batch_size=3).compute(inputs, np.array([top1, 3, 2]))
    assert list(found.classes) == [top1, 3, 2] and len(found) == 3
    np.testing.assert_allclose(found.batch.small_maps, direct.small_maps, rtol=1e-5, atol=1e-6)
    for i, rgb in enumerate(rgbs):
        np.testing.assert_allclose(found.on_image(i), full_map(direct.small_maps[i], boxes[i], rgb.shape)[1],
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(found.at_input(i), found.batch.small_maps[i])
    # one class for all images, by name; a wrong one is the library's error
    assert list(explainer.maps(rgbs, "circle").classes) == [0, 0, 0]
    with pytest.raises(ClassError, match="one per image"):
        explainer.maps(rgbs, [0, 1])


def test_probabilities_are_the_models_and_a_sibling_shares_the_engine(demo_gap):
    explainer = Explainer(demo_gap, "gradcam", batch_size=2)
    inputs, _ = explainer.prepare([np.asarray(Image.open(SAMPLES / "synthetic_cross.png").convert("RGB"))])
    expected = demo_gap.model.predict(inputs, verbose=0)
    np.testing.assert_allclose(explainer.probabilities(inputs), expected, rtol=1e-5, atol=1e-6)
    sibling = explainer.with_method("randomcam")
    assert sibling.method == "randomcam" and sibling.build().engine is explainer.build().engine
    # on a dilated copy, the original model scores
    dilated = Explainer(load_model("demo-vgg"), "dilated", batch_size=1)
    assert dilated.build().reference is not None
    vgg_inputs, _ = dilated.prepare([np.asarray(Image.open(SAMPLES / "synthetic_cross.png").convert("RGB"))])
    np.testing.assert_allclose(dilated.probabilities(vgg_inputs),
                               dilated.build().reference.model.predict(vgg_inputs, verbose=0), rtol=1e-5, atol=1e-6)


def test_stream_yields_events_in_input_order(tmp_path, demo_gap):
    from gradcam_cli.files.inputs import collect

    folder = tmp_path / "in"
    for i in range(3):
        write_image(folder / f"p{i}.png", (20, 20), seed=i)
    (folder / "p1.png").write_bytes(b"broken")
    explainer = Explainer(demo_gap, "gradcam", batch_size=2)
    events = list(explainer.stream(collect([str(folder)]).sources, explainer.file_options(tmp_path / "out")))
    kinds = [(kind, Path(source.path).name if source else value) for kind, source, value in events]
    assert kinds == [("result", "p0.png"), ("unreadable", "p1.png"), ("batch", 2), ("result", "p2.png"), ("batch", 1)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"p{i}.png.gradcam.{kind}" for i in (0, 2) for kind in ("heatmap.png", "overlay.png", "record.json"))


def test_explanations_save_under_the_commands_names(tmp_path, demo_gap):
    """Explanation.save names its files as the command does, smoothing and variants included."""
    image = np.asarray(Image.open(SAMPLES / "synthetic_square.png").convert("RGB"))
    smoothed = Explainer(demo_gap, "gradcam", aug_smooth=True, batch_size=1)([image], names=["a.png"])[0]
    written = smoothed.save(tmp_path)
    assert sorted(Path(p).name for p in written.values()) == ["a.png.gradcam-aug-smooth.heatmap.png",
                                                              "a.png.gradcam-aug-smooth.overlay.png"]
    guided = Explainer(demo_gap, "guided", smoothgrad_samples=2, batch_size=1)([image], names=["b.png"])[0]
    assert Path(guided.save(tmp_path, save=["overlay"])["overlay"]).name == "b.png.guided-smoothgrad.overlay.png"
