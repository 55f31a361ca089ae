PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install lint test test-fast bench demo demo-models clean

## install: the one set-up command (the package, its dependencies, the test tools, Ray for the --ray tests,
## keras-hub for its models' tests, and nibabel and pydicom for volumes)
install:
	$(PIP) install --upgrade pip
	$(PIP) install -e ".[dev,ray,hub,volume]"

## lint: ruff's rules and mypy on the typed public API (settings: [tool.ruff] and [tool.mypy] in
## pyproject.toml; mypy checks the files its `files` lists). `ruff format` is configured for new code but not
## enforced: it cannot keep the house layout (arguments packed and aligned), and would add ~2,200 lines.
LINT_PATHS = gradcam_cli tests scripts benchmarks
lint:
	$(PYTHON) -m ruff check $(LINT_PATHS)
	$(PYTHON) -m mypy

## test: the one test command (what .ci/run runs): the lint first, then the suite
test: lint
	$(PYTHON) -m pytest -q

## bench: throughput against the bare step, tf-keras-vis when installed, memory, start-up time (~30 min on 2 cores)
bench:
	$(PYTHON) benchmarks/bench.py

## test-fast: the suite without the large keras.applications builds
test-fast:
	$(PYTHON) -m pytest -q -m "not slow"

## demo: Grad-CAM of the shipped demo model on the synthetic sample scenes (offline)
demo:
	gradcam sample_images/synthetic_*.png --model demo-gap -o demo_out

## demo-models: retrain the five shipped demo models (about 50 minutes on 2 cores)
demo-models:
	$(PYTHON) scripts/train_demo_models.py

clean:
	rm -rf build dist *.egg-info .pytest_cache demo_out gradcam_out
