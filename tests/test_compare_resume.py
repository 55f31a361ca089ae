"""`gradcam compare --skip-existing` (and `dilated --compare`'s): an image is skipped only when
its record file (NAME[.TAG].compare.record.json, written after its figure) matches its source
and the request and its figure exists; its stored record is emitted again in its place."""

import json

import pytest
from conftest import assert_records_close, invoke_cli
from PIL import Image

from gradcam_cli.evaluate import scenes


def scene(path, index):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(scenes.generate(index, seed=1).image).save(path)
    return path


def compare(*args):
    return invoke_cli("compare", *args, "--model", "demo-gap", "--json")


def lines(result):
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_different_image_of_the_same_name_is_drawn_not_skipped(tmp_path):
    first, second = scene(tmp_path / "a" / "x.png", 0), scene(tmp_path / "b" / "x.png", 3)
    out = tmp_path / "out"
    [drawn] = lines(compare(first, "--methods", "gradcam", "-o", out))
    figure = out / "x.png.compare.png"
    before = figure.read_bytes()
    again = compare(second, "--methods", "gradcam", "-o", out, "--skip-existing")
    [record] = lines(again)
    assert record["input"] == str(second) and "skipped" not in again.stderr
    assert figure.read_bytes() != before  # the second image's figure, not the first's
    stored = json.loads((out / "x.png.compare.record.json").read_text())
    assert stored["source"]["path"] == str(second.resolve()) and stored["record"] == record
    assert record["rows"][0]["class"] != drawn["rows"][0]["class"]  # scenes 0 and 3: other objects


@pytest.mark.parametrize("other", [["--methods", "gradcam,cam"], ["--alpha", "0.7"], ["--layers", "block2_conv2"],
                                   ["--colormap", "viridis"], ["--crop"]])
def test_another_request_is_drawn_again(tmp_path, other):
    image = scene(tmp_path / "in" / "x.png", 0)
    out = tmp_path / "out"
    [first] = lines(compare(image, "--methods", "gradcam", "-o", out))
    stored = (out / "x.png.compare.record.json").read_text()
    arguments = ["--methods", "gradcam", *other] if other[0] != "--methods" else other
    again = compare(image, *arguments, "-o", out, "--skip-existing")
    [record] = lines(again)
    assert "skipped" not in again.stderr
    assert (out / "x.png.compare.record.json").read_text() != stored  # the new request's record
    if other[0] == "--methods":
        assert [c["method"] for c in record["rows"][0]["cells"]] == ["gradcam", "cam"]
    if other[0] == "--layers":
        assert record["rows"][0]["cells"][0]["layer"] == "block2_conv2"


def test_the_same_request_is_skipped_and_its_records_emitted_again_in_input_order(tmp_path):
    images = [scene(tmp_path / "in" / f"s{i}.png", i) for i in range(3)]
    out = tmp_path / "out"
    first = lines(compare(*images, "--methods", "gradcam,cam", "-o", out))
    figures = [out / f"s{i}.png.compare.png" for i in range(3)]
    written = [path.stat().st_mtime_ns for path in figures]
    again = compare(*images, "--methods", "gradcam,cam", "-o", out, "--skip-existing")
    assert_records_close(lines(again), first)
    assert [path.stat().st_mtime_ns for path in figures] == written  # nothing drawn again
    assert "skipped 3 image(s) whose figures exist (their records are emitted again)" in again.stderr
    assert "3 image(s) compared, 0 failed" in again.stderr
    # without --json, the figures' paths, in input order
    plain = invoke_cli("compare", *images, "--model", "demo-gap", "--methods", "gradcam,cam", "-o", out,
                       "--skip-existing")
    assert plain.returncode == 0 and plain.stdout.split() == [str(path) for path in figures]


def test_a_deleted_figure_or_a_changed_image_is_redone_in_its_place(tmp_path):
    images = [scene(tmp_path / "in" / f"s{i}.png", i) for i in range(3)]
    out = tmp_path / "out"
    first = lines(compare(*images, "--methods", "gradcam", "-o", out))
    (out / "s1.png.compare.png").unlink()
    again = compare(*images, "--methods", "gradcam", "-o", out, "--skip-existing")
    assert_records_close(lines(again), first)  # s0 and s2 re-emitted around s1 drawn again
    assert (out / "s1.png.compare.png").is_file()
    assert "skipped 2 image(s)" in again.stderr
    scene(images[2], 5)  # the same file changed: its size or time differs
    changed = compare(*images, "--methods", "gradcam", "-o", out, "--skip-existing")
    records = lines(changed)
    assert "skipped 2 image(s)" in changed.stderr and [r["input"] for r in records] == [str(p) for p in images]
    assert records[2]["rows"][0]["class"] != first[2]["rows"][0]["class"]


def test_grid_writes_no_records_and_refuses_skip_existing_in_one_line(tmp_path):
    images = [scene(tmp_path / "in" / f"s{i}.png", i) for i in range(2)]
    out = tmp_path / "out"
    assert len(lines(compare(*images, "--methods", "gradcam", "--grid", "-o", out))) == 2
    assert sorted(p.name for p in out.iterdir()) == ["grid.compare.png"]
    refused = compare(*images, "--methods", "gradcam", "--grid", "-o", out, "--skip-existing")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip().splitlines()[-1] == ("Error: --skip-existing does not apply to --grid (one figure "
                                                       "of all images, drawn whole each time): drop one of them")
