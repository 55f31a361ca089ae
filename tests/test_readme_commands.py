"""Every `gradcam` command line of the README that runs offline, run as written (in-process, the
output folder moved into tmp_path), and the README's methods table against the registry. Lines
marked as needing the internet, a GPU or jax, pipelines, and the "Your own models" block (run by
test_readme_examples.py with the model files it needs) are left out."""

import re
import shlex
from pathlib import Path

import pytest

from conftest import invoke_cli
from gradcam_cli.methods import METHODS

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def offline_commands():
    own = README.index("<!-- own-models-examples -->")
    own_end = README.index("\n## ", own)
    commands = []
    for match in re.finditer(r"^    (gradcam [^\n]*)$", README, re.M):
        line = match.group(1)
        code = line.split("#")[0]
        if own <= match.start() < own_end or "needs" in line or "|" in code:
            continue
        if any(placeholder in code for placeholder in ("IMAGE...", "MODEL ", "photos/", "$(")):
            continue  # a synopsis, or a job-array template
        commands.append(line)
    return commands


COMMANDS = offline_commands()


def test_the_readme_has_offline_commands_to_run():
    assert len(COMMANDS) >= 20
    assert any("--method layercam --eigen-smooth" in c for c in COMMANDS)


@pytest.mark.parametrize("line", COMMANDS)
def test_readme_command_runs_as_written(line, tmp_path):
    words = shlex.split(line, comments=True)[1:]
    if ">" in words:  # a redirection of standard output: the test reads it instead
        words = words[: words.index(">")]
    words = [str(tmp_path / word[len("out/"):]) if word.startswith("out/") else word for word in words]
    if "-o" not in words and "--output-dir" not in words and words[0] not in ("models", "methods", "layers", "eval"):
        words += ["-o", str(tmp_path / "gradcam_out")]
    result = invoke_cli(*words, cwd=REPO)
    assert result.returncode == 0, f"{line}\n{result.stderr}"
    assert "Traceback" not in result.stderr


def test_the_methods_table_lists_every_method():
    start = README.index("<!-- methods-table -->")
    table = README[start : README.index("\n\n", start + len("<!-- methods-table -->") + 2)]
    named = set(re.findall(r"`([a-z0-9+-]+)`", "\n".join(line.split("|")[1] for line in table.splitlines()[3:])))
    assert named == set(METHODS), (set(METHODS) - named, named - set(METHODS))
