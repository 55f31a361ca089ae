"""`gradcam eval` as a CI gate: --fail-under (one line per figure short, exit 1), objects from a
COCO-style boxes file (--boxes), and one line for each image whose mask or box cannot be used
while the others are measured."""

import json

import numpy as np
import pytest
from conftest import invoke_cli
from PIL import Image

from gradcam_cli.errors import GradcamError, ImageError
from gradcam_cli.evaluate import annotations, gate
from gradcam_cli.evaluate import scenes as scene_maker


def coco(tmp_path, entries):
    """A COCO-style file: entries [(file_name, [[x, y, w, h], ...])]."""
    data = {"images": [{"id": i, "file_name": name} for i, (name, _) in enumerate(entries)],
            "annotations": [{"id": 10 * i + j, "image_id": i, "bbox": box, "category_id": 1}
                            for i, (_, boxes) in enumerate(entries) for j, box in enumerate(boxes)]}
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(data))
    return path


def test_boxes_are_read_and_make_an_object_by_hand(tmp_path):
    path = coco(tmp_path, [("a.png", [[2, 3, 4, 2], [10, 1, 2, 2]]), ("sub/b.png", [])])
    boxes = annotations.read_boxes(path)
    assert boxes == {"a.png": [(2.0, 3.0, 6.0, 5.0), (10.0, 1.0, 12.0, 3.0)], "sub/b.png": []}
    obj = annotations.boxes_object(tmp_path / "in" / "a.png", (8, 16, 3), boxes)
    expected = np.zeros((8, 16), bool)
    expected[3:5, 2:6] = True
    expected[1:3, 10:12] = True
    np.testing.assert_array_equal(obj.mask, expected)
    assert obj.box == (2, 1, 12, 5)  # around both boxes
    with pytest.raises(ImageError, match="no box for it"):
        annotations.boxes_object(tmp_path / "sub" / "b.png", (8, 16, 3), boxes)  # listed, but no box
    with pytest.raises(ImageError, match="no box for it"):
        annotations.boxes_object(tmp_path / "c.png", (8, 16, 3), boxes)
    with pytest.raises(ImageError, match="outside the 4x4 image"):
        annotations.boxes_object(tmp_path / "a.png", (4, 4, 3), boxes)


@pytest.mark.parametrize("text, message", [
    ("{", "not COCO-style JSON"),
    ('{"images": []}', "not COCO-style JSON"),
    ('{"images": [{"id": 0, "file_name": "a.png"}], "annotations": [{"image_id": 0, "bbox": [0, 0, 0, 3]}]}',
     "empty bbox"),
])
def test_bad_boxes_files_are_refused_in_one_line(tmp_path, text, message):
    path = tmp_path / "boxes.json"
    path.write_text(text)
    with pytest.raises(GradcamError, match=message) as info:
        annotations.read_boxes(path)
    assert "\n" not in str(info.value)


def test_thresholds_and_shortfalls_by_hand():
    assert gate.parse_thresholds("pointing=0.8, energy=0.3,iou50=0.1") == {
        "pointing": 0.8, "energy_in_box": 0.3, "localized_iou50": 0.1}
    report = {"methods": {"gradcam": {"pointing": 0.9, "energy_in_box": 0.2, "discrimination": None},
                          "guided": {"pointing": 0.7, "energy_in_box": 0.5, "discrimination": None}}}
    assert gate.shortfalls(report, {"pointing": 0.8, "energy_in_box": 0.3}) == [
        "gradcam: energy_in_box 0.200 < 0.3", "guided: pointing 0.700 < 0.8"]
    assert gate.shortfalls(report, {"discrimination": 0.5}) == [
        "gradcam: discrimination not measured (needed >= 0.5)", "guided: discrimination not measured (needed >= 0.5)"]
    with pytest.raises(GradcamError, match="no figure 'insertion'"):
        gate.shortfalls(report, {"insertion": 0.5})
    for bad in ("pointing", "pointing=high", ""):
        with pytest.raises(GradcamError, match="FIGURE=NUMBER"):
            gate.parse_thresholds(bad)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Four generated scenes as files, with a COCO file of their boxes (one scene left out, one
    given a box outside its image), and masks beside two of them."""
    folder = tmp_path_factory.mktemp("scenes")
    entries = []
    for i in range(4):
        scene = scene_maker.generate(i, 1, 64)
        Image.fromarray(scene.image).save(folder / f"s{i}.png")
        x0, y0, x1, y1 = scene.objects[0].box
        if i == 2:
            continue  # not in the boxes file
        entries.append((f"s{i}.png", [[x0, y0, x1 - x0, y1 - y0]] if i != 3 else [[60, 60, 20, 20]]))
        if i < 2:
            Image.fromarray((scene.objects[0].mask * 255).astype(np.uint8)).save(folder / f"s{i}.mask.png")
    return folder, coco(folder, entries)


def test_eval_with_boxes_measures_the_usable_images_and_names_the_others(scenes):
    folder, boxes = scenes
    result = invoke_cli("eval", folder, "--model", "demo-gap", "--boxes", boxes, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images"] == 2 and report["skipped"] == 2
    assert sorted(path.rsplit("/", 1)[-1] for path in report["inputs"]) == ["s0.png", "s1.png"]
    lines = [line for line in result.stderr.splitlines() if line.startswith("skipped")]
    assert len(lines) == 2
    assert any("s2.png: no box for it in the boxes file" in line for line in lines)
    assert any("s3.png: box [60.0, 60.0, 20.0, 20.0] lies outside the 64x64 image" in line for line in lines)
    assert 0 <= report["methods"]["gradcam"]["pointing"] <= 1


def test_fail_under_gates_the_exit_status(scenes):
    folder, _ = scenes
    passing = invoke_cli("eval", folder, "--model", "demo-gap", "--fail-under", "pointing=0.0")
    assert passing.returncode == 0, passing.stderr
    failing = invoke_cli("eval", folder, "--model", "demo-gap", "--methods", "gradcam,randomcam", "--json",
                         "--fail-under", "pointing=1.01,energy=1.01")
    assert failing.returncode == 1
    fails = [line for line in failing.stderr.splitlines() if line.startswith("fail: ")]
    assert len(fails) == 4  # two methods x two figures
    report = json.loads(failing.stdout)
    assert report["failed"] == [line[len("fail: "):] for line in fails]
    assert "fail: gradcam: pointing" in failing.stderr and "fail: randomcam: energy_in_box" in failing.stderr
    unknown = invoke_cli("eval", folder, "--model", "demo-gap", "--fail-under", "insertion=0.5")
    assert unknown.returncode == 2 and "no figure 'insertion'" in unknown.stderr
    refused = invoke_cli("eval", "--model", "demo-gap", "--boxes", folder / "boxes.json")
    assert refused.returncode == 2 and "--boxes applies to your images" in refused.stderr
