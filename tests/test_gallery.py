"""The gallery (scripts/gallery.py, `make gallery`) and the sphinx-gallery examples (examples/plot_*.py).

- The committed pictures: one per registered method and the overview, within their size limits.
- Determinism: two pictures made in a subprocess and again in this process are the same bytes,
  palette PNGs of the expected sizes, and the committed ones (about 25 s: two processes load TensorFlow).
- The examples are sphinx-gallery scripts (the docs' build runs them: tests/test_docs_site.py).
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
GALLERY = ROOT / "docs" / "images" / "gallery"
EXAMPLES = sorted((ROOT / "examples").glob("plot_*.py"))
METHOD_LIMIT = 60 * 1024  # bytes: a method's picture on the docs' methods page
OVERVIEW_LIMIT = 500 * 1024  # bytes: the README's images total at most about 1 MB


def environment():
    env = dict(os.environ, MPLBACKEND="Agg", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def gallery_module():
    spec = importlib.util.spec_from_file_location("gallery", ROOT / "scripts" / "gallery.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_method_has_its_committed_picture_within_the_limits():
    from gradcam_cli.explain.methods import METHODS

    for name in METHODS:
        path = GALLERY / f"{name}.png"
        assert path.is_file(), f"{path} missing: run make gallery"
        assert path.stat().st_size < METHOD_LIMIT, (name, path.stat().st_size)
        with Image.open(path) as picture:
            assert picture.format == "PNG" and picture.mode == "P"
            assert picture.width == 445 and 200 <= picture.height <= 420, (name, picture.size)
    overview = GALLERY / "overview.png"
    assert overview.stat().st_size < OVERVIEW_LIMIT
    with Image.open(overview) as picture:
        assert picture.size == (820, 1405) and picture.mode == "P"
    assert (GALLERY / "volume-montage.jpg").stat().st_size < OVERVIEW_LIMIT
    assert (GALLERY / "clip-frames.png").stat().st_size < METHOD_LIMIT
    unknown = {p.stem for p in GALLERY.glob("*.png")} - set(METHODS) - {"overview", "clip-frames"}
    assert not unknown, f"pictures of no method: {sorted(unknown)}"


def test_gallery_refuses_an_unknown_picture(capsys):
    with pytest.raises(SystemExit) as raised:
        gallery_module().main(["--only", "gradcam,no-such-method", "--out", "unused"])
    assert raised.value.code == 2
    assert "no picture named no-such-method" in capsys.readouterr().err


def _close(made, committed):
    """Whether a picture made here draws what the committed one draws: the same size, and the
    mean difference of their RGB pixels under 1 level of 255. Not the same bytes: another
    matplotlib or FreeType release may draw a caption's glyphs a little differently, which is no
    stale picture; a changed map or layout moves far more."""
    import numpy as np

    with Image.open(made) as a, Image.open(committed) as b:
        if a.size != b.size:
            return False
        difference = np.abs(np.asarray(a.convert("RGB"), np.int16) - np.asarray(b.convert("RGB"), np.int16))
    return float(difference.mean()) < 1.0


def test_gallery_writes_the_same_bytes_twice(tmp_path):
    """Two methods (a map method and a backprop one, which adds a row): once in a fresh
    process, once here; the same bytes as each other, and drawing what the committed pictures
    draw (_close)."""
    wanted = ("gradcam", "guided")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gallery.py"), "--only", ",".join(wanted),
                           "--out", str(tmp_path / "first")], env=environment(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert gallery_module().main(["--only", ",".join(wanted), "--out", str(tmp_path / "second")]) == 0
    for name, size in zip(wanted, ((445, 238), (445, 395))):
        first = (tmp_path / "first" / f"{name}.png").read_bytes()
        assert first == (tmp_path / "second" / f"{name}.png").read_bytes(), name
        assert _close(tmp_path / "first" / f"{name}.png", GALLERY / f"{name}.png"), f"{name}.png is stale: run make gallery"
        with Image.open(tmp_path / "first" / f"{name}.png") as picture:
            assert picture.size == size and picture.mode == "P"
            assert len(picture.getcolors()) > 16  # a map, not a blank page


def test_examples_are_sphinx_gallery_scripts_that_draw():
    """Each example has sphinx-gallery's docstring (a title and its underline) and draws with
    matplotlib. They are run where they are published: tests/test_docs_site.py builds the site,
    and sphinx-gallery runs every example there, an error failing the build (-W)."""
    assert len(EXAMPLES) >= 4 and (ROOT / "examples" / "README.txt").is_file()
    for path in EXAMPLES:
        text = path.read_text()
        assert "plt." in text or "matplotlib" in text, path.name
        docstring = text.split('"""')[1].strip().splitlines()
        assert len(docstring) >= 3 and set(docstring[1]) == {"="} and len(docstring[1]) >= len(docstring[0])
