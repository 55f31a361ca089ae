"""gradcam-cli: class activation maps for Keras image classifiers, from the command line and
from Python (`from gradcam_cli import load_model, Explainer`; see gradcam_cli.api), with the
measures of `gradcam eval` as functions: `measure_faithfulness(model, images, maps)`
(gradcam_cli.evaluate.faithfulness_report), `randomisation_check(model, images, methods)`
(gradcam_cli.evaluate.randomisation) and `assess(model, methods, measures)`
(gradcam_cli.evaluate.assess). The rooms inside: README.md's "The package"."""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Explainer", "Explanation", "load_model", "measure_faithfulness", "randomisation_check", "assess",
           "__version__"]
_LAZY = {"Explainer": ("api", "Explainer"), "Explanation": ("api", "Explanation"), "load_model": ("api", "load_model"),
         "measure_faithfulness": ("evaluate.faithfulness_report", "measure_faithfulness"),
         "randomisation_check": ("evaluate.randomisation", "cascading_randomisation"),
         "assess": ("evaluate.assess", "assess")}


if TYPE_CHECKING:  # what type checkers and editors see of the lazy names below
    from gradcam_cli.api import Explainer, Explanation, load_model
    from gradcam_cli.evaluate.assess import assess
    from gradcam_cli.evaluate.faithfulness_report import measure_faithfulness
    from gradcam_cli.evaluate.randomisation import cascading_randomisation as randomisation_check


def __getattr__(name: str) -> Any:
    # The API is imported on first use, so `gradcam --help` (which imports this package) stays
    # free of numpy, Keras and TensorFlow.
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(f"gradcam_cli.{module}"), attribute)
    raise AttributeError(f"module 'gradcam_cli' has no attribute {name!r}")
