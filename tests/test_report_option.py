"""`--report DIR` on the method commands: the run's page, the same as `gradcam report` writes
from the run's --json lines, failures and missing arguments included."""

import shutil
from pathlib import Path

import pytest
from conftest import invoke_cli
from test_report import page_data

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    for name in ("synthetic_circle.png", "synthetic_cross.png", "synthetic_square.png"):
        shutil.copy(ROOT / "sample_images" / name, images)
    (images / "broken.png").write_bytes(b"not a picture")
    return images


def _without_time(data):
    return {key: value for key, value in data.items() if key != "generated"}


@pytest.mark.parametrize("command", [["gradcam"], ["cam"], ["guided"]])
def test_report_option_writes_the_runs_page(tmp_path, folder, command):
    missing = tmp_path / "absent.png"
    run = invoke_cli(*command, folder, missing, "--model", "demo-gap", "-o", tmp_path / "out", "--top-k", "2",
                     "--report", tmp_path / "page", "--json", cwd=tmp_path)
    assert run.returncode == 1  # the broken file and the missing argument
    index = tmp_path / "page" / "index.html"
    assert f"report: {index} (6 map(s), 2 failure(s))" in run.stderr
    data = page_data(index)
    assert len(data["images"]) == 3 and sum(len(image["maps"]) for image in data["images"]) == 6
    assert sorted(Path(f["name"]).name for f in data["failures"]) == ["absent.png", "broken.png"]
    assert len(list((tmp_path / "page" / "thumbs").iterdir())) == 6
    # The same page as `gradcam report` writes from the --json lines the run printed.
    (tmp_path / "results.jsonl").write_text(run.stdout)
    again = invoke_cli("report", tmp_path / "results.jsonl", "-o", tmp_path / "again", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    other = page_data(tmp_path / "again" / "index.html")
    assert _without_time(other) == _without_time(data)


def test_report_folder_that_cannot_be_written_is_refused_before_any_image(tmp_path, folder):
    (tmp_path / "page").write_text("a file")
    run = invoke_cli("gradcam", folder, "--model", "demo-gap", "-o", tmp_path / "out", "--report",
                     tmp_path / "page")
    assert run.returncode == 2 and "page" in run.stderr
    assert not (tmp_path / "out").exists()
