"""gradcam-cli: class activation maps for Keras image classifiers, from the command line and
from Python (`from gradcam_cli import load_model, Explainer`; see gradcam_cli.api)."""

__version__ = "0.1.0"

__all__ = ["Explainer", "Explanation", "load_model", "__version__"]


def __getattr__(name):
    # The API is imported on first use, so `gradcam --help` (which imports this package) stays
    # free of numpy, Keras and TensorFlow.
    if name in ("Explainer", "Explanation", "load_model"):
        from gradcam_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'gradcam_cli' has no attribute {name!r}")
