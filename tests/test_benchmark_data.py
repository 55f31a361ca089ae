"""The docs' measured figures as data, and what make gallery draws from them.

- docs/data/benchmarks/*.json (benchmarks/results.py's format) hold exactly the figures of the
  tables in docs/benchmarks.md: each table row is parsed from the page and compared with its JSON
  row, so the page and the charts cannot drift apart.
- benchmarks/charts.py draws each file, and a file as bench.py writes it (one model, a Score-CAM
  row), into the same bytes twice; the committed charts are what the JSON files draw now.
- docs/data/method-figures.inc is figures_markdown of method-figures.json (nothing edited by
  hand), and the methods page includes every method's line and the table.
"""

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "data"
CHARTS = ROOT / "docs" / "images" / "gallery" / "benchmarks"
PAGE = (ROOT / "docs" / "benchmarks.md").read_text()
CHART_LIMIT = 80 * 1024  # bytes: a chart on the benchmarks page


def module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


@pytest.fixture(scope="module")
def bench():
    """benchmarks/results.py and benchmarks/charts.py, imported as gallery.py imports them."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import charts
        import results

        yield results, charts
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def table(header):
    """The rows (lists of cell texts) of the page's table whose header line starts with `header`."""
    lines = PAGE.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def number(text):
    return float(text.replace(",", ""))


def with_rounds(text):
    """'0.94 (0.97, 0.93, 0.94)' -> (0.94, [0.97, 0.93, 0.94])."""
    found = re.fullmatch(r"([\d.]+) \(([\d., ]+)\)", text)
    assert found, text
    return number(found[1]), [number(v) for v in found[2].split(", ")]


def test_the_throughput_file_holds_the_tables_figures(bench):
    results, _ = bench
    record = results.read(DATA / "benchmarks" / "throughput.json", "bench.py")
    rows = table("| model | batch | floor img/s")
    assert len(rows) == len(record["throughput"]) == 6
    for cells, row in zip(rows, record["throughput"]):
        ratio, rounds = with_rounds(cells[4])
        assert (cells[0].lower(), int(cells[1])) == (row["model"], row["batch"])
        assert [number(cells[2]), number(cells[3]), ratio, rounds, number(cells[5]), number(cells[6])] == [
            row["floor_img_s"], row["pipeline_img_s"], row["pipeline_per_floor"], row["pipeline_per_floor_rounds"],
            row["tf_keras_vis_img_s"], row["pipeline_per_tf_keras_vis"]]
    assert record["command"] == "make bench" and "`make bench`" in PAGE


def test_the_methods_file_holds_the_tables_figures(bench):
    results, _ = bench
    record = results.read(DATA / "benchmarks" / "methods.json", "bench.py")
    assert f"`{record['command']}`" in " ".join(PAGE.split())  # the command as the page names it
    found = {(row["model"], row["method"]): row for row in record["methods"]}
    rows = table("| method | ResNet50 img/s")
    assert len(found) == 2 * len(rows) == 36
    for cells in rows:
        method = cells[0].strip("`")
        for model, rate, ratio in (("resnet50", cells[1], cells[2]), ("vgg16", cells[3], cells[4])):
            row = found[(model, method)]
            if method == "scorecam":
                seconds, masks = re.match(r"([\d.]+) s an image \(([\d,]+) masks", rate).groups()
                assert (row["s_per_image"], row["masks"]) == (number(seconds), number(masks))
                continue
            assert row["img_s"] == number(rate), (model, method)
            if ratio == "1":
                assert row["time_per_gradcam"] == 1
            elif ratio.endswith("(one round)"):
                assert row["time_per_gradcam_rounds"] == [row["time_per_gradcam"]] == [number(ratio.split()[0])]
            else:
                assert (row["time_per_gradcam"], row["time_per_gradcam_rounds"]) == with_rounds(ratio)


def test_the_volume_file_holds_the_tables_figures(bench):
    results, _ = bench
    record = results.read(DATA / "benchmarks" / "volume.json", "bench_volume.py")
    rows = table("| Grad-CAM, 128 x 128 x 64")
    assert [r["library"] for r in record["libraries"]] == [cells[0] for cells in rows]
    for cells, row in zip(rows, record["libraries"]):
        assert [number(c) for c in cells[1:4]] + [number(cells[4].removesuffix(" MiB"))] == [
            row["per_volume_s"], row["first_call_s"], row["process_s"], row["peak_rss_mib"]]
    assert record["volume"] == [128, 128, 64]


def test_a_results_file_of_another_format_is_refused(bench, tmp_path):
    results, _ = bench
    path = results.write(tmp_path / "r.json", {"benchmark": "bench.py", "format": 1, "methods": []})
    assert json.loads(path.read_text())["methods"] == []
    with pytest.raises(ValueError, match="not a bench_volume.py results file"):
        results.read(path, "bench_volume.py")


def test_the_committed_files_are_written_as_results_writes_them(bench):
    """One row a line: the committed files are results.dumps of themselves."""
    results, _ = bench
    for path in sorted((DATA / "benchmarks").glob("*.json")):
        assert path.read_text() == results.dumps(json.loads(path.read_text())), path


def test_a_bench_py_file_draws_the_same_bytes_twice(bench, tmp_path):
    """A file as bench.py writes it (one model, a Score-CAM row timed on one image, a method timed
    once): the methods chart's Score-CAM bar is its seconds times Grad-CAM's images/s."""
    results, charts = bench
    gallery = module("gallery_for_charts", ROOT / "scripts" / "gallery.py")
    record = {"benchmark": "bench.py", "format": 1, "command": "python benchmarks/bench.py", "machine": "m",
              "date": "2026-01-01", "methods": [
                  {"model": "resnet50", "method": "gradcam", "img_s": 20.0, "time_per_gradcam": 1,
                   "time_per_gradcam_rounds": [1]},
                  {"model": "resnet50", "method": "scorecam", "s_per_image": 3.0, "masks": 8},
                  {"model": "resnet50", "method": "smoothgrad", "img_s": 0.2, "time_per_gradcam": 100.0,
                   "time_per_gradcam_rounds": [100.0]}]}
    assert charts.method_ratio(record["methods"][1], record["methods"][0]) == pytest.approx(60.0)
    with gallery.plt.rc_context(gallery.STYLE):
        written = [gallery.save_png(charts.methods(record), tmp_path / f"{k}.png", 64).read_bytes() for k in (1, 2)]
    assert written[0] == written[1]
    with Image.open(tmp_path / "1.png") as picture:
        assert picture.mode == "P" and picture.width == 720


def test_the_committed_charts_are_what_the_files_draw(bench, tmp_path):
    gallery = module("gallery_for_charts", ROOT / "scripts" / "gallery.py")
    with gallery.plt.rc_context(gallery.STYLE):  # as make gallery draws them
        made = gallery.benchmark_charts(tmp_path)
    assert [p.name for p in made] == [f"{name}.png" for name in gallery.CHARTS]
    for path in made:
        committed = CHARTS / path.name
        assert committed.stat().st_size < CHART_LIMIT, committed
        with Image.open(path) as a, Image.open(committed) as b:
            assert a.size == b.size, path.name
            difference = np.abs(np.asarray(a.convert("RGB"), np.int16) - np.asarray(b.convert("RGB"), np.int16))
        assert difference.mean() < 1.0, path.name  # glyphs may differ a little across FreeType releases
        assert f"images/gallery/benchmarks/{path.name}" in PAGE


def test_the_method_figures_fragment_is_written_from_its_json_and_included():
    from gradcam_cli.explain.methods import METHODS

    gallery = module("gallery_for_figures", ROOT / "scripts" / "gallery.py")
    record = json.loads((DATA / "method-figures.json").read_text())
    fragment = (DATA / "method-figures.inc").read_text()
    assert fragment == gallery.figures_markdown(record)
    measured = {name for found in record["models"].values() for name in found["methods"]}
    assert measured == set(METHODS)
    page = (ROOT / "docs" / "using-methods.md").read_text()
    for name in METHODS:
        assert f":start-after: <!-- figures:{name} -->\n:end-before: <!-- /figures:{name} -->" in page, name
    assert ":start-after: <!-- figures-table -->" in page and "## Every method's figures" in page
    figures = record["models"]["demo-gap"]
    assert figures["methods"]["gradcam"]["pointing"] > figures["chance"]["pointing"]
    assert record["scenes"] == gallery.SCENES and f"on {gallery.SCENES} generated scenes" in page


MODEL_NAMES = {"resnet50": "ResNet50", "vgg16": "VGG16 (block5_conv3)"}


def latency_cells(row, side):
    """'4.40 s, 883 MiB' for a side of a bench_latency.py row."""
    return f"{row[side]['median_s']:.2f} s, {row[side]['peak_rss_mib']:,} MiB"


def test_the_latency_file_holds_the_tables_figures(bench):
    """Each row of bench_latency.py's file (and the warm server's, for one image) is a row of the page's
    whole-process table, in order; each phase of the phase table is the file's."""
    results, _ = bench
    record = results.read(DATA / "benchmarks" / "latency.json", "bench_latency.py")
    expected = []
    for row in record["latency"]:
        case = "one image" if row["case"] == "one image" else f"{row['images']} photos, batch {row['batch']}"
        rounds = ", ".join(f"{r:.2f}" for r in row["ratio_rounds"])
        expected.append([f"{MODEL_NAMES[row['model']]}, {case}", latency_cells(row, "gradcam"),
                         latency_cells(row, "pytorch-grad-cam"), f"{row['ratio']:.2f} ({rounds})"])
        if "gradcam --server" in row:
            rounds = ", ".join(f"{r:.2f}" for r in row["server_ratio_rounds"])
            expected.append([f"{MODEL_NAMES[row['model']]}, one image, warm `gradcam --server`",
                             latency_cells(row, "gradcam --server"), latency_cells(row, "pytorch-grad-cam"),
                             f"{row['server_ratio']:.2f} ({rounds})"])
    assert table("| Grad-CAM, whole process") == expected
    phases = table("| one image, seconds")
    labels = ["interpreter start", "imports", "model built", "first map (decode, step, write)", "exit", "whole process"]
    keys = ["start", "import", "build", "first_batch", "exit", "total"]
    floors = {"import": "import", "build": "build", "first_batch": "first_step"}
    assert [cells[0] for cells in phases] == labels
    for cells, key in zip(phases, keys):
        values = []
        for row in record["phases"]:
            floor = row["floor"].get(floors.get(key, ""))
            values += [f"{row['gradcam'][key]:.2f}", f"{row['pytorch-grad-cam'][key]:.2f}",
                       "" if floor is None else f"{floor:.2f}"]
        assert cells[1:] == values, key
