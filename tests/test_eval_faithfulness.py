"""`gradcam eval --measures`: faithfulness figures (deletion/insertion, Average Drop, ROAD) beside
uniform, random and randomcam baselines, the curves figure, and the randomisation check."""

import json

import numpy as np
import pytest
from conftest import invoke_cli
from PIL import Image

from gradcam_cli.evaluate import faithfulness as F
from gradcam_cli.evaluate import faithfulness_report, localization, scenes


@pytest.fixture(scope="module")
def gap(keras):
    from gradcam_cli.models.loading import load

    return load("demo-gap")


def test_the_report_equals_faithfulness_evaluate_on_the_same_maps(gap):
    from gradcam_cli.files.images import model_view
    from gradcam_cli.models.preprocess import preprocess

    rgbs = [scenes.generate(i, 1, 64).image for i in range(4)]
    classes = [scenes.generate(i, 1, 64).objects[0].class_index for i in range(4)]
    explainers = localization.explainers_for(gap, ["gradcam"], batch_size=8)
    report = faithfulness_report.faithfulness_report(explainers, rgbs, classes, steps=5, seed=0)
    # by hand: the views, the maps (small_maps), the model's probabilities, faithfulness.evaluate
    explainer = explainers["gradcam"]
    engine = explainer.build().engine
    views = np.stack([model_view(rgb, gap.input_size)[0] for rgb in rgbs])
    inputs, _ = explainer.prepare(rgbs)
    maps = explainer.compute(inputs, np.array(classes)).small_maps
    probabilities = lambda rgb: engine.probabilities(preprocess(rgb, gap.preprocess))
    expected = F.summary(F.evaluate(views, maps, classes, probabilities, method="gradcam", steps=5, seed=0))["gradcam"]
    figures = report["methods"]["gradcam"]
    for key in ("deletion_auc", "insertion_auc", "average_drop_percent", "increase_in_confidence_percent"):
        assert figures[key] == pytest.approx(expected[key], abs=1e-6), key
    assert figures["road_morf"] == pytest.approx(expected["road_morf_mean"], abs=1e-6)
    assert figures["road_lerf"] == pytest.approx(expected["road_lerf_mean"], abs=1e-6)
    np.testing.assert_allclose(figures["deletion_curve"], expected["deletion_curve"], atol=1e-6)
    assert report["classes"] == classes
    assert set(report["baselines"]) == {"uniform", "random", "randomcam"}
    uniform = report["baselines"]["uniform"]
    assert uniform["average_drop_percent"] == 0.0 and uniform["increase_in_confidence_percent"] == 0.0  # X o 1 = X
    table = faithfulness_report.format_table(report)
    assert "randomcam (baseline)" in table and "ROAD MoRF" in table


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three generated scenes as files, no masks."""
    path = tmp_path_factory.mktemp("plain")
    for i in range(3):
        Image.fromarray(scenes.generate(i, 1, 64).image).save(path / f"s{i}.png")
    return path


def test_deletion_and_confidence_on_images_without_masks(folder, tmp_path):
    result = invoke_cli("eval", folder, "--model", "demo-gap", "--methods", "gradcam,guided", "--measures",
                        "deletion,confidence", "--steps", "5", "-o", tmp_path / "out", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images"] == 3
    png = tmp_path / "out" / "eval.curves.png"
    assert report["outputs"]["curves"] == str(png) and str(png) in result.stderr
    picture = np.asarray(Image.open(png).convert("RGB"))
    assert picture.std() > 10 and (picture != 255).any(axis=-1).mean() > 0.02  # lines and text, not blank
    assert picture.shape == (460, 1000, 3)  # charts.CURVES_SIZE at charts.DPI
    curves = faithfulness_report.render_curves({**report["faithfulness"], "methods": report["methods"]}, "demo-gap")
    assert np.array_equal(picture, curves)  # the record's curves, drawn again
    bars = tmp_path / "out" / "eval.bars.png"  # the AUCs as bars, beside the curves
    assert report["outputs"]["bars"] == str(bars) and str(bars) in result.stderr
    assert np.array_equal(np.asarray(Image.open(bars).convert("RGB")), faithfulness_report.render_bars(report,
                                                                                                     "demo-gap"))
    for method in ("gradcam", "guided"):
        figures = report["methods"][method]
        assert 0 <= figures["deletion_auc"] <= 1 and 0 <= figures["insertion_auc"] <= 1
        assert 0 <= figures["average_drop_percent"] <= 100
    assert set(report["faithfulness"]["baselines"]) == {"uniform", "random", "randomcam"}
    text = invoke_cli("eval", folder, "--model", "demo-gap", "--measures", "confidence,road", "-o", tmp_path / "o2")
    assert text.returncode == 0, text.stderr
    assert "ROAD LeRF" in text.stdout and "uniform (baseline)" in text.stdout and "pointing" not in text.stdout
    assert not (tmp_path / "o2" / "eval.curves.png").exists()
    assert not (tmp_path / "o2" / "eval.bars.png").exists()  # nothing of the chart's measures


def test_fail_under_on_insertion_names_every_method(folder, tmp_path):
    result = invoke_cli("eval", folder, "--model", "demo-gap", "--methods", "gradcam,randomcam", "--measures",
                        "deletion", "--steps", "5", "-o", tmp_path, "--fail-under", "insertion=1.01")
    assert result.returncode == 1
    fails = [line for line in result.stderr.splitlines() if line.startswith("fail: ")]
    assert len(fails) == 2 and all("insertion_auc" in line for line in fails)


def test_randomisation_on_generated_scenes_writes_its_figure(tmp_path):
    result = invoke_cli("eval", "--model", "demo-gap", "--methods", "gradcam", "--measures", "randomisation", "-n",
                        "4", "--pairs", "0", "-o", tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "eval.randomisation.png").is_file()
    assert "cascading randomisation (4 image(s)" in result.stdout and "original" in result.stdout


def test_a_bad_measure_is_refused_in_one_line():
    result = invoke_cli("eval", "--model", "demo-gap", "--measures", "deletion,faith")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--measures: choose from" in result.stderr
