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


def import_keras(device="auto", verbose=False):
    """Return the `keras` module, configured for `device` ('auto', 'cpu' or 'gpu')."""
    if device not in _DEVICES:
        raise ValueError(f"device must be one of {_DEVICES}. Received: device={device!r}")
    if "keras" not in sys.modules:
        if not verbose:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
        if device == "cpu":
            os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
            os.environ.setdefault("JAX_PLATFORMS", "cpu")
        if verbose:
            import keras
        else:
            with _stderr_muted():
                import keras
            logging.getLogger("tensorflow").setLevel(logging.ERROR)
            logging.getLogger("absl").setLevel(logging.ERROR)
    import keras

    if device == "gpu" and not gpu_available(keras):
        from gradcam_cli.errors import GradcamError, argument

        cpu = argument("device", "'cpu'", "cpu")
        raise GradcamError(f"no GPU is visible to the {keras.backend.backend()} backend: compute on the CPU ({cpu})")
    return keras


def gpu_available(keras):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    return False
