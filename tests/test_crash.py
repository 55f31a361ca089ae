"""A crash test, as databases test theirs: a run over a folder, with --json and --report, killed
at seeded instants (SIGKILL, SIGTERM, SIGINT) and resumed with --skip-existing after each, ends
exactly as one uninterrupted run: the same records on standard output (timings aside, floats to
float32 precision), the same files byte for byte, no temporary file left, a whole report. After
every kill, whatever exists is whole: each record printed has its files, each record file lists
files that exist."""

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import OFFLINE_ENV, assert_records_close

IMAGES = 96
BATCH = 4


def _images(folder):
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(IMAGES):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 256, (48 + i % 5, 64, 3), dtype=np.uint8)).save(folder / f"img{i:03d}.png")


def _start(workdir, run, resume):
    """The command in `workdir` (inputs in/, outputs out/, report rep/), its stdout to runN.jsonl."""
    env = dict(os.environ, **OFFLINE_ENV)
    arguments = ["gradcam", "in", "--model", "demo-gap", "-o", "out", "--report", "rep", "--json", "-b", str(BATCH)]
    with open(workdir / f"run{run}.jsonl", "wb") as stdout:
        return subprocess.Popen(arguments + (["--skip-existing"] if resume else []), cwd=workdir, stdout=stdout,
                                stderr=subprocess.PIPE, env=env)


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _without_timing(record):
    return {key: value for key, value in record.items() if key != "seconds"}


def _check_whole(workdir, run):
    """What a killed run left is whole: every line it printed is a record whose files exist, and
    every record file lists files that exist."""
    lines = (workdir / f"run{run}.jsonl").read_text()
    assert lines == "" or lines.endswith("\n")
    for record in _records(workdir / f"run{run}.jsonl"):
        for entry in record["maps"]:
            assert all((workdir / path).is_file() for path in entry["outputs"].values())
    for stored in (workdir / "out").glob("*.record.json"):
        record = json.loads(stored.read_text())["record"]
        for entry in record["maps"]:
            assert all((workdir / path).is_file() for path in entry["outputs"].values()), stored.name


def _wait_for_records(workdir, process, count, timeout=120):
    """Until `count` images have their record files (or the run ended)."""
    ends = time.monotonic() + timeout
    while time.monotonic() < ends and process.poll() is None:
        if sum(1 for _ in (workdir / "out").glob("*.record.json")) >= count if (workdir / "out").is_dir() else False:
            return
        time.sleep(0.005)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One uninterrupted run: its folder, records and report line."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    _images(workdir / "in")
    process = _start(workdir, 0, resume=False)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr.decode()
    return workdir, _records(workdir / "run0.jsonl"), stderr.decode()


def _assert_same_as(workdir, final_run, uninterrupted):
    reference_dir, reference, reference_stderr = uninterrupted
    final = _records(workdir / f"run{final_run}.jsonl")
    assert len(final) == len(reference) == IMAGES
    assert_records_close(final, reference)  # timings aside, floats to float32 precision
    files = sorted(p.name for p in (workdir / "out").iterdir())
    assert files == sorted(p.name for p in (reference_dir / "out").iterdir())
    assert not [name for name in files if name.endswith(".part")]
    for name in files:
        if name.endswith(".png"):
            assert (workdir / "out" / name).read_bytes() == (reference_dir / "out" / name).read_bytes(), name
    assert not list((workdir / "rep").rglob("*.part"))
    page = (workdir / "rep" / "index.html").read_text()
    assert all(f"img{i:03d}.png" in page for i in range(IMAGES))
    report_line = next(line for line in reference_stderr.splitlines() if line.startswith("report:"))
    assert f"({IMAGES} map(s), 0 failure(s))" in report_line


@pytest.mark.parametrize("seed", [1])
def test_runs_killed_at_seeded_instants_and_resumed_end_as_an_uninterrupted_run(uninterrupted, tmp_path, seed):
    chance = random.Random(seed)
    _images(tmp_path / "in")
    run = 0
    for run in range(1, 4):  # three SIGKILLs, each after a seeded number of images and a seeded delay
        process = _start(tmp_path, run, resume=run > 1)
        _wait_for_records(tmp_path, process, chance.randrange(run * IMAGES // 5, (run + 1) * IMAGES // 5))
        time.sleep(chance.uniform(0, 0.05))
        process.kill()
        process.wait(timeout=60)
        _check_whole(tmp_path, run)
    assert len(list((tmp_path / "out").glob("*.record.json"))) < IMAGES  # some work was left to resume
    final = _start(tmp_path, run + 1, resume=True)
    _, stderr = final.communicate(timeout=600)
    assert final.returncode == 0, stderr.decode()
    assert "image(s) whose outputs exist" in stderr.decode()
    _assert_same_as(tmp_path, run + 1, uninterrupted)


@pytest.mark.parametrize("sent, status, word", [(signal.SIGTERM, 143, "terminated"),
                                                  (signal.SIGINT, 130, "interrupted")])
def test_sigterm_and_sigint_write_the_report_of_what_finished_and_exit_as_unix_tools(uninterrupted, tmp_path, sent,
                                                                                     status, word):
    _images(tmp_path / "in")
    process = _start(tmp_path, 1, resume=False)
    _wait_for_records(tmp_path, process, IMAGES // 3)
    process.send_signal(sent)
    _, stderr = process.communicate(timeout=120)
    stderr = stderr.decode()
    assert process.returncode == status, stderr
    assert f"gradcam: {word};" in stderr and "Traceback" not in stderr
    _check_whole(tmp_path, 1)
    printed = _records(tmp_path / "run1.jsonl")
    assert 0 < len(printed) < IMAGES
    report_line = next(line for line in stderr.splitlines() if line.startswith("report:"))
    assert f"({len(printed)} map(s), 0 failure(s))" in report_line  # the report of what finished
    final = _start(tmp_path, 2, resume=True)
    _, stderr = final.communicate(timeout=600)
    assert final.returncode == 0, stderr.decode()
    _assert_same_as(tmp_path, 2, uninterrupted)


def test_skipping_is_keyed_by_the_source_and_the_request_not_the_output_name(tmp_path):
    from conftest import invoke_cli, write_image

    first = write_image(tmp_path / "a" / "x.png", (64, 64), seed=1)
    second = write_image(tmp_path / "b" / "x.png", (64, 64), seed=2)
    out = tmp_path / "out"
    done = invoke_cli(first, "--model", "demo-gap", "-o", out, "--json")
    assert done.returncode == 0
    # another image of the same name is explained, not skipped
    other = invoke_cli(second, "--model", "demo-gap", "-o", out, "--json", "--skip-existing")
    assert other.returncode == 0 and "whose outputs exist" not in other.stderr
    assert json.loads(other.stdout)["input"] == str(second)
    # the same image for another request (a layer) is explained again too
    again = invoke_cli(second, "--model", "demo-gap", "-o", out, "--json", "--skip-existing", "--layer", "block2_conv2")
    assert "whose outputs exist" not in again.stderr and json.loads(again.stdout)["layer"] == "block2_conv2"
    # and the same request is skipped, its record emitted again
    same = invoke_cli(second, "--model", "demo-gap", "-o", out, "--json", "--skip-existing", "--layer", "block2_conv2")
    assert "skipped 1 image(s) whose outputs exist" in same.stderr
    assert _without_timing(json.loads(same.stdout)) == _without_timing(json.loads(again.stdout))
    # an image whose record file is gone is done again (its files may be those of a killed run)
    (out / "x.png.gradcam.record.json").unlink()
    redone = invoke_cli(second, "--model", "demo-gap", "-o", out, "--json", "--skip-existing", "--layer", "block2_conv2")
    assert "whose outputs exist" not in redone.stderr and (out / "x.png.gradcam.record.json").is_file()


def test_a_json_line_is_written_whole_or_not_at_all_on_a_full_disk(tmp_path, monkeypatch):
    """A short write (the disk filled up mid-line) is cut back to where the line began, and the
    error names standard output."""
    from gradcam_cli.files import outputs

    target = tmp_path / "out.jsonl"
    with open(target, "wb", buffering=0) as raw:
        stream = open(raw.fileno(), "w", closefd=False)
        outputs.write_line('{"a": 1}', stream)
        calls = []

        def short_then_full(descriptor, data):
            calls.append(len(data))
            if len(calls) == 1:
                return os.write(descriptor, data[:5])  # part of the line fits
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(outputs.os, "write", short_then_full)
        with pytest.raises(outputs.StandardOutputError, match="cannot write to standard output: No space left"):
            outputs.write_line('{"b": 22222222}', stream)
        monkeypatch.undo()
        outputs.write_line('{"c": 3}', stream)
    assert target.read_text() == '{"a": 1}\n{"c": 3}\n'


def test_a_full_disk_on_standard_output_is_named_as_such(tmp_path):
    """/dev/full: every write fails with ENOSPC; the command says standard output, exit 1."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    image = tmp_path / "x.png"
    from conftest import write_image

    write_image(image, (64, 64))
    env = dict(os.environ, **OFFLINE_ENV)
    with open("/dev/full", "w") as full:
        result = subprocess.run(["gradcam", str(image), "--model", "demo-gap", "-o", str(tmp_path / "out"), "--json"],
                                stdout=full, stderr=subprocess.PIPE, text=True, env=env, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == \
        "error: cannot write to standard output: No space left on device"


def test_a_report_that_cannot_be_written_leaves_no_thumbnails(tmp_path, monkeypatch):
    from conftest import write_image

    from gradcam_cli import report
    from gradcam_cli.files import outputs

    image = write_image(tmp_path / "x.png", (64, 64))
    heat = write_image(tmp_path / "x.png.gradcam.heatmap.png", (64, 64), seed=3)
    records = [{"input": str(image), "model": "m", "method": "gradcam", "layer": "l", "image_size": [64, 64],
                "maps": [{"class": 0, "label": "a", "score": 1.0, "probability": 0.5,
                          "outputs": {"heatmap": str(heat)}, "stats": {"empty": False}}]}]
    write = outputs.write_atomic

    def no_page(path, data):
        if Path(path).name == "index.html":
            raise OSError(28, "No space left on device")
        return write(path, data)

    monkeypatch.setattr(report, "write_atomic", no_page)
    with pytest.raises(OSError):
        report.write_report(records, tmp_path / "rep", base_dir=tmp_path)
    assert not (tmp_path / "rep" / "index.html").exists()
    assert not [p for p in (tmp_path / "rep").rglob("*") if p.is_file()]
    # an earlier report stays whole when the next one cannot be written: its thumbnails are kept
    monkeypatch.undo()
    report.write_report(records, tmp_path / "rep", base_dir=tmp_path)
    earlier = sorted(p.name for p in (tmp_path / "rep" / "thumbs").iterdir())
    assert earlier
    other = write_image(tmp_path / "y.png.gradcam.heatmap.png", (64, 64), seed=4)
    changed = [dict(records[0], maps=[dict(records[0]["maps"][0], outputs={"heatmap": str(other)})])]
    monkeypatch.setattr(report, "write_atomic", no_page)
    with pytest.raises(OSError):
        report.write_report(changed, tmp_path / "rep", base_dir=tmp_path)
    assert sorted(p.name for p in (tmp_path / "rep" / "thumbs").iterdir()) == earlier
    assert (tmp_path / "rep" / "index.html").is_file()


def test_options_without_a_request_resume_nothing(tmp_path):
    """Options made by hand carry no request digest: their record files never let an image be skipped."""
    from conftest import write_image

    from gradcam_cli.files import writer
    from gradcam_cli.files.inputs import Source
    from gradcam_cli.files.writing import FileOptions

    image = write_image(tmp_path / "x.png", (8, 8))
    options = FileOptions(output_dir=tmp_path / "out")
    source = Source(image, "x.png")
    record = {"input": str(image), "maps": [{"class": 0, "outputs": {}}]}
    from gradcam_cli.files import records

    records.write_record(records.record_path(source, options, None), source, None, record)
    assert writer.resumable([source], options) == ([source], {})
    asked = FileOptions(output_dir=tmp_path / "out", save=(), request="digest")
    records.write_record(records.record_path(source, asked, None), source, "digest", record)
    todo, done = writer.resumable([source], asked)
    assert todo == [] and done[0].record["input"] == str(image)


def test_a_record_tag_of_many_maps_stays_short():
    from gradcam_cli.files.writing import FileOptions, record_tag

    assert record_tag(FileOptions(output_dir=Path("o"))) is None
    assert record_tag(FileOptions(output_dir=Path("o"), classes=(3, 5))) == "class3+class5"
    many = record_tag(FileOptions(output_dir=Path("o"), classes=tuple(range(40))))
    assert many.startswith("maps-") and len(many) == 21
    assert many != record_tag(FileOptions(output_dir=Path("o"), classes=tuple(range(41))))


def test_a_killed_run_for_another_request_leaves_no_record_vouching_for_its_files(tmp_path, monkeypatch):
    """Run A finishes; run B (another alpha: the same file names) rewrites the files, then fails
    before its record: A's record must be gone, so that resuming A does the image again."""
    from conftest import invoke_cli, write_image

    from gradcam_cli.files import records

    image = write_image(tmp_path / "x.png", (64, 64))
    out = tmp_path / "out"
    assert invoke_cli(image, "--model", "demo-gap", "-o", out).returncode == 0
    assert (out / "x.png.gradcam.record.json").is_file()

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(records, "write_record", full_disk)
    failed = invoke_cli(image, "--model", "demo-gap", "-o", out, "--alpha", "0.7")
    assert failed.returncode == 1 and "No space left on device" in failed.stderr
    monkeypatch.undo()
    assert not (out / "x.png.gradcam.record.json").exists()
    resumed = invoke_cli(image, "--model", "demo-gap", "-o", out, "--skip-existing")
    assert "whose outputs exist" not in resumed.stderr and (out / "x.png.gradcam.record.json").is_file()


def test_a_changed_mask_or_reference_is_another_request(tmp_path):
    from gradcam_cli.explain.target_spec import Target
    from gradcam_cli.files.writer import _target_request

    mask = tmp_path / "m.png"
    mask.write_bytes(b"one")
    before = _target_request(Target("segment", index="circle", path=str(mask)))
    assert before["spec"] == f"segment:circle:{mask}" and before["file"][0] == str(mask.resolve())
    mask.write_bytes(b"two!")
    assert _target_request(Target("segment", index="circle", path=str(mask))) != before


def test_signals_wait_for_the_outermost_uninterrupted_block():
    import signal

    from gradcam_cli.cli.process import interrupt_handler, on_signals, uninterrupted

    previous = on_signals(interrupt_handler)
    reached = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with uninterrupted():
                with uninterrupted():
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(0.05)
                    reached.append("inner end")
                reached.append("outer end")  # the inner block's end does not raise yet
        assert reached == ["inner end", "outer end"]
    finally:
        on_signals(previous)
