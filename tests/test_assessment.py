"""`gradcam eval` as library calls: assess.assess (the command's whole run), read_images,
and the API's measure_faithfulness and randomisation_check, each checked against the command
or the lower-level functions it is built from."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_records_close, invoke_cli

import gradcam_cli
from gradcam_cli.errors import GradcamError
from gradcam_cli.evaluate import assess, faithfulness_report
from gradcam_cli.evaluate import faithfulness as F

ROOT = Path(__file__).resolve().parent.parent
SCENES = sorted(str(p) for p in (ROOT / "sample_images").glob("synthetic_*.png"))


@pytest.fixture(scope="module")
def model():
    return gradcam_cli.load_model("demo-gap")


@pytest.fixture(scope="module")
def explained(model):
    explainer = gradcam_cli.Explainer(model, "gradcam", batch_size=4)
    return explainer, explainer(SCENES)


def test_measure_faithfulness_of_explanations_equals_the_commands_report(model, explained):
    explainer, explanations = explained
    results = gradcam_cli.measure_faithfulness(model, SCENES, explanations, steps=8, name="gradcam")
    assert [r.class_index for r in results] == [e.class_index for e in explanations]
    mine = F.summary(results)["gradcam"]
    report = faithfulness_report.faithfulness_report({"gradcam": explainer}, [e.image for e in explanations],
                                                   [e.class_index for e in explanations], steps=8)
    theirs = report["methods"]["gradcam"]
    # The two routes score their perturbed views in other batches: float32 sums may differ in their
    # last bits (insertion AUC 0.9530416348 against 0.9530416361 on another machine).
    figures = ("deletion_auc", "insertion_auc", "average_drop_percent", "increase_in_confidence_percent",
               "road_combined")
    assert_records_close({f: mine[f] for f in figures}, {f: theirs[f] for f in figures})
    # Each curve starts at the unperturbed probability the explanation reports.
    for result, explanation in zip(results, explanations):
        assert result.deletion_curve[0] == pytest.approx(explanation.probability, abs=1e-5)
        assert result.insertion_curve[-1] == pytest.approx(explanation.probability, abs=1e-5)


def test_arrays_and_class_choices_give_the_same_figures(model, explained):
    _, explanations = explained
    base = gradcam_cli.measure_faithfulness(model, SCENES, explanations, steps=6, road=False)
    arrays = [e.small_map for e in explanations]
    # No classes with arrays: each image's top-1, which is what Grad-CAM explained.
    top1 = gradcam_cli.measure_faithfulness("demo-gap", SCENES, arrays, steps=6, road=False)
    named = gradcam_cli.measure_faithfulness(model, [e.image for e in explanations], arrays, steps=6, road=False,
                                             classes=[e.label for e in explanations])
    for a, b, c in zip(base, top1, named):
        assert a.class_index == b.class_index == c.class_index
        np.testing.assert_allclose(b.deletion_curve, a.deletion_curve, atol=1e-7)
        np.testing.assert_allclose(c.insertion_curve, a.insertion_curve, atol=1e-7)
        assert b.road_morf is None
    # One class for every image: the curves are of that class.
    circle = gradcam_cli.measure_faithfulness(model, SCENES[:2], arrays[:2], classes="circle", steps=4, road=False)
    assert [r.class_index for r in circle] == [0, 0]


def test_crop_is_taken_from_the_explanations(model):
    explainer = gradcam_cli.Explainer(model, "gradcam", crop=True)
    from PIL import Image

    circle, cross = (np.asarray(Image.open(SCENES[i]).convert("RGB")) for i in (0, 1))
    rgb = np.concatenate([circle, cross[:, :96]], axis=1)  # 192 x 288: the centre crop loses a side
    explanations = explainer([rgb])
    assert explanations[0].box != (0, 0, 288, 192)
    inferred = gradcam_cli.measure_faithfulness(model, [rgb], explanations, steps=4, road=False)
    explicit = gradcam_cli.measure_faithfulness(model, [rgb], [explanations[0].small_map], steps=4, road=False,
                                                crop=True, classes=[explanations[0].class_index])
    uncropped = gradcam_cli.measure_faithfulness(model, [rgb], [explanations[0].small_map], steps=4, road=False,
                                                 crop=False, classes=[explanations[0].class_index])
    np.testing.assert_allclose(inferred[0].deletion_curve, explicit[0].deletion_curve, atol=1e-7)
    assert not np.allclose(inferred[0].deletion_curve, uncropped[0].deletion_curve)


@pytest.mark.parametrize("call, message", [
    (lambda m: gradcam_cli.measure_faithfulness(m, SCENES[:2], [np.ones((4, 4))]), "one map per image"),
    (lambda m: gradcam_cli.measure_faithfulness(m, SCENES[:2], [np.ones((4, 4))] * 2, classes=[0, 1, 2]),
     "one class for all images or one per image"),
    (lambda m: gradcam_cli.measure_faithfulness(m, SCENES[:1], [np.ones((4, 4))], classes="dog"),
     "not a class name"),
    (lambda m: gradcam_cli.measure_faithfulness(object(), SCENES[:1], [np.ones((4, 4))]), "give a model name"),
])
def test_bad_calls_are_refused_with_a_message(model, call, message):
    with pytest.raises(GradcamError, match=message):
        call(model)


def test_randomisation_check_takes_a_name_and_leaves_the_model(model):
    before = [w.copy() for w in model.model.get_weights()]
    by_name = gradcam_cli.randomisation_check("demo-gap", SCENES[:2], ["gradcam"], max_steps=2)
    loaded = gradcam_cli.randomisation_check(model, SCENES[:2], ["gradcam"], max_steps=2)
    assert by_name.table() == loaded.table()
    assert all(np.array_equal(a, b) for a, b in zip(before, model.model.get_weights()))


def test_assess_is_what_the_command_prints(model, tmp_path):
    result = assess.assess(model, ["gradcam", "randomcam"], ["localization", "deletion"], count=6, pairs=2,
                               steps=5, output_dir=tmp_path / "lib", fail_under={"pointing": 0.99})
    command = invoke_cli("eval", "--model", "demo-gap", "--methods", "gradcam,randomcam", "--measures",
                         "localization,deletion", "-n", "6", "--pairs", "2", "--steps", "5", "-o", tmp_path / "cli",
                         "--fail-under", "pointing=0.99", "--json")
    printed = json.loads(command.stdout)
    assert command.returncode == (1 if result.failed else 0)
    assert printed["failed"] == result.failed
    mine = json.loads(json.dumps(result.report, default=str))
    mine["outputs"] = {k: Path(v).name for k, v in mine["outputs"].items()}
    printed["outputs"] = {k: Path(v).name for k, v in printed["outputs"].items()}
    assert mine == printed
    text = invoke_cli("eval", "--model", "demo-gap", "--methods", "gradcam,randomcam", "--measures",
                      "localization,deletion", "-n", "6", "--pairs", "2", "--steps", "5", "-o", tmp_path / "cli")
    assert text.stdout.strip() == result.text().strip()
    assert (tmp_path / "lib" / "eval.curves.png").stat().st_size > 0


def test_read_images_reports_what_it_leaves_out(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in SCENES[:2]:
        shutil.copy(path, folder)
    (folder / "broken.png").write_bytes(b"not a picture")
    read = assess.read_images([str(folder), str(tmp_path / "absent.png")])
    assert len(read.rgbs) == 2 and read.objects is None and read.failures == 2
    reasons = dict(read.problems)
    assert "no such file" in reasons[str(tmp_path / "absent.png")]
    assert str(folder / "broken.png") in reasons
    with pytest.raises(GradcamError, match="with a usable mask"):
        assess.read_images([str(folder)], objects=True)  # no NAME.mask.png beside them
    with pytest.raises(GradcamError, match="that can be read"):
        assess.read_images([str(folder / "broken.png")])


def test_assess_refuses_what_cannot_be_measured(model):
    images = assess.EvalImages([np.zeros((64, 64, 3), np.uint8)], ["a.png"])
    with pytest.raises(GradcamError, match="localization needs each image's object"):
        assess.assess(model, ["gradcam"], ["localization"], images=images)
    with pytest.raises(GradcamError, match="class_name applies to your images"):
        assess.assess(model, ["gradcam"], ["deletion"], class_name="circle")
    with pytest.raises(GradcamError, match="measures: choose from"):
        assess.assess(model, ["gradcam"], ["pointing"], images=images)
    with pytest.raises(GradcamError, match="fail_under: no figure 'road_combined'"):
        assess.assess(model, ["gradcam"], ["deletion"], images=images, steps=2, fail_under={"road_combined": 1})


def test_the_commands_measures_are_the_librarys():
    from gradcam_cli.cli import tools

    assert tools.MEASURES is assess.MEASURES


def test_the_readmes_faithfulness_example_runs_as_written(model):
    import os
    import re
    import subprocess
    import sys

    from conftest import OFFLINE_ENV

    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- faithfulness-example -->\n```python\n(.*?)```", text, re.S)
    assert match, "the README's faithfulness example is missing"
    result = subprocess.run([sys.executable, "-c", match.group(1)], cwd=ROOT, capture_output=True, text=True,
                            timeout=600, env=dict(os.environ, **OFFLINE_ENV))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    deletion, insertion, morf = (float(v) for v in lines[0].split())
    scenes = [str(ROOT / "sample_images" / name) for name in ("synthetic_circle.png", "synthetic_cross.png")]
    expected = gradcam_cli.measure_faithfulness(model, scenes, gradcam_cli.Explainer(model, "gradcam")(scenes))[0]
    assert (deletion, insertion) == pytest.approx((expected.deletion_auc, expected.insertion_auc), abs=1e-6)
    assert morf == pytest.approx(expected.road_morf.mean(), abs=1e-6)
    assert "'deletion_auc'" in lines[1] and "guided-backprop" in result.stdout
    assert any(line.startswith("faithfulness (road") for line in lines)
    assert any(line.startswith("layercam ") for line in lines)


def test_an_explainers_own_engine_scores_its_maps(model, explained, monkeypatch):
    from gradcam_cli.explain import engine as engines

    explainer, explanations = explained
    expected = gradcam_cli.measure_faithfulness(model, SCENES, explanations, steps=4, road=False)
    built = []
    original = engines.Engine.__init__
    monkeypatch.setattr(engines.Engine, "__init__", lambda self, *a, **k: (built.append(1), original(self, *a, **k)))
    again = gradcam_cli.measure_faithfulness(explainer, SCENES, explanations, steps=4, road=False)
    assert built == []  # no new engine: the explainer's compiled step judges
    for a, b in zip(expected, again):
        np.testing.assert_allclose(b.deletion_curve, a.deletion_curve, atol=1e-7)


def test_randomisation_keeps_the_trained_models_top1_for_a_none_in_the_list(model):
    explanations = gradcam_cli.Explainer(model, "gradcam")(SCENES[:2])
    mixed = gradcam_cli.randomisation_check(model, SCENES[:2], ["gradcam"], classes=[None, 2], max_steps=2)
    assert mixed.classes == (explanations[0].class_index, 2)
    by_hand = gradcam_cli.randomisation_check(model, SCENES[:2], ["gradcam"],
                                              classes=[explanations[0].class_index, 2], max_steps=2)
    assert mixed.table() == by_hand.table()
