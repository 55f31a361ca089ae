"""Every ```python snippet of the documentation pages (docs/*.md), run as written: a small collector
rather than sybil, since each snippet runs in a process of its own (TensorFlow and the demo models
loaded fresh, as a reader's would be) from a scratch folder holding the sample images.

- A snippet whose text says "needs the internet" (a comment: a keras-hub preset, ImageNet weights)
  is skipped, with that line as the reason.
- A snippet after a marker that the README also carries (`<!-- python-example -->`,
  `<!-- faithfulness-example -->`) is run, and its output checked, by the README's own test
  (tests/test_api.py, tests/test_assessment.py); here the page's copy must equal the README's.
- A snippet followed by a ```text block is the output the page says is real: standard output must
  equal it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import OFFLINE_ENV

REPO = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```python\n(.*?)^```\n(?:\n[^\n`]*\n\n```text\n(.*?)^```\n)?", re.M | re.S)
MARKER = re.compile(r"<!-- ([\w-]+) -->\n$")


def snippets():
    """(page:line, code, expected output or None, the marker before it or None) for each snippet."""
    found = []
    for path in sorted((REPO / "docs").glob("*.md")):
        text = path.read_text()
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            marker = MARKER.search(text, 0, match.start())
            found.append((f"{path.name}:{line}", match.group(1), match.group(2),
                          marker.group(1) if marker else None))
    return found


def readme_block(marker):
    readme = (REPO / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\n```python\n(.*?)```", readme, re.S)
    return match.group(1) if match else None


SNIPPETS = snippets()


def test_the_pages_have_snippets_to_run():
    offline = [s for s in SNIPPETS if "needs the internet" not in s[1] and s[3] is None]
    assert len(SNIPPETS) >= 4 and offline and any(expected for _, _, expected, _ in offline)


@pytest.mark.parametrize("where, code, expected, marker", SNIPPETS, ids=[s[0] for s in SNIPPETS])
def test_docs_snippet_runs_as_written(where, code, expected, marker, tmp_path):
    needs = next((line.strip("# ") for line in code.splitlines() if "needs the internet" in line), None)
    if needs:
        pytest.skip(f"{where}: {needs}")
    if marker is not None and readme_block(marker) is not None:
        assert code == readme_block(marker), f"{where}: the page's copy of the README's {marker} differs"
        return  # run, and its output checked, by the README's own test
    (tmp_path / "sample_images").symlink_to(REPO / "sample_images")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **OFFLINE_ENV, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, f"{where}\n{done.stderr}"
    if expected is not None:
        assert done.stdout == expected, f"{where}: the page shows\n{expected}but the snippet prints\n{done.stdout}"
