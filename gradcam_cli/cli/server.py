"""`gradcam serve`, a warm server that keeps Keras imported and models loaded, and `gradcam --server ARGS...`,
its client: many short runs (an editor, a notebook, a shell loop) skip the framework's start (as dmypy, blackd).

The protocol: one connection per command on a Unix domain socket, JSON lines both ways (UTF-8):
    client -> server  {"argv": [...], "cwd": "...", "stdin": TEXT or null}
    server -> client  {"out": TEXT} and {"err": TEXT} as the command writes them, then {"exit": STATUS}
The server runs the command in its main thread (the command's signal handlers need it), in the client's
folder, with sys.stdout, sys.stderr and sys.stdin standing for the client's; one command at a time.

Choices, named:
- Who may connect: the socket is made with umask 077 (mode 0600), and each connection's peer must be
  this user (SO_PEERCRED, where the system has it); a command runs with the server's rights.
- Bounds: it stops after --idle-timeout minutes without a command (a client that reads nothing for that
  long is dropped), and keeps --max-models models (the least recently used go).
- A client that goes away (Ctrl-C, a closed pipe): its command stops at its next write, as a
  KeyboardInterrupt (the command keeps what finished, as after Ctrl-C in a local run).
- What is kept (base.SERVING): the models the method commands load, keyed by every load argument (a file
  by its absolute path, modification time and size), each with the `shared` dict Explainer.build fills
  (engines and their compiled steps); other commands load their own models.
- The client (cli/client.py, apart so that base.py's group can call it without importing this module)
  imports nothing beyond the command line's own modules (no Keras, no TensorFlow).
"""

import codecs
import gc
import io
import json
import os
import select
import shlex
import socket
import stat
import sys
import threading
import time
from collections import OrderedDict

import click

from gradcam_cli.cli.base import SERVING, UsageProblem, load, main
from gradcam_cli.cli.client import default_socket
from gradcam_cli.cli.helptext import RUN, epilog, grouped, keras_backend
from gradcam_cli.cli.numbers import StrictFloatRange, StrictIntRange

REQUEST_BYTES = 64 * 2**20  # the longest request line read (argv, and stdin's paths under `-`)
REQUEST_SECONDS = 10  # how long a connection may take to send its request


# -- what the server keeps -------------------------------------------------------------------------


def _identity(value):
    """A load argument as a cache key: a file or folder by its absolute path, modification time and size
    (another folder's file of that name, or the file edited, is another model); sequences item by item."""
    if isinstance(value, (list, tuple)):
        return tuple(_identity(item) for item in value)
    if isinstance(value, (str, os.PathLike)) and os.path.exists(value):
        status = os.stat(value)
        return (os.path.abspath(value), status.st_mtime_ns, status.st_size)
    return value


class _Shared(dict):
    """A kept model's `shared` (api.Explainer.build's): a target read from a file (--target
    similar:REF.png, segment:MASK.png) is kept by the file's identity (_identity), not by the path as typed."""

    @staticmethod
    def _key(key):
        if isinstance(key, tuple) and key[:1] == ("target",) and getattr(key[2], "path", None):
            return (*key, _identity(key[2].path))
        return key

    def __contains__(self, key):
        return super().__contains__(self._key(key))

    def __getitem__(self, key):
        return super().__getitem__(self._key(key))

    def __setitem__(self, key, value):
        super().__setitem__(self._key(key), value)


class ModelCache:
    """The models kept between commands (base.SERVING.models), least recently used first, at most
    `size`; each with its _Shared dict. `say`: the server's log."""

    def __init__(self, size, say):
        self.size, self.say = size, say
        self.kept = OrderedDict()  # key -> (LoadedModel, _Shared)

    def get(self, arguments, make):
        """The model loaded with `arguments` (base.load's): the one kept, else make()'s, kept."""
        key = repr(sorted((name, _identity(value)) for name, value in arguments.items()))
        if key in self.kept:
            self.kept.move_to_end(key)
            return self.kept[key][0]
        loaded = make()
        self.kept[key] = (loaded, _Shared())
        dropped = False
        while len(self.kept) > self.size:
            old, _ = self.kept.popitem(last=False)[1]
            self.say(f"dropped model {old.name} (--max-models {self.size})")
            dropped = True
        if dropped:
            gc.collect()
        self.say(f"loaded model {loaded.name} ({len(self.kept)} kept)")
        return loaded

    def shared(self, loaded):
        """The `shared` dict kept with `loaded`; None for a model not kept."""
        return next((shared for kept, shared in self.kept.values() if kept is loaded), None)


# -- the server ------------------------------------------------------------------------------------


class _Connection:
    """One client: the frames its command's output becomes. `gone` once the client closed its end (or
    read nothing for `timeout` seconds); writes are then dropped."""

    def __init__(self, sock, timeout):
        self.sock, self.gone, self.interrupted = sock, False, False
        self.lock = threading.Lock()
        sock.settimeout(timeout)

    def send(self, frame):
        """Send one frame; False when the client is gone."""
        data = json.dumps(frame).encode("ascii") + b"\n"
        with self.lock:
            if self.gone:
                return False
            try:
                if self._closed_by_peer():
                    raise BrokenPipeError
                self.sock.sendall(data)
                return True
            except OSError:  # closed, reset, or not read for the timeout
                self.gone = True
                return False

    def _closed_by_peer(self):
        readable, _, _ = select.select([self.sock], [], [], 0)  # the client sends nothing after its request
        if not readable:
            return False
        try:
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except (BlockingIOError, TimeoutError):
            return False


class _Channel(io.RawIOBase):
    """The bytes a command writes to one stream, sent as {key: text} frames. When the client is gone,
    the command's next write in the main thread raises KeyboardInterrupt (once): it stops as after
    Ctrl-C, keeping what finished."""

    def __init__(self, connection, key):
        self.connection, self.key = connection, key
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")

    def writable(self):
        return True

    def write(self, data):
        text = self.decoder.decode(bytes(data))
        connection = self.connection
        if text and not connection.send({self.key: text}) and not connection.interrupted \
                and threading.current_thread() is threading.main_thread():
            connection.interrupted = True
            raise KeyboardInterrupt
        return len(data)


def _stream(connection, key):  # what the command writes to, text; each write sent at once
    return io.TextIOWrapper(_Channel(connection, key), encoding="utf-8", errors="surrogateescape",
                            write_through=True)


def _status(code, stderr):
    """SystemExit's code as an exit status (a message: printed, 1), as the interpreter reads it."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=stderr)
    return 1


def run_command(argv, cwd, stdin, connection):
    """Run `gradcam ARGV` here, in `cwd`, its standard streams the client's; its exit status."""
    err = _stream(connection, "err")
    if argv[:1] in (["serve"], ["--server"]):
        err.write(f"Error: `gradcam {argv[0]}` does not run through a server: run it on its own\n")
        return 2
    out = _stream(connection, "out")
    given = io.TextIOWrapper(io.BytesIO((stdin or "").encode("utf-8", "surrogateescape")), encoding="utf-8",
                             errors="surrogateescape")
    here = os.getcwd()
    try:
        os.chdir(cwd)
    except OSError as error:
        err.write(f"error: cannot run in the client's folder {cwd}: {error.strerror or error}\n")
        return 1
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = given, out, err
    try:
        main.main(args=list(argv), prog_name="gradcam", standalone_mode=True)
        status = 0
    except SystemExit as exit:
        status = _status(exit.code, err)
    except KeyboardInterrupt:  # while Click parsed, before the command's own handling
        status = 130
    except Exception as error:
        from gradcam_cli.errors import unexpected

        print(f"error: the server failed while running the command: {unexpected(error)}", file=err)
        status = 1
    finally:
        for stream in (out, err):
            try:
                stream.flush()
            except (OSError, ValueError, KeyboardInterrupt):
                pass
        sys.stdin, sys.stdout, sys.stderr = saved
        os.chdir(here)
    return status


def _read_request(sock):
    """The request's fields (argv, cwd, stdin), or None for a connection that sent nothing (a probe);
    ValueError for anything else that is not a request."""
    sock.settimeout(REQUEST_SECONDS)
    line = sock.makefile("rb").readline(REQUEST_BYTES + 1)
    if not line:
        return None
    if len(line) > REQUEST_BYTES or not line.endswith(b"\n"):
        raise ValueError("the request is not one line of at most 64 MiB")
    request = json.loads(line)
    argv, cwd, stdin = request.get("argv"), request.get("cwd"), request.get("stdin")
    if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv) and isinstance(cwd, str)
            and (stdin is None or isinstance(stdin, str))):
        raise ValueError("a request is {\"argv\": [strings], \"cwd\": a folder, \"stdin\": text or null}")
    return argv, cwd, stdin


def _peer_is_us(sock):
    """Whether the connecting process runs as this user (SO_PEERCRED; where the system lacks it, the
    socket's mode 0600 alone keeps others out)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return True
    import struct

    _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    return uid == os.getuid()


def _answering(path):
    """Whether a server accepts connections at `path`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def listen(path):
    """A listening socket at `path`, mode 0600 (made under umask 077). UsageProblem when a server already
    answers there, or the path is something else; a stale socket file (nothing listening) is replaced."""
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise UsageProblem(f"{path} exists and is not a socket: give another --socket PATH")
        if _answering(path):
            raise UsageProblem(f"a gradcam server already answers on {path}")
        os.unlink(path)
    folder = os.path.dirname(os.path.abspath(path))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mask = os.umask(0o077)
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        listener.bind(path)
        os.chmod(path, 0o600)
        listener.listen(16)
    except OSError as error:
        listener.close()
        raise UsageProblem(f"cannot listen on {path}: {error.strerror or error}") from None
    finally:
        os.umask(mask)
    return listener


class Server:
    """`gradcam serve`'s loop: one command at a time, until `idle` seconds pass without one or SIGINT or
    SIGTERM arrives; `log` (the server's stderr) gets a line per command."""

    def __init__(self, path, idle, log):
        self.path, self.idle, self.log = path, idle, log

    def say(self, line):
        print(f"gradcam server: {line}", file=self.log, flush=True)

    def serve(self, listener):
        import signal

        wake_read, wake_write = socket.socketpair()  # the signals that arrive, whoever handles them
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        previous = signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
        last = time.monotonic()
        try:
            while True:
                remaining = self.idle - (time.monotonic() - last)
                if remaining <= 0:
                    self.say(f"idle for {self.idle / 60:g} min: stopping")
                    return
                listener.settimeout(remaining)
                try:
                    sock, _ = listener.accept()
                except TimeoutError:
                    continue
                with sock:
                    self.handle(sock)
                last = time.monotonic()
                if self._signalled(wake_read):  # SIGINT or SIGTERM stopped the command: the server too
                    self.say("stopped by a signal")
                    return
        except KeyboardInterrupt:  # SIGINT or SIGTERM while waiting (cli.process.interrupt_handler)
            self.say("stopped by a signal")
        finally:
            signal.set_wakeup_fd(previous)
            wake_read.close()
            wake_write.close()

    @staticmethod
    def _signalled(wake):
        import signal

        try:
            received = wake.recv(4096)
        except BlockingIOError:
            return False
        return signal.SIGINT in received or signal.SIGTERM in received

    def handle(self, sock):
        started = time.perf_counter()
        connection = _Connection(sock, self.idle)
        if not _peer_is_us(sock):
            connection.send({"err": "gradcam: this server runs the commands of its own user only\n"})
            connection.send({"exit": 1})
            self.say("refused a connection from another user")
            return
        try:
            request = _read_request(sock)
        except (OSError, ValueError) as error:
            connection.send({"err": f"gradcam server: not a request: {error}\n"})
            connection.send({"exit": 2})
            self.say(f"not a request: {error}")
            return
        if request is None:
            return
        argv, cwd, stdin = request
        sock.settimeout(self.idle)
        status = run_command(argv, cwd, stdin, connection)
        sent = connection.send({"exit": status})
        self.say(f"gradcam {shlex.join(argv)}: exit {status}, {time.perf_counter() - started:.2f} s"
                 + ("" if sent else " (the client was gone)"))


@main.command("serve", short_help="A warm server for `gradcam --server ...`: Keras and models stay loaded.",
              epilog=epilog("serve"))
@grouped((RUN, [
    click.option("--socket", "socket_path", metavar="PATH",
                 help="The Unix socket to listen on (default: $XDG_RUNTIME_DIR/gradcam.sock, else "
                      "gradcam-server.sock in $KERAS_HOME or ~/.keras); `gradcam --server --socket PATH` reaches it."),
    click.option("--idle-timeout", type=StrictFloatRange(0, 24 * 60, min_open=True), default=30.0,
                 show_default=True, metavar="MINUTES",
                 help="Stop after this many minutes without a command (the socket file is removed)."),
    click.option("--max-models", type=StrictIntRange(min=1), default=2, show_default=True, metavar="N",
                 help="Keep at most N models loaded (the least recently used goes first)."),
    click.option("--preload", multiple=True, metavar="MODEL",
                 help="Load MODEL (a name or file, with the default model options) before the first command; "
                      "repeatable."),
]))
def serve_command(socket_path, idle_timeout, max_models, preload):
    """Run a server in the foreground that keeps Keras imported and the models the method commands
    load (`gradcam`, `cam`, `guided`, `dilated`) with their compiled steps, so that
    `gradcam --server ARGS...` runs `gradcam ARGS...` without the seconds a new process spends starting
    TensorFlow and building the model. The maps are the same as a local run's.

    One command at a time, in the client's folder, with its output streamed back; other commands run
    too, loading their own models. Only this user can connect (socket mode 0600, the peer's user
    checked). The server's environment applies (KERAS_BACKEND, CUDA_VISIBLE_DEVICES), not the client's.
    It logs one line per command on stderr, stops after --idle-timeout minutes without a command, and on
    SIGINT or SIGTERM; a client's Ctrl-C stops its command at the command's next output line.
    Exit status: 0 stopped, 2 usage error (a server already answers on the socket).
    """
    from gradcam_cli.explain.runtime import import_keras

    path = socket_path or default_socket()
    log = sys.stderr
    listener = listen(path)
    bound = os.stat(path).st_ino
    server = Server(path, idle_timeout * 60, log)
    print(f"gradcam server on {path} (KERAS backend {keras_backend()}); stops after {idle_timeout:g} min idle",
          file=log, flush=True)
    SERVING.models = ModelCache(max_models, server.say)
    try:
        import_keras(lean=True)
        for model in preload:
            load(model, keep=True)
        server.serve(listener)
    except KeyboardInterrupt:  # while Keras started or a model loaded
        server.say("stopped by a signal")
    finally:
        SERVING.models = None
        listener.close()
        try:
            if os.stat(path).st_ino == bound:  # still ours, not a later server's
                os.unlink(path)
        except OSError:
            pass
