"""`gradcam --server [--socket PATH] ARGS...`: the client of `gradcam serve` (cli/server.py, which says
the protocol). The group (base.DefaultCommandGroup.main) hands it what follows --server before Click
parses anything; it imports nothing beyond the standard library and Click, so it starts as fast as
`gradcam --help`, and when no server answers it says so in one line and the command runs here."""

import json
import os
import socket
import sys

import click


def default_socket():
    """$XDG_RUNTIME_DIR/gradcam.sock where that folder is set (a per-user folder, emptied at logout),
    else gradcam-server.sock in Keras's folder ($KERAS_HOME or ~/.keras)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "gradcam.sock")
    from gradcam_cli.explain.runtime import keras_home

    return os.path.join(keras_home(), "gradcam-server.sock")


def forward(args):
    """`gradcam --server [--socket PATH] ARGS...` (args: what follows --server): exits with the status of
    ARGS run by the server at PATH; when none answers, says so in one line and returns ARGS, to run here."""
    path = None
    if args[:1] == ["--socket"]:
        if len(args) < 2:
            click.echo("Error: --socket needs a PATH", err=True)
            sys.exit(2)
        path, args = args[1], args[2:]
    elif args[:1] and args[0].startswith("--socket="):
        path, args = args[0].split("=", 1)[1], args[1:]
    path = path or default_socket()
    status = client(args, path)
    if status is None:
        click.echo(f"gradcam: no server at {path} (start one with `gradcam serve`); running here", err=True)
        return list(args)
    sys.exit(status)


def client(argv, path):
    """Send `argv` to the server at `path`, write what it sends back to stdout and stderr as it comes, and
    return the command's exit status; None when no server answers there. Ctrl-C: 130, the connection
    closed (the server stops the command at its next write)."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
    except OSError:  # no file, nothing listening, not ours to open: no server here
        connection.close()
        return None
    with connection:
        try:
            stdin = sys.stdin.read() if "-" in argv else None  # `-`: the paths to read, sent whole
            request = {"argv": list(argv), "cwd": os.getcwd(), "stdin": stdin}
            connection.sendall(json.dumps(request).encode("ascii") + b"\n")
            for line in connection.makefile("rb"):
                frame = json.loads(line)
                if "exit" in frame:
                    return int(frame["exit"])
                _write(sys.stdout if "out" in frame else sys.stderr, frame.get("out", frame.get("err", "")))
        except KeyboardInterrupt:
            click.echo("gradcam: interrupted; the server stops the command at its next output (the images that "
                       "finished have their files and records)", err=True)
            return 130
        except BrokenPipeError:  # our reader went away (`gradcam --server ... | head`): quietly, as a local run
            try:  # flushing stdout at exit must not raise again
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError, AttributeError):
                pass
            return 141
        except (OSError, ValueError) as error:
            click.echo(f"gradcam: lost the server at {path}: {error}", err=True)
            return 1
    click.echo(f"gradcam: the server at {path} closed the connection before the command ended", err=True)
    return 1


def _write(stream, text):
    """The command's text, as its bytes (what the server could not decode comes back as it was)."""
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        stream.write(text)
    else:
        stream.flush()
        buffer.write(text.encode("utf-8", "surrogateescape"))
    stream.flush()
