"""`gradcam ... --json | head -1`: the reader closes the pipe early; the command stops quietly,
as a command killed by SIGPIPE does (status 141), with no error line and no half-written file."""

import os
import shutil
import subprocess
from pathlib import Path

from conftest import OFFLINE_ENV
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def test_a_closed_pipe_stops_the_run_quietly(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(12):  # more lines than a pipe takes before the reader's close is noticed
        shutil.copy(ROOT / "sample_images" / "synthetic_circle.png", folder / f"scene{i:02d}.png")
    env = dict(os.environ, **OFFLINE_ENV)
    process = subprocess.Popen(["gradcam", str(folder), "--model", "demo-gap", "-o", str(tmp_path / "out"),
                                "--json", "-b", "1", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, cwd=tmp_path)
    first = process.stdout.readline()
    process.stdout.close()  # what `head -1` does after its line
    stderr = process.stderr.read().decode()
    process.wait(timeout=300)
    assert first.startswith(b'{"input": ')
    assert process.returncode == 141, stderr
    assert "error" not in stderr.lower() and "Traceback" not in stderr
    written = list((tmp_path / "out").iterdir())
    assert written and all(p.name.endswith((".png", ".record.json")) for p in written)  # no .part left behind
    for path in (p for p in written if p.suffix == ".png"):
        with Image.open(path) as image:
            image.verify()
