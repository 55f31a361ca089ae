"""The registry (explain/methods/__init__.py) only collects the methods' entries: adding a method
with one option is one new file plus one line in the collection (and the module's import). Shown
on a copy of the package: a toy method file and that line make the method appear in `gradcam methods`, its option in
`gradcam methods toymax` and `gradcam gradcam --help`, and its maps equal a hand computation
through the API. The registry is never changed after import."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import OFFLINE_ENV

import gradcam_cli

PACKAGE = Path(gradcam_cli.__file__).parent
COLLECTION = PACKAGE / "explain" / "methods" / "__init__.py"

# The toy method: channel weights w_k = toy_scale x the largest gradient of channel k.
TOY = '''\
"""Toy-max (a test's method): channel weights w_k = s max_ij dS / dA^k_ij, s the option toy_scale."""

import numpy as np

from gradcam_cli.explain.methods.method import GRADIENT_NEEDS, Method
from gradcam_cli.explain.methods.options import MethodOption

SCALE = MethodOption("toy_scale", float, 1.0, "how much the largest gradients are scaled", minimum=0.0)


def channel_weights(result, context):
    return context.options["toy_scale"] * np.asarray(result.gradients, np.float32).max(axis=(1, 2))


METHOD = Method("toymax", "Toy-max: channel weights = the largest gradient, scaled", "a test, 2025", GRADIENT_NEEDS,
                channel_weights=channel_weights, options=(SCALE,))
'''

# Run in the copy: the CLI through Click's runner, the API against numpy, the registry unchanged.
CHECK = '''\
import json, sys
import numpy as np
from click.testing import CliRunner

from gradcam_cli.explain.methods import METHODS
from gradcam_cli.explain.methods import toymax

before = {name: method for name, method in METHODS.items()}
from gradcam_cli.cli import main

runner = CliRunner()
listed = runner.invoke(main, ["methods"])
page = runner.invoke(main, ["methods", "toymax"])
helped = runner.invoke(main, ["gradcam", "--help"])

from gradcam_cli import api  # everything a run imports
from gradcam_cli.explain import compute  # noqa: F401
from gradcam_cli.files import writing  # noqa: F401

model = api.load_model("demo-gap")
explainer = api.Explainer(model, method="toymax", toy_scale=2.5)
rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
inputs, _ = explainer.prepare([rgb, rgb[::-1]])
maps = explainer.compute(inputs, np.array([0, 2])).small_maps
result = explainer.build().engine.run(inputs, np.array([0, 2]), needs=("activations", "gradients"))
activations = np.asarray(result.activations, np.float64)
weights = 2.5 * np.asarray(result.gradients, np.float64).max(axis=(1, 2))
hand = np.maximum(np.einsum("bhwk,bk->bhw", activations, weights), 0.0)

print(json.dumps({
    "listed": [listed.exit_code, listed.output], "page": [page.exit_code, page.output],
    "help": [helped.exit_code, helped.output], "order": list(METHODS), "same": METHODS == before,
    "unchanged": all(METHODS[name] is before[name] for name in before),
    "error": float(np.abs(maps - hand).max()), "peak": float(hand.max()),
}))
'''


def test_the_collection_is_short_and_has_no_lambda():
    text = COLLECTION.read_text()
    assert "lambda" not in text
    assert len(text.splitlines()) < 120
    assert "METHODS[" not in text and "NEEDS[" not in text  # nothing changed after the collection is built


def test_a_method_with_one_option_is_one_file_and_one_line(tmp_path):
    copy = tmp_path / "site" / "gradcam_cli"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "explain" / "methods" / "toymax.py").write_text(TOY)
    collection = copy / "explain" / "methods" / "__init__.py"
    text = collection.read_text()
    anchor = "    sess.METHOD,\n"
    assert text.count(anchor) == 1
    imported = "    xgradcam,\n"  # the last module of the collection's import
    assert text.count(imported) == 1
    collection.write_text(text.replace(imported, imported + "    toymax,\n").replace(anchor, anchor + "    toymax.METHOD,\n"))
    added = [line for line in collection.read_text().splitlines() if line not in text.splitlines()]
    assert added == ["    toymax,", "    toymax.METHOD,"]
    script = tmp_path / "check.py"
    script.write_text(CHECK)
    env = dict(os.environ, **OFFLINE_ENV, PYTHONPATH=str(copy.parent))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["listed"][0] == 0 and "toymax" in out["listed"][1]
    assert "Toy-max: channel weights = the largest gradient, scaled" in out["listed"][1]
    assert out["page"][0] == 0 and "--toy-scale" in out["page"][1] and "default 1.0" in out["page"][1]
    assert out["help"][0] == 0 and "--toy-scale" in out["help"][1] and "toymax" in out["help"][1]
    assert out["order"][-2:] == ["sess", "toymax"]  # one line at the end of the collection: listed last
    assert out["same"] and out["unchanged"]  # importing the CLI, the API and the files changed no entry
    assert out["peak"] > 0 and out["error"] <= 1e-5 * out["peak"] + 1e-6


def test_the_registry_is_not_changed_by_importing_everything():
    """In this process: the entries are the modules' own METHOD objects (a meta-method's with its
    base choices filled in when the collection was built), the same after the layers above load."""
    from gradcam_cli.explain import methods
    from gradcam_cli.explain.methods import METHODS, refinecam

    before = dict(METHODS)
    import gradcam_cli.api
    import gradcam_cli.cli
    import gradcam_cli.compare
    import gradcam_cli.files.writing  # noqa: F401

    assert METHODS == before and all(METHODS[name] is before[name] for name in before)
    assert METHODS["gradcam"] is methods.gradcam.METHOD
    assert refinecam.METHOD.option("base_method").choices == ()  # the module's entry is untouched
    assert METHODS["refinecam"].option("base_method").choices == methods.BASE_METHODS
    assert "refinecam" not in methods.BASE_METHODS and "guided" not in methods.BASE_METHODS
