"""Every `gradcam` command line of the README and of the documentation pages (docs/*.md) that runs
offline, run as written (in-process, the output folder moved into tmp_path), and the methods and
compat tables (docs/using-methods.md, docs/compat.md) against the registry. Lines marked as needing
the internet, a GPU or jax, pipelines, and the "Your own models" code block (run by
test_readme_examples.py with the model files it needs) are left out. `eval` lines run on fewer
generated scenes than written (-n 2, --pairs 1 at most): the same options and methods, in
seconds instead of minutes. The report pair (a run's --json into results.jsonl, then `gradcam
report results.jsonl`) runs in sequence. A line written on two pages runs once."""

import re
import shlex
from pathlib import Path

import pytest
from conftest import invoke_cli

from gradcam_cli.explain.methods import METHODS

REPO = Path(__file__).resolve().parents[1]
# The README first, then the pages in name order: the documents whose command lines run here.
DOCUMENTS = {path.relative_to(REPO).as_posix(): path.read_text()
             for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]}
TEXT = "\n\n".join(DOCUMENTS.values())
OWN_MODELS = "<!-- own-models-examples -->"


def offline_commands():
    commands = []
    for text in DOCUMENTS.values():
        own = text.index(OWN_MODELS) if OWN_MODELS in text else len(text)
        own_end = _block_end(text, own) if OWN_MODELS in text else len(text)
        for match in re.finditer(r"^    (gradcam [^\n]*)$", text, re.M):
            line = match.group(1)
            code = line.split("#")[0]
            if own <= match.start() < own_end or "needs" in line or "|" in code:
                continue
            if any(placeholder in code for placeholder in ("IMAGE...", "MODEL ", "photos/", "$(")):
                continue  # a synopsis, or a job-array template
            if code.startswith("gradcam report "):
                continue  # reads the run before it: test_the_readme_report_pair_runs
            if line not in commands:
                commands.append(line)
    return commands


def _block_end(text, marker):
    """Where the indented code block after `marker` ends (its first unindented, non-blank line)."""
    lines = text[marker:].split("\n")[1:]
    offset = marker + len(text[marker:].split("\n")[0]) + 1
    started = False
    for line in lines:
        if line.strip() and not line.startswith("    "):
            if started:
                return offset
        elif line.strip():
            started = True
        offset += len(line) + 1
    return len(text)


COMMANDS = offline_commands()
# The `python -c "...save('NAME.keras')"` lines: the model file a later command names.
MADE = {match.group(2): match.group(1)
        for match in re.finditer(r"^    python -c (\"[^\n]*save\('([\w.-]+\.keras)'\)[^\n]*\")$", TEXT, re.M)}


@pytest.fixture(scope="module")
def made_folder(tmp_path_factory):
    """Where the model files README lines make (MADE) are made, once for every command that reads them."""
    return tmp_path_factory.mktemp("made")


def _made_models(words, tmp_path):
    """`words` with each model file a README line makes (MADE) made in tmp_path (once), as written, and named there."""
    import os
    import subprocess
    import sys

    from conftest import OFFLINE_ENV

    for name, snippet in MADE.items():
        if name in words and not (tmp_path / name).exists():
            made = subprocess.run([sys.executable, "-c", shlex.split(snippet)[0]], cwd=tmp_path, capture_output=True,
                                  text=True, env={**os.environ, **OFFLINE_ENV, "PYTHONPATH": str(REPO)})
            assert made.returncode == 0, made.stderr
    return [str(tmp_path / word) if word in MADE else word for word in words]


def test_the_readme_has_offline_commands_to_run():
    assert len(COMMANDS) >= 20
    # the README's quick start runs, and so do the lines moved into the pages
    readme = [line for line in COMMANDS if re.search(rf"^    {re.escape(line)}$", DOCUMENTS["README.md"], re.M)]
    assert len(readme) >= 5 and any(line.startswith("gradcam eval ") for line in readme)
    assert len(COMMANDS) - len(readme) >= 20
    assert any("--method layercam --eigen-smooth" in c for c in COMMANDS)
    # the sections between the own-models block and the demo models (transformers, targets,
    # volumes, clips) are run too, and the model file a page's line makes is made for them
    assert any("--model demo-clip " in c for c in COMMANDS) and any("vit.keras" in c for c in COMMANDS)
    assert list(MADE) == ["vit.keras"]


@pytest.mark.parametrize("line", COMMANDS)
def test_readme_command_runs_as_written(line, tmp_path, made_folder):
    words = shlex.split(line, comments=True)[1:]
    if ">" in words:  # a redirection of standard output: the test reads it instead
        words = words[: words.index(">")]
    words = [str(tmp_path / word[len("out/"):]) if word.startswith("out/") else word for word in words]
    if words[0] == "eval":
        words = _fewer_scenes(words)
    words = _made_models(words, made_folder)
    if "-o" not in words and "--output-dir" not in words and words[0] not in ("models", "methods", "layers", "eval"):
        words += ["-o", str(tmp_path / "gradcam_out")]
    result = invoke_cli(*words, cwd=REPO)
    assert result.returncode == 0, f"{line}\n{result.stderr}"
    assert "Traceback" not in result.stderr


FEWEST = {"-n": 2, "--count": 2, "--pairs": 1}  # the most scenes and pairs a README command runs here


def _fewer_scenes(words, most=FEWEST):
    words = list(words)
    for k, word in enumerate(words[:-1]):
        if word in most:
            words[k + 1] = str(min(int(words[k + 1]), most[word]))
    if not any(word in ("-n", "--count") for word in words):
        words += ["-n", "2"]
    if "--pairs" not in words:
        words += ["--pairs", "1"]
    return words


def test_fewer_scenes_keeps_every_other_word():
    assert _fewer_scenes(["eval", "--model", "demo-gap", "-n", "50", "--pairs", "0"]) == [
        "eval", "--model", "demo-gap", "-n", "2", "--pairs", "0"]
    assert _fewer_scenes(["eval", "--model", "demo-vgg"]) == ["eval", "--model", "demo-vgg", "-n", "2", "--pairs", "1"]


def test_the_readme_report_pair_runs(tmp_path):
    import json

    run = next(c for c in re.findall(r"^    (gradcam [^\n]*> results\.jsonl)$", TEXT, re.M))
    report = next(c for c in re.findall(r"^    (gradcam report results\.jsonl[^\n]*)$", TEXT, re.M))
    words = [str(tmp_path / w[len("out/"):]) if w.startswith("out/") else w
             for w in shlex.split(run, comments=True)[1:]]
    result = invoke_cli(*words[: words.index(">")], cwd=REPO)
    assert result.returncode == 0, result.stderr
    (tmp_path / "results.jsonl").write_text(result.stdout)
    maps = sum(len(json.loads(line)["maps"]) for line in result.stdout.splitlines())
    words = [str(tmp_path / w[len("report/"):] if w.startswith("report/") else w)
             for w in shlex.split(report, comments=True)[1:]]
    words = [str(tmp_path / "results.jsonl") if w == "results.jsonl" else w for w in words]
    written = invoke_cli(*words, cwd=REPO)
    assert written.returncode == 0, written.stderr
    index = Path(written.stdout.strip())
    assert index.name == "index.html" and index.parent == tmp_path
    assert maps >= 10 and len(list((tmp_path / "thumbs").iterdir())) == maps


def test_the_methods_table_lists_every_method():
    start = TEXT.index("<!-- methods-table -->")
    table = TEXT[start : TEXT.index("\n\n", start + len("<!-- methods-table -->") + 2)]
    named = set(re.findall(r"`([a-z0-9+-]+)`", "\n".join(line.split("|")[1] for line in table.splitlines()[3:])))
    assert named == set(METHODS), (set(METHODS) - named, named - set(METHODS))


def test_the_compat_table_is_the_registrys_choices():
    """Every open choice of the registry is a row of the compat table (docs/compat.md), with its default
    and each library's value in their columns, and no row names a choice the registry lacks."""
    from gradcam_cli.explain.methods import LIBRARIES

    start = TEXT.index("<!-- compat-table -->")
    table = TEXT[start : TEXT.index("\n\n", start + len("<!-- compat-table -->") + 2)]
    rows = {}
    for line in table.splitlines()[3:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[1].startswith("`--"):
            rows[(cells[0].strip("`"), cells[1].strip("`").lstrip("-").replace("-", "_"))] = cells[2:]
    expected = {(name, choice.option): (method, choice) for name, method in METHODS.items()
                for choice in method.choices}
    assert set(rows) == set(expected), (set(expected) - set(rows), set(rows) - set(expected))
    for key, cells in rows.items():
        method, choice = expected[key]
        assert cells[0].startswith(f"`{method.option(choice.option).default}`"), (key, cells[0])
        for library, cell in zip(LIBRARIES, cells[1:]):
            value = choice.value_for(library)
            assert cell.startswith(f"`{value}`") if value is not None else cell == "not offered", (key, library, cell)
