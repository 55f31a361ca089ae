"""What a command does to its own process: SIGINT and SIGTERM stop a run the same way, and --quiet
silences the libraries it loads."""

import logging
import sys


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as SIGINT's KeyboardInterrupt is, so that both stop a
    run the same way: what finished is kept and reported, and the exit status says which (143
    or 130)."""


class _Signals:
    """How deep the main thread is in blocks that a signal must not cut (`uninterrupted`), and the
    interrupt that waits for the outermost one's end."""

    critical = 0
    pending = None


SIGNALS = _Signals()


def interrupt_handler(signum, frame):
    """SIGINT and SIGTERM's handler: KeyboardInterrupt or Terminated, now or, inside an
    `uninterrupted` block, at its end."""
    import signal

    interrupt = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
    if SIGNALS.critical:
        SIGNALS.pending = SIGNALS.pending or interrupt
        return
    raise interrupt


class uninterrupted:
    """A block that SIGINT and SIGTERM do not cut: they take effect when it ends. A record is
    printed and kept for the report together, so that the report of an interrupted run holds
    exactly the records it printed."""

    def __enter__(self):
        import threading

        # signals reach the main thread only: another thread's block has nothing to defer
        self.deferring = threading.current_thread() is threading.main_thread()
        SIGNALS.critical += self.deferring

    def __exit__(self, *exc):
        SIGNALS.critical -= self.deferring
        if SIGNALS.critical == 0 and SIGNALS.pending is not None:
            pending, SIGNALS.pending = SIGNALS.pending, None
            raise pending
        return False


def on_signals(handlers):
    """Install a handler for SIGINT and SIGTERM (`handlers`: one function for both, or the
    {signal: handler} that an earlier call returned); returns the ones replaced. Nothing where
    signals cannot be set (not the main thread)."""
    import signal

    if handlers is None:
        return None
    wanted = handlers if isinstance(handlers, dict) else {signal.SIGINT: handlers, signal.SIGTERM: handlers}
    try:
        # a handler installed outside Python reads as None and cannot be put back from here
        return {number: signal.signal(number, handler) for number, handler in wanted.items() if handler is not None}
    except ValueError:
        return None


# What --quiet sets for libraries that read their verbosity from the environment when they start:
# TensorFlow's and absl's C++ logs, OpenCV's log, Hugging Face's and kagglehub's progress and retries.
_QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3", "ABSL_MIN_LOG_LEVEL": "3", "OPENCV_LOG_LEVEL": "SILENT",
                      "HF_HUB_DISABLE_PROGRESS_BARS": "1", "KAGGLEHUB_VERBOSITY": "error"}


def silence_libraries():
    """Silence what libraries print, so that under --quiet stderr carries only our own error lines:
    Python warnings (numpy's RuntimeWarnings, Keras's UserWarnings) are ignored, log records below
    ERROR are dropped in every logger (absl, huggingface_hub's download retries, kagglehub), the
    environment above is set, and file descriptor 2, where C and C++ code writes (libpng's
    "libpng warning: ..." from OpenCV's decoder, TensorFlow, OpenCV), goes to /dev/null while
    Python's sys.stderr, which our lines use, keeps the real stderr on a duplicate of it. Returns
    a function that undoes all of it."""
    import os
    import warnings

    filters = list(warnings.filters)
    warnings.simplefilter("ignore")
    previous_disable = logging.root.manager.disable
    logging.disable(logging.WARNING)
    environment = {name: os.environ.get(name) for name in _QUIET_ENVIRONMENT}
    for name, value in _QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    cv2_logging = getattr(getattr(sys.modules.get("cv2"), "utils", None), "logging", None)
    if cv2_logging is not None:  # already imported: it read OPENCV_LOG_LEVEL then
        cv2_level = cv2_logging.getLogLevel()
        cv2_logging.setLogLevel(cv2_logging.LOG_LEVEL_SILENT)
    streams = _stderr_to_devnull()

    def restore():
        warnings.filters[:] = filters
        logging.disable(previous_disable)
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if cv2_logging is not None:
            cv2_logging.setLogLevel(cv2_level)
        if streams is not None:
            streams()

    return restore


def _stderr_to_devnull():
    """Point file descriptor 2 at /dev/null, and sys.stderr at a duplicate of the real one. Only
    when sys.stderr is descriptor 2 (not Click's test runner's buffer); returns the undo, or None."""
    import io
    import os

    try:
        sys.stderr.flush()
        if sys.stderr.fileno() != 2:
            return None
        kept = os.dup(2)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None
    previous = sys.stderr
    ours = io.TextIOWrapper(os.fdopen(kept, "wb", buffering=0), encoding=previous.encoding,
                            errors="backslashreplace", line_buffering=True, write_through=True)
    sys.stderr = ours
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)

    def restore():  # `ours` stays open: a stream that kept it may still write
        ours.flush()
        os.dup2(kept, 2)
        if sys.stderr is ours:
            sys.stderr = previous

    return restore
