"""`gradcam serve` and `gradcam --server`: one server (a subprocess, on a socket under tmp_path) answers
the module's requests, sent through the console script as a user sends them; its log (stderr) is read
back. The maps and records are a local run's; statuses, errors and stdin carry over; the socket is the
user's alone; SIGTERM and the idle timeout stop the server and remove its socket."""

import json
import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import OFFLINE_ENV, assert_records_close, invoke_cli, python_cli, run_cli

ROOT = Path(__file__).resolve().parent.parent
CAT, CROSS = ROOT / "sample_images" / "cat.png", ROOT / "sample_images" / "synthetic_cross.png"


def start_server(folder, *options):
    """`gradcam serve --socket FOLDER/s.sock OPTIONS...` in the background, its stderr in FOLDER/server.log;
    returns (process, socket path, log path) once the socket answers."""
    path, log = folder / "s.sock", folder / "server.log"
    env = dict(os.environ, **OFFLINE_ENV)
    with open(log, "w") as stderr:
        process = subprocess.Popen(["gradcam", "serve", "--socket", str(path), *options], stdout=subprocess.DEVNULL,
                                   stderr=stderr, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
            return process, path, log
        except OSError:
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        finally:
            probe.close()
    process.kill()
    raise AssertionError("the server did not answer in 60 s: " + log.read_text())


def stop(process, timeout=30):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return process.wait(timeout=timeout)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("server")
    process, path, log = start_server(folder, "--preload", "demo-vgg", "--idle-timeout", "10")
    yield path, log
    stop(process)


def through(server, *args, cwd=None, stdin=None):
    return run_cli("--server", "--socket", server[0], *args, cwd=cwd, stdin=stdin)


def records(stdout):
    return [json.loads(line) for line in stdout.splitlines()]


def test_maps_and_records_are_a_local_run_s_and_the_model_loads_once(server, tmp_path, keras):
    arguments = (CAT, CROSS, "--model", "demo-vgg", "--json", "--save", "raw", "--top-k", "2")
    served = [through(server, *arguments, "-o", tmp_path / f"served{n}") for n in (1, 2)]
    local = invoke_cli(*arguments, "-o", tmp_path / "local")
    assert local.returncode == 0, local.stderr
    for result, folder in zip(served, ("served1", "served2")):
        assert result.returncode == 0, result.stderr
        assert result.stderr == local.stderr.replace(str(tmp_path / "local"), str(tmp_path / folder))
        got, expected = records(result.stdout), records(local.stdout)
        assert len(got) == len(expected) == 2
        for record in got:  # the outputs' folder aside, the records are the local run's
            for entry in record["maps"]:
                entry["outputs"] = {k: v.replace(folder, "local") for k, v in entry["outputs"].items()}
        assert_records_close(got, expected)
        raw = sorted((tmp_path / "local").glob("*.npy"))
        assert len(raw) == 4  # two images, two classes
        for path in raw:
            assert np.allclose(np.load(tmp_path / folder / path.name), np.load(path), rtol=1e-5, atol=1e-6)
    log = server[1].read_text()
    assert log.count("loaded model demo-vgg") == 1, log  # the preload's: both commands reused it
    assert log.count(": exit 0, ") >= 2


def test_statuses_and_one_line_errors_carry_over(server, tmp_path):
    missing = tmp_path / "nope.png"
    for args, status in (((missing, "--model", "demo-vgg", "-o", tmp_path), 1),
                         ((CAT, "--model", "demo-vgg", "--alpha", "7", "-o", tmp_path), 2),
                         (("gradcam", CAT, "--no-such-option"), 2)):
        served, local = through(server, *args), run_cli(*args)  # each stops before Keras starts
        assert (served.returncode, local.returncode) == (status, status), served.stderr
        assert served.stderr == local.stderr and served.stdout == local.stdout
    assert through(server, missing, "--model", "demo-vgg", "-o", tmp_path).stderr.strip() == \
        f"error: {missing}: no such file or folder"
    nested = through(server, "serve")
    assert nested.returncode == 2 and nested.stderr.count("\n") == 1 and "does not run through a server" in \
        nested.stderr


def test_stdin_paths_and_the_client_s_folder(server, tmp_path):
    result = through(server, "-", "--model", "demo-vgg", "-o", "out", "--json", cwd=tmp_path,
                     stdin=f"{CAT}\n{CROSS}\n")
    assert result.returncode == 0, result.stderr
    assert [r["input"] for r in records(result.stdout)] == [str(CAT), str(CROSS)]
    assert len(list((tmp_path / "out").glob("*.overlay.png"))) == 2  # `-o out` is the client's folder's


def test_other_commands_run_through_the_server(server):
    result = through(server, "layers", "--model", "demo-vgg")
    assert result.returncode == 0 and "block4_conv2" in result.stdout, result.stderr


def test_without_a_server_the_command_runs_here(tmp_path):
    path = tmp_path / "none.sock"
    result = run_cli("--server", "--socket", path, CAT, "--model", "demo-vgg", "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == \
        f"gradcam: no server at {path} (start one with `gradcam serve`); running here"
    assert (tmp_path / "out" / "cat.png.gradcam.overlay.png").is_file()


def test_the_socket_is_the_user_s_and_a_second_server_is_refused(server):
    assert stat.S_IMODE(os.stat(server[0]).st_mode) == 0o600
    second = run_cli("serve", "--socket", server[0])
    assert second.returncode == 2
    assert second.stderr == f"Error: a gradcam server already answers on {server[0]}\n"


def test_the_client_imports_no_tensorflow(server):
    result = python_cli(
        "import sys",
        "from gradcam_cli.cli import main",
        "try:",
        f"    main(['--server', '--socket', {str(server[0])!r}, 'methods'])",
        "except SystemExit as exit:",
        "    print('STATUS', exit.code)",
        "print('HEAVY', [m for m in ('tensorflow', 'keras', 'jax', 'cv2') if m in sys.modules])",
    )
    assert "STATUS 0" in result.stdout and "HEAVY []" in result.stdout, result.stdout + result.stderr
    assert "gradcam++" in result.stdout  # the server's answer


def test_a_client_that_goes_away_stops_its_command(server, tmp_path):
    """The client closes its end after the first output: the command stops at its next write (exit 130,
    what finished kept), and the server goes on to the next command."""
    folder = tmp_path / "many"
    folder.mkdir()
    for n in range(40):
        (folder / f"{n:02}.png").write_bytes(CROSS.read_bytes())
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(str(server[0]))
    request = {"argv": [str(folder), "--model", "demo-vgg", "-o", str(tmp_path / "out"), "--batch-size", "1"],
               "cwd": str(tmp_path), "stdin": None}
    connection.sendall(json.dumps(request).encode() + b"\n")
    first = json.loads(connection.makefile("rb").readline())
    assert "out" in first, first
    connection.close()
    deadline = time.monotonic() + 60
    while "(the client was gone)" not in server[1].read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    line = [line for line in server[1].read_text().splitlines() if str(folder) in line][-1]
    assert ": exit 130, " in line and line.endswith("(the client was gone)"), line
    assert 1 <= len(list((tmp_path / "out").glob("*.overlay.png"))) < 40
    assert through(server, "methods").returncode == 0


def test_ctrl_c_on_the_client_exits_130(server, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for n in range(40):
        (folder / f"{n:02}.png").write_bytes(CROSS.read_bytes())
    client = subprocess.Popen(["gradcam", "--server", "--socket", str(server[0]), str(folder), "--model", "demo-vgg",
                               "-o", str(tmp_path / "out"), "--batch-size", "1"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=dict(os.environ, **OFFLINE_ENV))
    assert client.stdout.readline().endswith(".png\n")  # the command is under way
    client.send_signal(signal.SIGINT)
    assert client.wait(timeout=30) == 130
    assert client.stderr.read().splitlines()[-1].startswith("gradcam: interrupted; the server stops the command")
    assert through(server, "methods").returncode == 0  # the server goes on


def test_sigterm_stops_the_server_and_removes_its_socket(tmp_path):
    process, path, log = start_server(tmp_path)
    assert run_cli("--server", "--socket", path, "models").returncode == 0  # it is in its loop
    assert stop(process) == 0
    assert not path.exists()
    assert log.read_text().splitlines()[-1] == "gradcam server: stopped by a signal"


def test_the_idle_timeout_ends_the_server(tmp_path):
    process, path, log = start_server(tmp_path, "--idle-timeout", "0.05")
    assert process.wait(timeout=120) == 0
    assert not path.exists()
    lines = log.read_text().splitlines()
    assert lines[0] == f"gradcam server on {path} (KERAS backend tensorflow); stops after 0.05 min idle"
    assert lines[-1] == "gradcam server: idle for 0.05 min: stopping"


def test_a_stale_socket_file_is_replaced(tmp_path):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "s.sock"))
    stale.close()  # the file stays, nothing listens
    process, path, _ = start_server(tmp_path, "--idle-timeout", "1")
    try:
        assert run_cli("--server", "--socket", path, "models").returncode == 0
    finally:
        assert stop(process) == 0


def test_the_default_socket(monkeypatch, tmp_path):
    from gradcam_cli.cli.client import default_socket

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert default_socket() == str(tmp_path / "gradcam.sock")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "k"))
    assert default_socket() == str(tmp_path / "k" / "gradcam-server.sock")
