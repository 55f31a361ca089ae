"""Import Keras (and TensorFlow) quietly, once, and only when a method runs.

`gradcam --help` and `gradcam models` never come here, so they start instantly.
"""

import contextlib
import logging
import os
import sys

_DEVICES = ("auto", "cpu", "gpu")


@contextlib.contextmanager
def _stderr_muted():
    """Silence file descriptor 2 while native libraries start.

    TensorFlow's C++ runtime and XLA print start-up notices ("Could not find cuda drivers...")
    straight to fd 2 before TF_CPP_MIN_LOG_LEVEL applies, so redirecting sys.stderr is not enough.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# What Keras and TensorFlow import at start-up only to offer optional integrations, each import
# inside `try: ... except ImportError` in their own code: pandas (keras' array slicing of
# DataFrames), matplotlib.pyplot (keras.visualization), scikit-learn (keras.wrappers), SciPy
# (tf.keras v1's sparse inputs), IPython (keras.saving's notebook display) and, on the TensorFlow
# backend, JAX (tf.lite's authoring). Together they take about 3.5 of the 6.5 s that `import keras` takes on 2 cores when they are installed.
# `import_keras(lean=True)` hides them while Keras imports; the command line asks for it, as it
# owns its process and uses none of those integrations. The packages themselves import normally
# afterwards (the charts' matplotlib, the concepts' scikit-learn).
LEAN_SKIPPED = ("pandas", "matplotlib", "sklearn", "scipy", "IPython")


class _Hidden:
    """A sys.meta_path finder under which the top-level packages `names` cannot be imported."""

    def __init__(self, names):
        self.names = frozenset(names)

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"{name} is not imported while Keras starts", name=name)
        return None


def configured_backend():
    """The backend Keras will start with, read as Keras reads it before its import:
    $KERAS_BACKEND, else the "backend" of keras.json in $KERAS_HOME (default ~/.keras), else
    'tensorflow'. None when keras.json cannot be read as Keras would."""
    import json

    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    path = os.path.join(keras_home(), "keras.json")
    if not os.path.exists(path):
        return "tensorflow"
    try:
        with open(path) as file:
            return json.load(file).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return None


def _import_lean():
    """`import keras` with LEAN_SKIPPED (and JAX on the TensorFlow backend) hidden. Should a
    Keras release need one of them to start, the import is run again with nothing hidden."""
    hidden = LEAN_SKIPPED + (("jax", "jaxlib") if configured_backend() == "tensorflow" else ())
    finder = _Hidden(name for name in hidden if name not in sys.modules)
    sys.meta_path.insert(0, finder)
    try:
        import keras  # noqa: F401
    except ImportError:
        sys.meta_path.remove(finder)
        for name in [name for name in sys.modules if name.partition(".")[0] == "keras"]:
            del sys.modules[name]
        import keras  # noqa: F401
    finally:
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)


def import_keras(device="auto", verbose=False, lean=False):
    """Return the `keras` module, configured for `device` ('auto', 'cpu' or 'gpu'). lean: for a
    process that is the command line's own, Keras starts without the optional integrations of
    LEAN_SKIPPED (see there); a library caller's process keeps them."""
    if device not in _DEVICES:
        raise ValueError(f"device must be one of {_DEVICES}. Received: device={device!r}")
    if "keras" not in sys.modules:
        if not verbose:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
        if device == "cpu":
            os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
            os.environ.setdefault("JAX_PLATFORMS", "cpu")
        start = _import_lean if lean else _import_plain
        if verbose:
            start()
        else:
            with _stderr_muted():
                start()
            logging.getLogger("tensorflow").setLevel(logging.ERROR)
            logging.getLogger("absl").setLevel(logging.ERROR)
    import keras

    if device == "gpu" and not gpu_available(keras):
        from gradcam_cli.errors import GradcamError, argument

        cpu = argument("device", "'cpu'", "cpu")
        raise GradcamError(f"no GPU is visible to the {keras.backend.backend()} backend: compute on the CPU ({cpu})")
    return keras


def _import_plain():
    import keras  # noqa: F401


# The JAX compilation cache's bound: its least recently used entries go beyond it.
COMPILATION_CACHE_BYTES = 2**30


def keras_home():
    """Keras's own folder: $KERAS_HOME, else ~/.keras (where it keeps weights and keras.json)."""
    return os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")


def compilation_cache(folder=None):
    """On the JAX backend, keep every compiled program (the steps, and the weight initialisers a
    model's construction compiles) in `folder` (None: keras_home()/jax-cache; 'none': no cache),
    so that a later process with the same model and shapes reads them instead of compiling: JAX's
    persistent compilation cache, bounded to COMPILATION_CACHE_BYTES (least recently used entries
    go). Returns the folder, or None where nothing is cached: the TensorFlow backend, whose traced
    graphs live only as long as their process."""
    import keras

    if keras.backend.backend() != "jax" or folder == "none":
        return None
    import jax

    folder = str(folder or os.path.join(keras_home(), "jax-cache"))
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", COMPILATION_CACHE_BYTES)
    return folder


def gpu_available(keras):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    return False
