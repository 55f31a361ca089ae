"""--import: what it takes (a module name or a .py file), and one line for everything else."""

import pytest
from conftest import invoke_cli, write_image

TAKES = "--import takes a module name (mypackage.layers) or a Python file (layers.py)"


@pytest.mark.parametrize("value, message", [
    ("../../etc/passwd", "cannot import '../../etc/passwd': a file whose name does not end in .py; " + TAKES),
    ("../../etc/nothing", "cannot import '../../etc/nothing': no such file; " + TAKES),
    ("absent.py", "cannot import 'absent.py': no such file; " + TAKES),
    ("folder", "cannot import 'folder': a folder (give its package's module name, or one of its .py files); " + TAKES),
    ("notes.txt", "cannot import 'notes.txt': a file whose name does not end in .py; " + TAKES),
    ("my-layers.py", "cannot import 'my-layers.py': my-layers.py is not named as a Python module; " + TAKES),
    ("", "cannot import '': an empty name; " + TAKES),
    ("bad.py", "cannot import bad.py: SyntaxError: '(' was never closed (bad.py, line 2)"),
    ("exits.py", "cannot import exits.py: it called sys.exit(3) while importing"),
    ("no_such_module_here", "cannot import no_such_module_here: No module named 'no_such_module_here'"),
])
def test_a_bad_import_is_one_line_saying_what_fits(tmp_path, value, message):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    here = tmp_path / "x" / "y"
    (here / "folder").mkdir(parents=True)
    (here / "notes.txt").write_text("hello")
    (here / "my-layers.py").write_text("")
    (here / "bad.py").write_text("import keras\nx = (\n")
    (here / "exits.py").write_text("import sys\nsys.exit(3)\n")
    image = write_image(tmp_path / "i.png", (64, 64))
    result = invoke_cli(image, "--model", "demo-gap", "--import", value, "-o", tmp_path / "o", cwd=here)
    assert result.returncode == 2
    assert result.stderr == f"Error: {message}\n"
    assert not (tmp_path / "o").exists()
