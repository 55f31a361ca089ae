"""The HTML report (gradcam_cli.report, `gradcam report`): records in, page and thumbnails out.

Runs are built by hand here (pictures written with Pillow, records as the commands print them),
so these tests need no model; one test at the end runs the real `gradcam` command first.
tests/test_report_browser.py opens the pages in a headless Chromium.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import OFFLINE_ENV, invoke_cli, run_cli
from PIL import Image

from gradcam_cli.files import outputs
from gradcam_cli.report import ReportError, Written, kind_of, read_results, write_report
from gradcam_cli.report.page import embed_json

HOSTILE_NAME = "<img src=x onerror=window.__pwned=1>.png"
HOSTILE_LABEL = "</script><script>window.__pwned=2</script>\u2028&amp;"


def picture(path, size=(64, 48), seed=0):
    """A noisy RGB picture (PNG or JPEG by the suffix) of `size` (width, height)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def map_record(out, name, label, klass, score, empty=False, method="gradcam", kinds=("heatmap", "overlay"),
               size=(64, 48), seed=0):
    """A map's entry as pipeline.render_map writes it, its pictures written into `out`."""
    files = {kind: str(picture(out / f"{name}.{method}.class{klass}.{kind}.png", size, seed + i))
             for i, kind in enumerate(kinds)}
    return {"class": klass, "label": label, "score": score, "probability": 0.5, "outputs": files,
            "stats": {"empty": empty, "raw_max": 0.0 if empty else 0.5, "raw_mean": 0.1, "resolution": [4, 4],
                      "mean": 0.0 if empty else 0.25, "area_above_half": 0.0 if empty else 0.125,
                      "peak": [10, 20], "box": [0, 0, 32, 24]}}


def image_record(source, maps, method="gradcam", size=(64, 48)):
    predictions = [{"class": k, "label": f"class {k}", "probability": round(1 / (k + 2), 6)} for k in range(7)]
    return {"input": str(source), "model": "demo-gap", "method": method, "layer": "block3_conv2",
            "precision": "float32", "output": "predictions", "channels": "rgb", "image_size": list(size),
            "predictions": predictions, "maps": maps, "seconds": 0.01}


def make_run(folder, count=6, zero=(4,), hostile=True, size=(64, 48)):
    """Records of a run on `count` images in folder/images (image 1 with two maps, those in
    `zero` all-zero), outputs in folder/out; with `hostile`, one image named HOSTILE_NAME
    whose map's label is HOSTILE_LABEL. Returns the records, a failure's last."""
    images, out = folder / "images", folder / "out"
    records = []
    for i in range(count):
        name = HOSTILE_NAME if hostile and i == count - 1 else f"img{i}.png"
        source = picture(images / name, size, seed=100 + i)
        label = HOSTILE_LABEL if hostile and i == count - 1 else f"class {i % 3}"
        maps = [map_record(out, name, label, i % 3, score=float((i * 7) % 5) - 1.5, empty=i in zero, size=size,
                           seed=10 * i)]
        if i == 1:
            maps.append(map_record(out, name, "class 2", 2, score=-3.25, size=size, seed=999))
        records.append(image_record(source, maps, size=size))
    records.append({"input": str(images / "broken.png"), "error": "cannot decode: not an image file"})
    return records


def page_data(index):
    """The JSON embedded in a report page, parsed."""
    text = Path(index).read_text(encoding="utf-8")
    block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S).group(1)
    return json.loads(block)


# --- the page's text: escaping and the embedded data -----------------------------------------


def test_embed_json_escapes_what_could_end_the_block():
    data = {"name": "</script><!-- <b>&amp;", "line": "a\u2028b\u2029c", "other": "é☃"}
    text = embed_json(data)
    for raw in ("<", ">", "&", "\u2028", "\u2029", "é"):
        assert raw not in text
    assert json.loads(text) == data


def test_hostile_names_stay_data(tmp_path):
    records = make_run(tmp_path, count=3)
    index = write_report(records, tmp_path / "report").index
    text = index.read_text(encoding="utf-8")
    assert "window.__pwned" in text  # in the data, escaped...
    assert HOSTILE_NAME not in text and "<script>window" not in text  # ...never as markup
    assert len(re.findall(r"<script\b", text)) == 2 and "onerror" not in text.split('id="report-data">')[0]
    data = page_data(index)
    assert data["images"][-1]["name"] == str(tmp_path / "images" / HOSTILE_NAME)
    assert data["images"][-1]["maps"][0]["label"] == HOSTILE_LABEL
    assert data["images"][-1]["src"].endswith("%3Cimg%20src%3Dx%20onerror%3Dwindow.__pwned%3D1%3E.png")


def test_title_is_escaped_and_the_policy_allows_only_the_page_script(tmp_path):
    import base64
    import hashlib

    index = write_report(make_run(tmp_path, count=2), tmp_path / "r", title="<b>run & co</b>").index
    text = index.read_text(encoding="utf-8")
    assert "<title>&lt;b&gt;run &amp; co&lt;/b&gt;</title>" in text
    assert page_data(index)["title"] == "<b>run & co</b>"
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text).group(1)
    script = re.search(r'<script id="report-app">(.*?)</script>', text, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}';" in policy and "default-src 'none'" in policy
    assert "unsafe-inline" not in policy and "http" not in policy


def test_no_external_resources(tmp_path):
    text = write_report(make_run(tmp_path, count=2), tmp_path / "r").index.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert "@import" not in text and "url(" not in text and "fetch(" not in text


# --- counts, thumbnails, files ---------------------------------------------------------------


def test_counts(tmp_path):
    records = make_run(tmp_path, count=5)
    written = write_report(records, tmp_path / "report")
    assert isinstance(written, Written)
    assert (written.images, written.maps, written.failures, written.compare, written.eval) == (5, 6, 1, 0, 0)
    assert (written.missing, written.skipped, written.thumbnails) == (0, 0, 6)
    data = page_data(written.index)
    assert [len(image["maps"]) for image in data["images"]] == [1, 2, 1, 1, 1]
    assert data["failures"] == [{"name": records[-1]["input"], "reason": "cannot decode: not an image file"}]
    assert len(data["images"][0]["predictions"]) == 5  # the top 5 of 7
    assert data["images"][4]["maps"][0]["stats"]["empty"] is True
    assert data["runs"] == [{"model": "demo-gap", "method": "gradcam", "layer": "block3_conv2",
                             "details": {"precision": "float32", "output": "predictions", "channels": "rgb"}}]
    assert {image["run"] for image in data["images"]} == {0}


@pytest.mark.parametrize("size, thumbnail_size, expected", [
    ((600, 400), 160, (160, 107)),
    ((300, 900), 160, (53, 160)),
    ((100, 50), 160, (100, 50)),  # never enlarged
    ((600, 400), 64, (64, 43)),
])
def test_thumbnails_are_small_jpegs(tmp_path, size, thumbnail_size, expected):
    records = make_run(tmp_path, count=2, hostile=False, size=size)[:-1]
    written = write_report(records, tmp_path / "report", thumbnail_size=thumbnail_size)
    thumbs = sorted((tmp_path / "report" / "thumbs").iterdir())
    assert len(thumbs) == written.maps == 3
    for thumb in thumbs:
        with Image.open(thumb) as image:
            assert image.format == "JPEG" and image.size == expected
        assert thumb.stat().st_size < 20_000  # noise, the worst case for JPEG
    cards = [m for image in page_data(written.index)["images"] for m in image["maps"]]
    assert sorted(f"thumbs/{t.name}" for t in thumbs) == sorted(m["thumb"] for m in cards)


def test_thumbnail_comes_from_the_overlay(tmp_path):
    out = tmp_path / "out"
    source = picture(tmp_path / "a.png", (64, 48))
    entry = map_record(out, "a.png", "x", 0, 1.0)
    Image.new("RGB", (64, 48), (255, 0, 0)).save(entry["outputs"]["overlay"])
    write_report([image_record(source, [entry])], tmp_path / "r")
    (thumb,) = (tmp_path / "r" / "thumbs").iterdir()
    red = np.asarray(Image.open(thumb)).reshape(-1, 3).mean(axis=0)
    assert red[0] > 240 and red[1] < 15 and red[2] < 15


def test_thumbnails_reused_and_stale_ones_removed(tmp_path):
    records = make_run(tmp_path, count=4, hostile=False)
    report = tmp_path / "report"
    assert write_report(records, report).thumbnails == 5
    (report / "thumbs" / "notes.txt").write_text("mine")
    again = write_report(records, report)
    assert again.thumbnails == 0 and again.maps == 5
    fewer = write_report(records[:1], report)
    assert fewer.thumbnails == 0
    assert sorted(p.name for p in (report / "thumbs").iterdir()) == sorted(
        [page_data(fewer.index)["images"][0]["maps"][0]["thumb"].split("/")[1], "notes.txt"])


def test_paths_relative_to_base_and_quoted(tmp_path):
    run = tmp_path / "run"
    source = picture(run / "photos" / "a #1 ?%.png")
    entry = map_record(run / "out", "a #1 ?%.png", "x", 0, 1.0)
    entry["outputs"] = {kind: os.path.relpath(path, run) for kind, path in entry["outputs"].items()}
    record = image_record(os.path.relpath(source, run), [entry])
    report = tmp_path / "reports" / "r1"
    data = page_data(write_report([record], report, base_dir=run).index)
    image = data["images"][0]
    assert image["name"] == "photos/a #1 ?%.png"  # as recorded
    assert image["src"] == "../../run/photos/a%20%231%20%3F%25.png"
    from urllib.parse import unquote

    for href in [image["src"], *image["maps"][0]["files"].values()]:
        assert (report / unquote(href)).resolve().is_file()
    assert image["notes"] == [] and image["maps"][0]["missing"] == []
    # From another folder, the same relative records name nothing.
    elsewhere = page_data(write_report([record], tmp_path / "r2", base_dir=tmp_path).index)["images"][0]
    assert elsewhere["src"] is None and elsewhere["maps"][0]["thumb"] is None


def test_missing_files_said_on_the_card(tmp_path):
    records = make_run(tmp_path, count=3, hostile=False)
    first, second = records[0], records[1]
    Path(first["input"]).unlink()
    Path(first["maps"][0]["outputs"]["overlay"]).unlink()
    for kind in ("heatmap", "overlay"):
        Path(second["maps"][0]["outputs"][kind]).unlink()
    written = write_report(records, tmp_path / "report")
    assert (written.maps, written.missing) == (4, 2)
    images = page_data(written.index)["images"]
    assert images[0]["src"] is None and images[0]["notes"] == [f"original image missing: {first['input']}"]
    assert images[0]["maps"][0]["missing"] == ["overlay"] and images[0]["maps"][0]["thumb"]  # from the heatmap
    assert images[0]["maps"][0]["notes"] == ["missing: overlay"]
    assert images[1]["maps"][0]["files"] == {} and images[1]["maps"][0]["thumb"].startswith("thumbs/")  # original
    assert images[1]["maps"][1]["missing"] == []
    assert images[2]["notes"] == [] and images[2]["maps"][0]["notes"] == []


def test_unreadable_picture_noted(tmp_path):
    records = make_run(tmp_path, count=2, hostile=False)
    overlay = Path(records[0]["maps"][0]["outputs"]["overlay"])
    overlay.write_bytes(b"not a png")
    written = write_report(records, tmp_path / "report")
    card = page_data(written.index)["images"][0]["maps"][0]
    assert card["thumb"] is None and card["notes"][0].startswith(f"cannot read {overlay.name}")
    assert written.maps == 3


def test_failures_and_rejected_images_listed(tmp_path):
    rejected = image_record(tmp_path / "x.png", [])
    rejected["error"] = "the model's output is not finite (4 of 4 class scores are inf or NaN): no map written"
    records = [{"input": "a.png", "error": "no such file or folder"}, rejected]
    written = write_report(records, tmp_path / "report")
    assert (written.images, written.maps, written.failures) == (0, 0, 2)
    assert [f["reason"] for f in page_data(written.index)["failures"]] == [records[0]["error"], rejected["error"]]


def test_guided_outputs_and_raw_arrays(tmp_path):
    source = picture(tmp_path / "a.png")
    entry = map_record(tmp_path / "out", "a.png", "x", 0, 1.0, method="guided",
                       kinds=("heatmap", "overlay", "gradient", "gradcam-gray"))
    entry["outputs"]["raw"] = str(tmp_path / "out" / "a.png.guided.raw.npy")
    entry["gradient"] = {"rms": 0.00123456789, "empty": False, "resolution": [64, 64]}
    data = page_data(write_report([image_record(source, [entry], method="guided")], tmp_path / "r").index)
    card = data["images"][0]["maps"][0]
    assert sorted(card["files"]) == ["gradcam-gray", "gradient", "heatmap", "overlay"]  # no .npy
    assert card["missing"] == [] and card["gradient"]["rms"] == 0.001235


def test_not_finite_numbers_become_null(tmp_path):
    records = make_run(tmp_path, count=1, hostile=False)[:1]
    records[0]["maps"][0]["score"] = float("nan")
    records[0]["maps"][0]["stats"]["raw_max"] = float("inf")
    card = page_data(write_report(records, tmp_path / "r").index)["images"][0]["maps"][0]
    assert card["score"] is None and card["stats"]["raw_max"] is None


def compare_record(input_name, figure, klass=0):
    cells = [{"method": m, "layer": "block3_conv2", "variant": None, "applicable": m != "cam", "model": "demo-gap",
              "score": 5.712904, "probability": 0.999025, "stats": {}} for m in ("gradcam", "cam")]
    return {"input": input_name, "image_size": [64, 48],
            "rows": [{"model": "demo-gap", "precision": "float32", "class": klass, "label": "circle", "cells": cells,
                      "rank_correlation": []}], "outputs": {"compare": str(figure)}}


def eval_record(folder):
    curves = picture(folder / "eval.curves.png", (120, 60))
    figures = {"pointing": 1.0, "energy_in_box": 0.457, "box_iou": 0.526, "localized_iou50": 0.5,
               "discrimination": 1.0, "accuracy": 1.0, "deletion_auc": 0.252, "insertion_auc": 0.9555,
               "fractions": [0.0, 1.0], "deletion_curve": [1.0, 0.25]}
    baseline = {"deletion_auc": 0.43, "insertion_auc": 0.907, "fractions": [0.0, 1.0]}
    return {"scenes": 8, "pairs": 4, "seed": 1, "methods": {"gradcam": figures}, "accuracy": 1.0,
            "chance": {"pointing": 0.25, "energy_in_box": 0.0768, "box_iou": 0.0768, "localized_iou50": 0.0,
                       "discrimination": 0.5},
            "threshold": 0.5, "model": "demo-gap", "layer": "block3_conv2",
            "measures": ["localization", "deletion", "randomisation"],
            "faithfulness": {"images": 8, "measures": ["deletion"], "steps": 20, "baseline": "zero",
                             "baselines": {"uniform": baseline}},
            "randomisation": {"steps": [{"name": "original", "layers": []}, {"name": "predictions", "layers": []}],
                              "methods": {"gradcam": [{"step": "original", "spearman": {"mean": 1.0}},
                                                      {"step": "predictions", "spearman": {"mean": 0.1787}}]}},
            "outputs": {"curves": str(curves), "randomisation": str(folder / "gone.png"),
                        "bars": str(picture(folder / "eval.bars.png", (100, 50)))}}


def test_compare_and_eval_sections(tmp_path):
    grid = picture(tmp_path / "c" / "grid.compare.png", (200, 80))
    single = picture(tmp_path / "c" / "b.png.compare.png", (200, 80))
    layered = compare_record("b.png", single)
    layered["outputs"]["layers"] = str(picture(tmp_path / "c" / "b.png.layers.png", (150, 60)))
    records = [compare_record("a.png", grid), compare_record("c.png", grid, klass=1), layered,
               eval_record(tmp_path / "e")]
    written = write_report(records, tmp_path / "report")
    assert (written.maps, written.compare, written.eval, written.missing) == (0, 2, 1, 1)
    data = page_data(written.index)
    first = data["compare"][0]
    assert first["figure"] == "../c/grid.compare.png" and [i["name"] for i in first["images"]] == ["a.png", "c.png"]
    cells = first["images"][0]["rows"][0]["cells"]
    assert [c["heading"] for c in cells] == ["gradcam block3_conv2", "cam block3_conv2"]
    assert [c["applicable"] for c in cells] == [True, False]
    (report,) = data["eval"]
    assert report["title"] == "demo-gap, layer block3_conv2: 8 generated scenes (seed 1)"
    localization, faithfulness, randomisation = report["tables"]
    assert localization["columns"] == ["method", "pointing", "energy in box", "box IoU", "IoU>=0.5",
                                       "class discrimination", "accuracy"]
    assert localization["rows"] == [["gradcam", "1.000", "0.457", "0.526", "0.500", "1.000", "1.000"],
                                    ["chance", "0.250", "0.077", "0.077", "0.000", "0.500", "-"]]
    assert faithfulness["columns"] == ["method", "deletion AUC (lower better)", "insertion AUC (higher better)"]
    assert faithfulness["rows"] == [["gradcam", "0.252", "0.956"], ["uniform (baseline)", "0.430", "0.907"]]
    assert randomisation["rows"] == [["original", "1.000"], ["predictions", "0.179"]]
    assert report["figures"][0] == {"title": "deletion and insertion curves", "src": "../e/eval.curves.png",
                                    "note": None}
    assert report["figures"][1]["src"] is None and "gone.png" in report["figures"][1]["note"]
    assert report["figures"][2]["src"] == "../e/eval.bars.png" and "chance and baselines" in report["figures"][2]["title"]
    assert first["layers"] is None and data["compare"][1]["layers"]["src"] == "../c/b.png.layers.png"
    # a layers plot named by a record but gone: a note, and counted missing
    gone = compare_record("d.png", single)
    gone["outputs"]["layers"] = str(tmp_path / "c" / "d.png.layers.png")
    again = write_report([gone], tmp_path / "report2")
    assert again.missing == 1 and "d.png.layers.png" in page_data(again.index)["compare"][0]["layers"]["note"]


def test_unknown_records_are_counted(tmp_path):
    written = write_report([{"hello": 1}, 3, *make_run(tmp_path, count=1, hostile=False)], tmp_path / "r")
    assert (written.skipped, written.maps, written.failures) == (2, 1, 1)


def test_an_empty_report_is_a_page(tmp_path):
    written = write_report([], tmp_path / "r")
    assert written.index.is_file() and page_data(written.index)["images"] == []


@pytest.mark.parametrize("kwargs, message", [
    ({"thumbnail_size": 0}, "thumbnail size is a number of pixels from 32 to 1024. Received: thumbnail_size=0"),
    ({"thumbnail_size": 5000}, "Received: thumbnail_size=5000"),
    ({"thumbnail_size": "160"}, "Received: thumbnail_size='160'"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ReportError, match=re.escape(message)):
        write_report([], tmp_path / "r", **kwargs)


def test_report_folder_that_is_a_file(tmp_path):
    (tmp_path / "r").write_text("x")
    with pytest.raises(ReportError, match="the report folder is a file"):
        write_report([], tmp_path / "r")
    assert isinstance(ReportError("x"), ValueError)


# --- atomic writes ---------------------------------------------------------------------------


def test_index_written_atomically(tmp_path, monkeypatch):
    records = make_run(tmp_path, count=2, hostile=False)
    report = tmp_path / "report"
    index = write_report(records, report).index
    before = index.read_bytes()

    def interrupted(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs.os, "replace", interrupted)
    with pytest.raises(OSError, match="No space left"):
        write_report(records + records, report, title="second")
    assert index.read_bytes() == before  # the old page, whole
    leftovers = [p.name for p in report.rglob("*") if p.name.endswith(".part")]
    assert leftovers == []


def test_page_written_after_the_thumbnails(tmp_path, monkeypatch):
    import gradcam_cli.report as report_module

    def broken(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(report_module, "make_thumbnails", broken)
    with pytest.raises(OSError):
        write_report(make_run(tmp_path, count=1, hostile=False), tmp_path / "r")
    assert not (tmp_path / "r" / "index.html").exists()


# --- reading results files -------------------------------------------------------------------


def test_read_results_reports_bad_lines(tmp_path):
    good = {"input": "a.png", "error": "no such file"}
    path = tmp_path / "results.jsonl"
    path.write_bytes(b"\n".join([
        json.dumps(good).encode(),
        b"",
        b"{not json",
        b"[1, 2]",
        json.dumps({"hello": "world"}).encode(),
        b'{"input": "\xff\xfe", "error": "x"}',
        b"   ",
        json.dumps(dict(good, input="b.png")).encode(),
    ]) + b"\n")
    bad = []
    records = list(read_results(path, lambda where, reason: bad.append((where, reason))))
    assert [r["input"] for r in records] == ["a.png", "b.png"]
    assert [where for where, _ in bad] == [f"{path}:3", f"{path}:4", f"{path}:5", f"{path}:6"]
    assert bad[0][1].startswith("not JSON (") and bad[3][1] == "not UTF-8 text"
    assert bad[1][1].startswith("not a gradcam record")


def test_read_results_from_streams(tmp_path):
    import io

    lines = "\ufeff" + json.dumps({"input": "a", "error": "e"}) + "\n"
    assert len(list(read_results([io.BytesIO(lines.encode()), io.StringIO(lines)]))) == 2


@pytest.mark.parametrize("record, kind", [
    ({"input": "a", "maps": []}, "image"),
    ({"input": "a", "error": "e"}, "failure"),
    ({"input": "a", "error": "e", "maps": []}, "failure"),
    ({"input": "a", "rows": []}, "compare"),
    ({"methods": {}, "measures": ["deletion"], "images": 3}, "eval"),
    ({"input": "a"}, None),
    ({"maps": []}, None),
    ([], None),
    ("a", None),
])
def test_kind_of(record, kind):
    assert kind_of(record) == kind


# --- the command -----------------------------------------------------------------------------


def write_results(path, records, extra_lines=()):
    path.write_text("".join(outputs.json_line(r) + "\n" for r in records) + "".join(extra_lines))
    return path


def test_command(tmp_path):
    results = write_results(tmp_path / "results.jsonl", make_run(tmp_path, count=3))
    result = invoke_cli("report", results, "-o", tmp_path / "report")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "report" / "index.html")
    assert result.stderr.strip() == "report: 4 map(s) of 3 image(s), 1 failure(s); 4 thumbnail(s) written"


def test_command_relative_paths_from_base(tmp_path):
    run = tmp_path / "run"
    source = picture(run / "a.png")
    entry = map_record(run / "o", "a.png", "x", 0, 1.0)
    entry["outputs"] = {k: os.path.relpath(v, run) for k, v in entry["outputs"].items()}
    results = write_results(tmp_path / "results.jsonl", [image_record(os.path.relpath(source, run), [entry])])
    result = invoke_cli("report", results, "-o", tmp_path / "r", "--base", run, "-q")
    assert result.returncode == 0 and result.stderr == ""
    assert page_data(tmp_path / "r" / "index.html")["images"][0]["src"] == "../run/a.png"
    result = invoke_cli("report", results, "-o", tmp_path / "r2")  # from the wrong folder: said on the card
    assert result.returncode == 0 and "1 with a file missing" in result.stderr


def test_command_bad_lines_reported_and_skipped(tmp_path):
    results = write_results(tmp_path / "results.jsonl", make_run(tmp_path, count=2, hostile=False),
                            ["{oops\n", '{"neither": 1}\n'])
    result = invoke_cli("report", results, "-o", tmp_path / "report")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {results}:4: not JSON (Expecting property name enclosed in double quotes at " \
                       "column 2); line skipped"
    assert lines[1].startswith(f"error: {results}:5: not a gradcam record")
    assert lines[2] == "report: 3 map(s) of 2 image(s), 1 failure(s), 2 bad line(s) skipped; 3 thumbnail(s) written"
    assert (tmp_path / "report" / "index.html").is_file()


def test_command_reads_stdin_and_several_files(tmp_path):
    records = make_run(tmp_path, count=2, hostile=False)
    one = write_results(tmp_path / "one.jsonl", records[:1])
    result = invoke_cli("report", one, "-", "-o", tmp_path / "r", "-q",
                        stdin="".join(outputs.json_line(r) + "\n" for r in records[1:]))
    assert result.returncode == 0, result.stderr
    data = page_data(tmp_path / "r" / "index.html")
    assert len(data["images"]) == 2 and len(data["failures"]) == 1


@pytest.mark.parametrize("setup, args, message", [
    ("empty", [], "Error: no records in {results}"),
    ("file", ["-o", "{tmp}/taken"], "Directory '{tmp}/taken' is a file"),
    (None, ["{tmp}/nothing.jsonl"], "does not exist"),
    ("records", ["--thumbnail-size", "8"], "8 is not in the range 32<=x<=1024"),
])
def test_command_errors(tmp_path, setup, args, message):
    results = tmp_path / "results.jsonl"
    if setup == "empty":
        results.write_text("\n")
    else:
        write_results(results, make_run(tmp_path, count=1, hostile=False))
    (tmp_path / "taken").write_text("x")
    arguments = [a.format(tmp=tmp_path) for a in args]
    if not args or args[0].startswith("-"):
        arguments = [str(results), *arguments]
    if "-o" not in arguments:
        arguments += ["-o", str(tmp_path / "r")]
    result = invoke_cli("report", *arguments)
    assert result.returncode == 2
    assert message.format(tmp=tmp_path, results=results) in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ") and "Traceback" not in result.stderr


def test_command_needs_no_keras(tmp_path):
    """`gradcam report` imports neither TensorFlow nor Keras (a fresh interpreter)."""
    results = write_results(tmp_path / "results.jsonl", make_run(tmp_path, count=2))
    code = ("import sys\nfrom gradcam_cli.cli import main\n"
            f"try:\n    main(['report', {str(results)!r}, '-o', {str(tmp_path / 'r')!r}, '-q'])\n"
            "except SystemExit as exit:\n    assert exit.code == 0, exit.code\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'jax', 'torch'))\n"
            "print('heavy:', heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, **OFFLINE_ENV))
    assert result.returncode == 0, result.stderr
    assert "heavy: []" in result.stdout and (tmp_path / "r" / "index.html").is_file()


def test_module_help():
    result = subprocess.run([sys.executable, "-m", "gradcam_cli", "report", "--help"], capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, **OFFLINE_ENV))
    assert result.returncode == 0, result.stderr
    assert "Usage: python -m gradcam_cli report [OPTIONS] RESULTS.jsonl..." in result.stdout
    assert "--output-dir" in result.stdout and "--base DIR" in result.stdout


def test_console_script_help():
    result = run_cli("report", "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: gradcam report [OPTIONS] RESULTS.jsonl..." in result.stdout
    assert "report" in run_cli("--help").stdout


def test_real_run_then_report(tmp_path, keras):
    """`gradcam --json` on two sample scenes and a broken file, then `gradcam report` of its lines."""
    samples = Path(__file__).resolve().parent.parent / "sample_images"
    (tmp_path / "bad.png").write_bytes(b"not an image")
    run = invoke_cli(samples / "synthetic_circle.png", samples / "synthetic_square.png", tmp_path / "bad.png",
                     "--model", "demo-gap", "--top-k", "2", "-o", tmp_path / "out", "--json", "-q")
    assert run.returncode == 1  # the broken file
    results = tmp_path / "results.jsonl"
    results.write_text(run.stdout)
    result = invoke_cli("report", results, "-o", tmp_path / "report")
    assert result.returncode == 0, result.stderr
    assert "4 map(s) of 2 image(s), 1 failure(s)" in result.stderr
    data = page_data(tmp_path / "report" / "index.html")
    assert [m["label"] for m in data["images"][0]["maps"]][0] == "circle"
    assert all(m["thumb"] and set(m["files"]) == {"heatmap", "overlay"} for i in data["images"] for m in i["maps"])
    assert data["failures"][0]["name"] == str(tmp_path / "bad.png")
