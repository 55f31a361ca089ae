"""The habits of a kept project: the pre-commit hooks run what `make lint` runs, at the pinned ruff
version; the changelog starts at the package's version; CONTRIBUTING points at the docs' page on
adding a method. Read from the files themselves, offline."""

import re
from pathlib import Path

import yaml

from gradcam_cli import __version__

ROOT = Path(__file__).resolve().parent.parent


def test_pre_commit_runs_make_lint_at_the_pinned_ruff():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    repos = {repo["repo"]: repo for repo in config["repos"]}
    ruff = repos["https://github.com/astral-sh/ruff-pre-commit"]
    pinned = re.search(r'"ruff>=([0-9.]+),<', (ROOT / "pyproject.toml").read_text()).group(1)
    assert ruff["rev"] == f"v{pinned}"
    makefile = (ROOT / "Makefile").read_text()
    lint_paths = re.search(r"^LINT_PATHS = (.+)$", makefile, re.M).group(1).split()
    hook = next(h for h in ruff["hooks"] if h["id"] == "ruff-check")
    for path in lint_paths:  # the hook sees the files make lint checks, and only those
        assert re.match(hook["files"], f"{path}/module.py"), path
    assert not re.match(hook["files"], "docs/conf.py")
    mypy = next(h for h in repos["local"]["hooks"] if h["id"] == "mypy")
    assert "$(PYTHON) -m mypy\n" in makefile and mypy["entry"] == "python -m mypy"
    assert mypy["pass_filenames"] is False and mypy["language"] == "system"  # [tool.mypy] files, as make lint


def test_changelog_keeps_a_changelog_from_the_current_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## \[([^\]]+)\]", text, re.M)
    assert releases == ["Unreleased", __version__]
    assert "https://keepachangelog.com/" in text
    for section in re.findall(r"^### (.+)$", text, re.M):
        assert section in ("Added", "Changed", "Deprecated", "Removed", "Fixed", "Security")


def test_contributing_points_at_the_add_a_method_page():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    assert "(docs/contributing.md)" in text
    for command in ("make install", "make lint", "make test"):
        assert command in text
    page = (ROOT / "docs" / "contributing.md").read_text()
    assert "## Adding a method" in page and "gradcam_cli/explain/methods/NAME.py" in page
