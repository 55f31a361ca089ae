"""Every example that a command's --help ends with runs, as printed: read back from the help
text itself (not from helptext.EXAMPLES), run in-process from a folder where sample_images/
is the repository's, so that every output lands under tmp_path."""

import shlex
import time
from pathlib import Path

import pytest
from conftest import invoke_cli

from gradcam_cli.cli import main
from gradcam_cli.cli.helptext import EXAMPLES

ROOT = Path(__file__).resolve().parent.parent


def shown_examples(command):
    """The example lines at the end of `gradcam COMMAND --help`."""
    text = invoke_cli(command, "--help").stdout
    assert "\nExamples:\n" in text, command
    tail = text.split("\nExamples:\n", 1)[1]
    return [line.strip() for line in tail.splitlines() if line.strip().startswith("gradcam ")]


def test_every_command_ends_its_help_with_examples():
    assert set(EXAMPLES) == set(main.commands)
    for command in main.commands:
        shown = shown_examples(command)
        assert shown == EXAMPLES[command], command
        assert 1 <= len(shown) <= 3, command
        assert any(line.split()[1] == command for line in shown), command  # the command's own example


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("examples")
    (folder / "sample_images").symlink_to(ROOT / "sample_images")
    return folder


@pytest.mark.parametrize("command", sorted(EXAMPLES))
def test_the_examples_run(command, workdir, keras):
    for line in shown_examples(command):
        words = shlex.split(line)
        assert words[0] == "gradcam"
        words, redirect = (words[:words.index(">")], words[words.index(">") + 1:]) if ">" in words else (words, [])
        started = time.perf_counter()
        result = invoke_cli(*words[1:], cwd=workdir)
        print(f"{time.perf_counter() - started:.1f} s  {line}")
        if redirect:  # `> FILE`, as the shell would
            assert len(redirect) == 1, line
            (workdir / redirect[0]).write_text(result.stdout)
        assert result.returncode == 0, f"{line}\n{result.stderr}"
        assert "Traceback" not in result.stderr, line
        for out in ("-o", "--output-dir"):
            if out in words:  # what it wrote lies under the example's folder
                written = workdir / words[words.index(out) + 1]
                assert written.is_dir() and any(written.iterdir()), line
