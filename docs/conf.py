"""Sphinx configuration of the gradcam-cli documentation site (`make docs`).

Pages are Markdown (MyST), the command-line reference comes from the Click commands
(sphinx-click), the Python API from docstrings (autodoc), and the gallery from the scripts in
examples/ (sphinx-gallery, built into docs/auto_examples/, gitignored). The build uses no
network: no intersphinx, and the gallery's scripts run on the shipped demo models offline."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Offline and quiet: no GPU probing, no TensorFlow log lines in the build's output.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradcam_cli  # noqa: E402

project = "gradcam-cli"
author = "the gradcam-cli authors"
copyright = "the gradcam-cli authors"
release = version = gradcam_cli.__version__

extensions = [
    "myst_parser",
    "sphinx_click",
    "sphinx.ext.autodoc",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# development/ holds working notes (the compat spec), linked from the pages as files, not pages.
exclude_patterns = ["_build", "development", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip", "auto_examples/*.json",
                    "auto_examples/*.md5", "auto_examples/*.codeobj.json"]

myst_heading_anchors = 3  # `page.md#a-heading` links, as on GitHub
myst_enable_extensions = ["colon_fence"]
suppress_warnings = ["myst.header"]  # pages moved from the README keep their heading levels

highlight_language = "none"  # the indented blocks are shell commands and plain-text tables

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_mock_imports: list[str] = []

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "plot_gallery": "True",
    "matplotlib_animations": False,
    "reset_modules": ("matplotlib",),
    "write_computation_times": False,
}

html_theme = "furo"
html_title = "gradcam-cli"
html_static_path: list[str] = []
html_show_sourcelink = False

# Single backticks in docstrings and in the commands' help mean code, as they do on a terminal.
default_role = "literal"
# Options are written `--model`: no en dashes or curly quotes made of them, in prose or in the commands' help.
smartquotes = False

# The commands' help is plain text written for a terminal (`gradcam COMMAND --help`); sphinx-click
# reads it as reStructuredText, where `*.png`, `|y_c|` or `name_` are markup. Escape those
# characters outside `code` spans, keeping sphinx-click's own directives and line-block bars.
import re  # noqa: E402

_CODE_SPAN = re.compile(r"(`[^`]+`)")
_MARKUP = re.compile(r"([*|\\]|_(?=\W|$))")


def _escape_help_line(line: str) -> str:
    stripped = line.lstrip()
    if stripped.startswith((".. ", ":")):
        return line
    indent = line[: len(line) - len(stripped)]
    bar = ""
    if stripped.startswith("| "):
        bar, stripped = "| ", stripped[2:]
    parts = _CODE_SPAN.split(stripped)
    escaped = "".join(part if k % 2 else _MARKUP.sub(r"\\\1", part) for k, part in enumerate(parts))
    return indent + bar + escaped


def _escape_help(app, ctx, lines):
    lines[:] = [_escape_help_line(line) for line in lines]


def setup(app):
    for event in ("description", "options", "arguments", "epilog"):
        app.connect(f"sphinx-click-process-{event}", _escape_help)
