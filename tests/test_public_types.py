"""The typed public face: the Literal choices its signatures spell out are the registries' own, the
names type checkers see in gradcam_cli are those its lazy loader returns, and py.typed is shipped.
(mypy itself runs in `make lint`, before the suite.)"""

import ast
import inspect
import re
from pathlib import Path

import pytest

import gradcam_cli
from gradcam_cli import api
from gradcam_cli.errors import GradcamError
from gradcam_cli.evaluate import assess, faithfulness, faithfulness_report, randomisation

ROOT = Path(__file__).resolve().parents[1]


def literal_choices(annotation):
    """The strings of a Literal[...] in an annotation (postponed: a string), in order."""
    assert isinstance(annotation, str) and "Literal[" in annotation, annotation
    return tuple(re.findall(r"['\"]([^'\"]*)['\"]", annotation.split("Literal[", 1)[1].split("]", 1)[0]))


def parameter(function, name):
    return inspect.signature(function).parameters[name].annotation


def test_literal_choices_are_the_registries():
    from gradcam_cli.explain.methods import NETWORKS, POOLING
    from gradcam_cli.explain.methods.options import LIBRARIES
    from gradcam_cli.explain.runtime import _DEVICES
    from gradcam_cli.models.precision import PRECISIONS

    cases = [
        (api.Explainer.__init__, "pool", POOLING),
        (api.Explainer.__init__, "network", NETWORKS),
        (api.Explainer.__init__, "compat", LIBRARIES),
        (api.load_model, "precision", tuple(PRECISIONS)),
        (api.load_model, "device", _DEVICES),
        (assess.assess, "pool", POOLING),
        (assess.assess, "compat", LIBRARIES),
        (assess.assess, "baseline", faithfulness.BASELINES),
        (randomisation.cascading_randomisation, "reinit", randomisation.REINIT),
    ]
    for function, name, registry in cases:
        assert literal_choices(parameter(function, name)) == tuple(registry), (function.__qualname__, name)
    # the faithfulness functions spell the baseline through the Baseline alias
    assert faithfulness.Baseline.__args__ == faithfulness.BASELINES
    assert parameter(faithfulness_report.measure_faithfulness, "baseline") == "F.Baseline"
    assert parameter(faithfulness.evaluate, "insertion_start") == "Baseline"


@pytest.mark.parametrize("choice", ["mean", "max"])
def test_a_literal_choice_is_accepted_and_another_refused(choice):
    # what the annotation promises is what the constructor checks (no model is loaded: a name is kept)
    assert api.Explainer("demo-gap", pool=choice).pool == choice
    with pytest.raises(GradcamError, match="unknown pooling 'median'"):
        api.Explainer("demo-gap", pool="median")


def test_type_checkers_see_the_lazy_exports():
    """The TYPE_CHECKING imports of gradcam_cli/__init__.py name, for each entry of __all__, the
    object the lazy __getattr__ returns at run time."""
    tree = ast.parse((ROOT / "gradcam_cli" / "__init__.py").read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    seen = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom)
        module = __import__(node.module, fromlist=["_"])
        for alias in node.names:
            seen[alias.asname or alias.name] = getattr(module, alias.name)
    assert set(seen) == set(gradcam_cli.__all__) - {"__version__"}
    for name, value in seen.items():
        assert getattr(gradcam_cli, name) is value, name


def test_type_aliases_hold_at_run_time():
    import numpy as np

    # the aliases are real union types (Python 3.10+), usable in isinstance checks
    assert isinstance("a.png", api.ImageInput) and isinstance(Path("a.png"), api.ImageInput)
    assert isinstance(np.zeros((2, 2, 3), np.uint8), api.ImageInput.__args__[2].__origin__)
    assert isinstance(3, api.ClassChoice) and isinstance("cat", api.ClassChoice)
    assert api.ModelInput == "LoadedModel | str | Path | Explainer"


def test_py_typed_is_shipped():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    assert (ROOT / "gradcam_cli" / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["gradcam_cli"]
    checked = config["tool"]["mypy"]["files"]
    assert all((ROOT / path).is_file() for path in checked), checked
    dev = " ".join(config["project"]["optional-dependencies"]["dev"])
    assert "ruff>=" in dev and "mypy>=" in dev
